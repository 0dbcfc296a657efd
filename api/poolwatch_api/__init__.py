"""poolwatch's lead API (FastAPI): ``create_app(store)``; ``poolwatch serve`` runs it."""

from .app import create_app

__all__ = ["create_app"]
