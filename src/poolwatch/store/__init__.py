"""The lead store (docs/store.md): every scan and sensor writes its detections here, keyed so
that nothing is stored twice; leads are kept per reporting week; API keys and the audit log
live beside them. SQLite by default, PostgreSQL through a URL; Alembic migrations ship in
``migrations/``.
"""

from .db import (DEFAULT_URL, ENV_VAR, LEAD_JSON_FIELDS, IngestResult, KeyInfo, Page,
                 SchemaOutdated, Store, StoreError, head_revision, resolve_url, safe_url, to_ns)

__all__ = ["DEFAULT_URL", "ENV_VAR", "LEAD_JSON_FIELDS", "IngestResult", "KeyInfo", "Page",
           "SchemaOutdated", "Store", "StoreError", "head_revision", "resolve_url", "safe_url",
           "to_ns"]
