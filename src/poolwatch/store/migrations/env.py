"""Alembic's environment for the lead store, configured from code (``db.alembic_config``):
no alembic.ini is read. ``Store.upgrade`` hands over its own connection in
``config.attributes["connection"]``, so migrations run on the store's engine (SQLite
PRAGMAs, PostgreSQL search_path) and in its transaction."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from poolwatch.store.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead
        render_as_batch=True,
        compare_type=True,
    )


def run_offline() -> None:
    """``alembic upgrade --sql``: the SQL for a DBA to read or run."""
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, render_as_batch=True,
                      literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
