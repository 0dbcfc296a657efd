"""The lead store: detections, captures, the registry, weekly leads, API keys and the audit
log in one SQL database (docs/store.md).

SQLite by default (a file, nothing to set up), PostgreSQL through a URL for deployments
that several sensors and an API share. The same SQLAlchemy models and Alembic migrations
serve both; every method is a short transaction of its own, so one :class:`Store` may be
shared by the threads of a web server.

Times: every time column is integer nanoseconds since the epoch, UTC (the detectors' own
form), and every time a method returns is too. Times given to a method may be seconds
(float, as ``leads.build_leads`` takes ``week_start``), nanoseconds (integers from 10^12
on), ISO 8601 text or a ``datetime``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import math
import os
import re
import secrets
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import (JSON, Connection, Engine, Text, and_, bindparam, case, cast, delete,
                        event, exists, func, inspect, literal_column, or_, select, text,
                        update)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError,
                            SQLAlchemyError)
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from ..errors import PoolwatchError
from ..jsontext import loads as json_loads
from ..leads import FIELDS as LEAD_FIELDS
from ..leads import Detection as LeadDetection
from ..leads import build_leads, link_detections, link_fields
from ..link.model import ENTITY_TYPES

if TYPE_CHECKING:  # the ISP loaders and resolver are imported where leads are linked
    from ..link.inputs import IspRecords
    from ..link.resolve import Resolver
from .models import (KINDS, SCOPES, ApiKey, AuditEntry, Capture, Detection, Entity,
                     IngestBatch, Lead, LeadAddress, LeadValue, SubscriberRow)

DEFAULT_URL = "sqlite:///poolwatch.db"
ENV_VAR = "POOLWATCH_DB"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
WEEK_NS = 7 * 86400 * 10**9
MAX_LIMIT = 1000
STATUSES = ("new", "active", "dormant", "gone", "none")
LEAD_SORTS = ("power_w", "hashrate_hs", "confidence", "last_seen", "first_seen")
LINK_KEYS = ("link_status", "subscriber_id", "entity_id", "link_confidence", "link_reasons",
             "link_candidates")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


class StoreError(PoolwatchError):
    """The store cannot be opened or used: a bad URL, a server that does not answer, a
    database that is not a poolwatch store. One line, naming the URL without its password."""


class SchemaOutdated(StoreError):
    """The store's schema is not the one this poolwatch needs: ``poolwatch db upgrade``."""


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What one ``ingest`` did. A replay (same idempotency key) repeats the first answer."""

    inserted: int
    duplicates: int
    replayed: bool
    batch_id: int


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``next_cursor`` (opaque) gives the next, None at the end."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as ``check_key`` finds it (never its secret or hash)."""

    key_id: int
    name: str
    scope: str
    created_at: int


# ------------------------------------------------------------------------------ URLs
def resolve_url(url: str | None = None) -> str:
    """The store URL: ``url``, else ``$POOLWATCH_DB``, else ``sqlite:///poolwatch.db`` (in
    the current directory). ``postgres://`` and ``postgresql://`` become
    ``postgresql+psycopg://`` (psycopg 3, the driver poolwatch installs)."""
    text_url = (url or os.environ.get(ENV_VAR) or DEFAULT_URL).strip()
    for prefix in ("postgres://", "postgresql://"):
        if text_url.startswith(prefix):
            return "postgresql+psycopg://" + text_url[len(prefix):]
    return text_url


def safe_url(url: str | URL) -> str:
    """The URL for messages and logs: the password replaced by ``***``."""
    try:
        parsed = url if isinstance(url, URL) else make_url(str(url))
        return parsed.render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", str(url))


def _reason(exc: BaseException) -> str:
    """The first line of what the driver said."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


# ------------------------------------------------------------------------------ Alembic
def alembic_config(connection=None, url: str | None = None):
    """Alembic's configuration, built in code (no alembic.ini). Developers make a new
    migration with ``alembic.command.revision(alembic_config(url=...), autogenerate=True,
    message=...)``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", resolve_url(url).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


# The newest migration under MIGRATIONS, known without importing alembic (0.2 s of every
# command that opens the store); tests/test_store.py checks it against alembic's own answer.
SCHEMA_HEAD = "0002"


def head_revision() -> str:
    """The newest migration this poolwatch ships."""
    return SCHEMA_HEAD


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


# ------------------------------------------------------------------------------ values
def to_ns(value: Any) -> int | None:
    """A time as integer ns since the epoch, UTC. Numbers below 10^12 are seconds, larger
    ones nanoseconds; text is ISO 8601 (a zone-less time is UTC), kept to the nanosecond."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        delta = moment - _EPOCH
        return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    if isinstance(value, date):
        return to_ns(datetime(value.year, value.month, value.day, tzinfo=timezone.utc))
    if isinstance(value, (int, float)) or hasattr(value, "item"):
        number = value.item() if hasattr(value, "item") else value
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"not a time: {value!r}")
        if abs(number) >= 1e12:
            return int(number)
        return round(number * 1e9)
    if isinstance(value, str):
        return _iso_ns(value)
    raise ValueError(f"not a time: {value!r}")


def _iso_ns(text_value: str) -> int:
    s = text_value.strip()
    frac = 0
    m = re.search(r"(?<=\d\d:\d\d:\d\d)[.,](\d+)", s)
    if m:
        frac = int(m.group(1)[:9].ljust(9, "0"))
        s = s[:m.start()] + s[m.end():]
    try:
        moment = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text_value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return ((moment - _EPOCH) // timedelta(seconds=1)) * 10**9 + frac


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _clean(value: Any) -> Any:
    """JSON-ready: numpy scalars to Python, tuples to lists, NaN and infinities to null
    (PostgreSQL's JSONB refuses them), anything else unknown to text. A round trip through
    the C JSON codec first (fast); the walk below only when it meets a NaN."""
    try:
        return json.loads(json.dumps(value, default=_json_default, allow_nan=False))
    except (ValueError, TypeError):
        return _walk(value)


def _walk(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _walk(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_walk(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        try:
            return _walk(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # overflow: an int beyond any float
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # overflow: an infinite float
        return None


def _str(value: Any, size: int | None = None) -> str | None:
    if value is None or value == "":
        return None
    out = str(value)
    return out[:size] if size else out


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUL, NUL_REPLACEMENT = "\x00", "\ufffd"


def _no_nul(value: Any) -> Any:
    """``value`` with every NUL character in its text (keys too) replaced by U+FFFD:
    PostgreSQL's text and JSONB cannot hold NUL, and a miner may send one in a login."""
    if isinstance(value, str):
        return value.replace(NUL, NUL_REPLACEMENT) if NUL in value else value
    if isinstance(value, Mapping):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_no_nul(v) for v in value]
    return value


def _pg_json_dumps(value: Any) -> str:
    """JSON text for PostgreSQL's JSONB, which refuses the escape ``\\u0000``: only a
    document that has one is walked (a plain ``in`` test on the text otherwise)."""
    out = json.dumps(value)
    return json.dumps(_no_nul(value)) if "\\u0000" in out else out


def _pg_params(parameters: Any) -> Any:
    """Statement parameters with NUL replaced in their text (the one cleaning step for
    everything bound into PostgreSQL: inserted values, filters, looked-up ids)."""
    if isinstance(parameters, Mapping):
        if any(type(v) is str and NUL in v for v in parameters.values()):
            return {k: _no_nul(v) if type(v) is str else v for k, v in parameters.items()}
        return parameters
    if isinstance(parameters, (list, tuple)):
        if parameters and isinstance(parameters[0], Mapping):
            return type(parameters)(_pg_params(p) for p in parameters)
        if any(type(v) is str and NUL in v for v in parameters):
            return type(parameters)(_no_nul(v) if type(v) is str else v for v in parameters)
    return parameters


def _int64(value: int, what: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        shown = value if abs(value) < 10**24 else f"{float(value):.3g}"
        raise ValueError(f"{what} {shown} does not fit in 64 bits (nanoseconds: years "
                         f"1678 to 2262)")
    return value


def _packed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    """16 bytes, IPv4 mapped into ::ffff:0:0/96 (as ``records.addr_to_halves``)."""
    return _V4_MAPPED + ip.packed if ip.version == 4 else ip.packed


def _network(address: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(address).strip(), strict=False)
    except ValueError as exc:
        raise ValueError(f"address {address!r}: not an IP address or CIDR ({exc})") from None


def _detection_row(raw: Any, index: int) -> dict[str, Any]:
    """One record (``as_dict()`` or JSON lines form) as a ``detections`` row."""
    rec = raw.as_dict() if hasattr(raw, "as_dict") else raw
    if not isinstance(rec, Mapping):
        raise ValueError(f"record {index}: not an object")
    rec = _clean(rec)
    kind = rec.get("event_type")
    if kind not in KINDS:
        raise ValueError(f"record {index}: event_type must be one of {', '.join(KINDS)}, "
                         f"not {kind!r}")
    try:
        for name in ("timestamp", "first_seen", "last_seen"):
            if rec.get(name) is not None:
                rec[name] = _int64(to_ns(rec[name]), name)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"record {index}: {exc}") from None
    ports = {}
    for name in ("src_port", "dest_port"):
        port = _int(rec.get(name))
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"record {index}: {name} {port!r} is not a port (0-65535)")
        ports[name] = port
    first = rec.get("first_seen") if rec.get("first_seen") is not None else rec.get("timestamp")
    if first is None or not rec.get("src_ip"):
        raise ValueError(f"record {index}: a detection needs src_ip and first_seen")
    last = rec.get("last_seen") if rec.get("last_seen") is not None else first
    evidence = rec.get("evidence") if isinstance(rec.get("evidence"), dict) else {}
    sha = evidence.get("capture_sha256")
    if sha is not None:
        sha = str(sha).lower()
        if not _HEX64.match(sha):
            raise ValueError(f"record {index}: evidence.capture_sha256 is not a SHA-256 "
                             f"(64 hex digits)")
    cid = rec.get("community_id")
    if sha and cid:
        basis = f"{kind}|{cid}|{first}|{sha}"
    else:  # no capture (a live sensor): the record itself, without what linking adds
        body = {k: v for k, v in rec.items() if k not in LINK_KEYS}
        basis = "record|" + json.dumps(body, sort_keys=True, separators=(",", ":"),
                                       ensure_ascii=False)
    return {
        "kind": kind,
        "natural_key": hashlib.sha256(basis.encode()).hexdigest(),
        "community_id": _str(cid, 64),
        "src_ip": str(rec["src_ip"])[:64],
        "src_port": ports["src_port"],
        "dest_ip": _str(rec.get("dest_ip"), 64),
        "dest_port": ports["dest_port"],
        "first_seen": int(first),
        "last_seen": int(last),
        "pool": _str(rec.get("pool"), 256),
        "coin": _str(rec.get("coin"), 32),
        "dialect": _str(rec.get("dialect"), 64),
        "worker": _str(rec.get("worker")),
        "wallet": _str(rec.get("wallet")),
        "hashrate_hs": _float(rec.get("hashrate_hs")),
        "power_w": _float(rec.get("power_w")),
        "score": _float(rec.get("score")),
        "record": rec,
        "capture_sha256": sha,
        "subscriber_id": _str(rec.get("subscriber_id"), 128),
        "entity_id": _str(rec.get("entity_id"), 128),
        "link_status": _str(rec.get("link_status"), 16),
        "link_confidence": _float(rec.get("link_confidence")),
        "_capture_path": _str(evidence.get("capture")),
    }


def detection_key(record: Any) -> str:
    """A record's natural key, as ``ingest`` stores it (for de-duplicating outside)."""
    return _detection_row(record, 0)["natural_key"]


# ------------------------------------------------------------------------------ cursors
def _encode_cursor(payload: list[Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str, size: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        payload = None
    if not isinstance(payload, list) or len(payload) != size or payload[0] != kind:
        raise ValueError("cursor: not one this listing gave out")
    return payload


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, not {limit!r}")
    return limit


def _page(rows: list[Any], limit: int, item, key) -> Page:
    """Items of the first ``limit`` rows; a cursor after the last when there is more."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([item(r) for r in rows], _encode_cursor(key(rows[-1])) if more else None)


# ------------------------------------------------------------------------------ engine
def _make_engine(url: URL) -> Engine:
    from sqlalchemy import create_engine

    backend = url.get_backend_name()
    if backend == "sqlite":
        memory = url.database in (None, "", ":memory:")
        kw: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if memory:
            kw["poolclass"] = StaticPool  # one connection, or each would be a new database
        engine = create_engine(url, json_deserializer=json_loads, **kw)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record) -> None:
            # Our own BEGIN (below) rather than pysqlite's: DDL becomes transactional and
            # writers take the write lock up front instead of failing to upgrade a read.
            dbapi_conn.isolation_level = None
            if not memory:
                dbapi_conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                dbapi_conn.execute("PRAGMA synchronous=NORMAL")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:
            options = conn.get_execution_options()
            if options.get("poolwatch_plain"):
                return  # the driver is in autocommit mode (isolation_level None, above)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("poolwatch_write") else "BEGIN")

        return engine
    if backend == "postgresql":
        connect_args = {} if "connect_timeout" in url.query else {"connect_timeout": 10}
        engine = create_engine(url, connect_args=connect_args, pool_pre_ping=True,
                               json_serializer=_pg_json_dumps, json_deserializer=json_loads)

        @event.listens_for(engine, "before_cursor_execute", retval=True)
        def _pg_clean(conn, cursor, statement, parameters, context, executemany):
            # PostgreSQL refuses NUL in text: a value with one would be a server error
            return statement, _pg_params(parameters)

        return engine
    raise StoreError(f"cannot open store {safe_url(url)}: poolwatch stores live in SQLite "
                     f"(sqlite:///FILE) or PostgreSQL (postgresql://USER@HOST/DB), not "
                     f"{backend}")


def _dialect_insert(engine: Engine, table):
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


def _least(a, b):
    """The smaller of two nullable values (NULL only when both are)."""
    return case((a.is_(None), b), (b.is_(None), a), (a < b, a), else_=b)


def _greatest(a, b):
    return case((a.is_(None), b), (b.is_(None), a), (a > b, a), else_=b)


# ------------------------------------------------------------------------------ the store
class Store:
    """The lead store. Open with :meth:`Store.open`; close with :meth:`close` (or use it as
    a context manager). Thread-safe: each call is its own session and transaction, except
    the hot reads (key checks, lead pages), whose statements each run on their own."""

    def __init__(self, engine: Engine, url: URL) -> None:
        self.engine = engine
        self._write_engine = engine.execution_options(poolwatch_write=True)
        # reads of one or two statements that need no common snapshot: each statement is
        # its own transaction, saving BEGIN and COMMIT (a tenth of a lead page's time on
        # SQLite, two round trips on PostgreSQL)
        self._plain_engine = engine.execution_options(
            poolwatch_plain=True,
            **({"isolation_level": "AUTOCOMMIT"} if engine.dialect.name == "postgresql" else {}))
        self._url = url
        self._resolver_for: tuple[Any, Resolver] | None = None
        self.created = False  # this open made the schema (a new SQLite file, an empty DB)

    # ---------------------------------------------------------------- opening, schema
    @classmethod
    def open(cls, url: str | None = None, *, create: bool = True, check: bool = True) -> Store:
        """Open the store at ``url`` (default: ``resolve_url``).

        ``create``: a store without any tables (a new SQLite file, an empty PostgreSQL
        database or schema) is brought to the latest schema; without it a missing SQLite
        file is an error. ``check``: a schema other than the latest raises
        :class:`SchemaOutdated` (``poolwatch db`` passes False to inspect or upgrade).
        Raises :class:`StoreError` for a bad URL or a server that does not answer.
        """
        text_url = resolve_url(url)
        shown = safe_url(text_url)
        try:
            parsed = make_url(text_url)
        except (ArgumentError, ValueError):
            raise StoreError(f"cannot open store {shown}: not a database URL (sqlite:///FILE "
                             f"or postgresql://USER@HOST/DB)") from None
        new_file: Path | None = None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "",
                                                                             ":memory:"):
            path = Path(parsed.database)
            if not path.exists():
                if not create:
                    raise StoreError(f"no store at {path} (`poolwatch db upgrade --db "
                                     f"{shown}` creates one)")
                if not path.parent.is_dir():
                    raise StoreError(f"cannot open store {shown}: no such directory "
                                     f"{path.parent}")
                new_file = path
        try:
            engine = _make_engine(parsed)
        except (NoSuchModuleError, ImportError) as exc:
            hint = (" (pip install 'poolwatch[postgres]')"
                    if parsed.get_backend_name() == "postgresql" else "")
            raise StoreError(f"cannot open store {shown}: no driver for it: "
                             f"{_reason(exc)}{hint}") from None
        except ArgumentError as exc:
            raise StoreError(f"cannot open store {shown}: {_reason(exc)}") from None
        store = cls(engine, parsed)
        try:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            except (DBAPIError, SQLAlchemyError, OSError) as exc:
                raise StoreError(f"cannot open store {shown}: {_reason(exc)}") from None
            store._ready(create=create, check=check)
        except BaseException:
            engine.dispose()
            if new_file is not None:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(new_file) + suffix).unlink(missing_ok=True)
            raise
        return store

    def _ready(self, *, create: bool, check: bool) -> None:
        current = self.revision()
        if current is None and create and not self._has_tables():
            self.upgrade()
            self.created = True
            current = head_revision()
        if not check:
            return
        head = head_revision()
        if current == head:
            return
        shown = self.url
        if current is None:
            if self._has_tables():
                raise StoreError(f"{shown} holds tables but no poolwatch schema history: "
                                 f"not a poolwatch store")
            raise SchemaOutdated(f"the store at {shown} has no schema yet: run `poolwatch db "
                                 f"upgrade --db {shown}`")
        if current in _known_revisions():
            raise SchemaOutdated(f"the store at {shown} is at schema revision {current}, this "
                                 f"poolwatch needs {head}: run `poolwatch db upgrade --db "
                                 f"{shown}`")
        raise StoreError(f"the store at {shown} is at schema revision {current}, which this "
                         f"poolwatch does not know (written by a newer version?)")

    def _has_tables(self) -> bool:
        with self.engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
        return bool(names - {"alembic_version"})

    @property
    def url(self) -> str:
        """The store's URL without its password."""
        return safe_url(self._url)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def upgrade(self, revision: str = "head") -> None:
        """Run the migrations up to ``revision`` (``poolwatch db upgrade``), in one
        transaction. On SQLite, foreign keys are off meanwhile (batch mode copies tables)."""
        from alembic import command

        with self.engine.connect() as conn:
            raw = conn.connection.driver_connection if self.backend == "sqlite" else None
            if raw is not None:
                raw.execute("PRAGMA foreign_keys=OFF")  # outside any transaction, as it must be
            try:
                with conn.begin():
                    command.upgrade(alembic_config(conn), revision)
            finally:
                if raw is not None:
                    raw.execute("PRAGMA foreign_keys=ON")

    def revision(self) -> str | None:
        """The schema revision the store is at (None: no schema yet). Read with plain SQL
        from alembic's version table; alembic itself is imported only when that table holds
        more than one row (branches, which poolwatch's migrations never make)."""
        with self._plain_engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
            if len(rows) <= 1:
                return rows[0][0] if rows else None
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    @contextmanager
    def _read_rows(self) -> Iterator[Connection]:
        """A plain connection for the hot reads (key checks, lead pages) that select
        columns, not objects: no ORM session to set up and tear down, and no transaction
        around the statements (each sees the store as it is when it runs)."""
        with self._plain_engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._write_engine, expire_on_commit=False) as session, session.begin():
            yield session

    def counts(self) -> dict[str, int]:
        """Rows per table (``poolwatch db status``)."""
        out = {}
        with self._read() as s:
            for model in (Capture, IngestBatch, Detection, Entity, SubscriberRow, Lead, ApiKey,
                          AuditEntry):
                out[model.__tablename__] = s.scalar(select(func.count()).select_from(model))
        return out

    # ---------------------------------------------------------------- captures, ingest
    def add_capture(self, sha256: str, path: str | os.PathLike | None, size: int | None,
                    first_ts_ns: int | None, last_ts_ns: int | None) -> dict[str, Any]:
        """Record one scan of a capture, keyed by its SHA-256: a capture seen before keeps
        its first path and first scan time, widens its packet times and counts one more
        scan. Returns the capture's row."""
        sha = str(sha256).lower()
        if not _HEX64.match(sha):
            raise ValueError(f"not a SHA-256 (64 hex digits): {sha256!r}")
        now = time.time_ns()
        values = {"sha256": sha, "first_path": None if path is None else str(path),
                  "size": _int(size), "first_packet": to_ns(first_ts_ns),
                  "last_packet": to_ns(last_ts_ns), "first_scanned_at": now,
                  "last_scanned_at": now, "scan_count": 1}
        t = Capture.__table__
        stmt = _dialect_insert(self.engine, Capture).values(values)
        ex = stmt.excluded
        stmt = stmt.on_conflict_do_update(index_elements=[t.c.sha256], set_={
            "first_path": func.coalesce(t.c.first_path, ex.first_path),
            "size": func.coalesce(ex.size, t.c.size),
            "first_packet": _least(t.c.first_packet, ex.first_packet),
            "last_packet": _greatest(t.c.last_packet, ex.last_packet),
            "first_scanned_at": func.coalesce(t.c.first_scanned_at, ex.first_scanned_at),
            "last_scanned_at": ex.last_scanned_at,
            "scan_count": t.c.scan_count + 1,
        })
        with self._write() as s:
            s.execute(stmt)
            row = s.get(Capture, sha)
            return _capture_dict(row)

    def capture(self, sha256: str) -> dict[str, Any] | None:
        """A capture's row by its SHA-256, or None."""
        with self._read() as s:
            row = s.get(Capture, str(sha256).lower())
            return _capture_dict(row) if row else None

    def ingest(self, records: Iterable[Any], *, idempotency_key: str | None = None,
               source: str = "scan") -> IngestResult:
        """Store detection records (``as_dict()`` or JSON lines form; records themselves
        too), in one transaction.

        A record already stored (same natural key) is a duplicate and changes nothing. With
        an ``idempotency_key`` seen before, nothing is inserted and the first call's result
        comes back with ``replayed`` set; the same key with other records is a ValueError.
        A record without ``event_type``, ``src_ip`` or ``first_seen`` fails the whole batch
        (ValueError naming its index). Captures the records name get a row (scan count 0
        until ``add_capture`` records a scan of them).
        """
        if idempotency_key is not None and not (0 < len(str(idempotency_key)) <= 200):
            raise ValueError("idempotency key: 1 to 200 characters")
        rows: list[dict[str, Any]] = []
        seen: set[str] = set()
        total = 0
        for index, raw in enumerate(records):
            total += 1
            row = _detection_row(raw, index)
            if row["natural_key"] not in seen:
                seen.add(row["natural_key"])
                rows.append(row)
        digest = hashlib.sha256("\n".join(sorted(seen)).encode()).hexdigest()
        key = None if idempotency_key is None else str(idempotency_key)
        if key is not None:
            replay = self._replay(key, digest)
            if replay is not None:
                return replay
        try:
            with self._write() as s:
                batch = IngestBatch(idempotency_key=key, source=str(source)[:200],
                                    received_at=time.time_ns(), record_count=total,
                                    inserted=0, duplicates=0, digest=digest)
                s.add(batch)
                s.flush()
                captures = {}
                for row in rows:
                    sha, path = row["capture_sha256"], row.pop("_capture_path")
                    if sha and sha not in captures:
                        captures[sha] = {"sha256": sha, "first_path": path, "scan_count": 0}
                    row["batch_id"] = batch.id
                # Core tables and a plain executemany (psycopg pipelines it), no RETURNING:
                # its giant multi-row statements cost more to build than to run. What was
                # inserted is counted by batch id afterwards.
                if captures:
                    s.execute(_dialect_insert(self.engine, Capture.__table__)
                              .on_conflict_do_nothing(index_elements=["sha256"]),
                              list(captures.values()))
                inserted = 0
                if rows:  # a duplicate is skipped by the unique natural key, race-free
                    s.execute(_dialect_insert(self.engine, Detection.__table__)
                              .on_conflict_do_nothing(index_elements=["natural_key"]), rows)
                    inserted = s.scalar(select(func.count()).select_from(Detection)
                                        .where(Detection.batch_id == batch.id))
                batch.inserted, batch.duplicates = inserted, total - inserted
                return IngestResult(inserted, total - inserted, False, batch.id)
        except IntegrityError:
            # another writer took the same idempotency key between our look and our insert
            if key is not None and (replay := self._replay(key, digest)) is not None:
                return replay
            raise

    def _replay(self, key: str, digest: str) -> IngestResult | None:
        with self._read() as s:
            batch = s.scalar(select(IngestBatch).where(IngestBatch.idempotency_key == key))
            if batch is None:
                return None
            if batch.digest != digest:
                raise ValueError(f"idempotency key {key!r} was used for other records "
                                 f"(batch {batch.id})")
            return IngestResult(batch.inserted, batch.duplicates, True, batch.id)

    def batch(self, batch_id: int) -> dict[str, Any] | None:
        """An ingest batch by id: source, times, counts."""
        with self._read() as s:
            b = s.get(IngestBatch, batch_id)
            if b is None:
                return None
            return {"batch_id": b.id, "idempotency_key": b.idempotency_key, "source": b.source,
                    "received_at": b.received_at, "record_count": b.record_count,
                    "inserted": b.inserted, "duplicates": b.duplicates}

    # ---------------------------------------------------------------- detections
    def records(self) -> list[dict[str, Any]]:
        """Every stored detection record (``as_dict()`` form, times in ns), oldest first."""
        with self._read() as s:
            return list(s.scalars(select(Detection.record).order_by(Detection.first_seen,
                                                                     Detection.id)))

    def detections(self, *, kind: str | None = None, entity_id: str | None = None,
                   since: Any = None, until: Any = None, capture_sha256: str | None = None,
                   limit: int = 50, cursor: str | None = None) -> Page:
        """Detections oldest first (by first seen, then id): of a ``kind``, linked to an
        ``entity_id``, seen at or after ``since`` (last seen) and before ``until`` (first
        seen). Items are the records plus ``id``, ``capture_sha256``, ``batch_id`` and the
        link fields the last ``rebuild_leads`` wrote."""
        limit = _limit(limit)
        if kind is not None and kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        q = select(Detection)
        if kind is not None:
            q = q.where(Detection.kind == kind)
        if entity_id is not None:
            q = q.where(Detection.entity_id == entity_id)
        if since is not None:
            q = q.where(Detection.last_seen >= to_ns(since))
        if until is not None:
            q = q.where(Detection.first_seen < to_ns(until))
        if capture_sha256 is not None:
            q = q.where(Detection.capture_sha256 == str(capture_sha256).lower())
        if cursor is not None:
            _, first, last_id = _decode_cursor(cursor, "d", 3)
            q = q.where(or_(Detection.first_seen > first,
                            and_(Detection.first_seen == first, Detection.id > last_id)))
        q = q.order_by(Detection.first_seen, Detection.id).limit(limit + 1)
        with self._read() as s:
            rows = list(s.scalars(q))
            return _page(rows, limit, _detection_dict, lambda r: ["d", r.first_seen, r.id])

    def detection(self, detection_id: int) -> dict[str, Any] | None:
        """One detection by id (as in ``detections``), or None."""
        detection_id = int(detection_id)
        if not INT64_MIN <= detection_id <= INT64_MAX:  # no such id could be stored
            return None
        with self._read() as s:
            row = s.get(Detection, detection_id)
            return _detection_dict(row) if row else None

    # ---------------------------------------------------------------- registry
    def load_registry(self, isp: IspRecords) -> tuple[int, int]:
        """Upsert the registry's entities and subscribers (a later load overwrites what a
        row says; rows no longer in the registry stay, for the leads that named them).
        Returns (entities, subscribers) written."""
        now = time.time_ns()
        entities: dict[str, dict[str, Any]] = {}
        subscribers: dict[str, dict[str, Any]] = {}
        for sub in isp.subscribers:
            entities.setdefault(sub.entity_id, {
                "entity_id": sub.entity_id, "entity_name": sub.entity_name,
                "entity_type": sub.entity_type,
                "registration_number": sub.registration_number, "address": sub.address,
                "region": sub.region, "latitude": _float(sub.latitude),
                "longitude": _float(sub.longitude), "extra": {}, "updated_at": now})
            subscribers[sub.subscriber_id] = {
                "subscriber_id": sub.subscriber_id, "entity_id": sub.entity_id,
                "address": sub.address, "region": sub.region,
                "latitude": _float(sub.latitude), "longitude": _float(sub.longitude),
                "cpe_mac": sub.cpe_mac, "extra": _clean(dict(sub.extra)),
                "origin": str(sub.origin) if sub.origin else None, "updated_at": now}
        with self._write() as s:
            for model, key, rows in ((Entity, "entity_id", entities),
                                     (SubscriberRow, "subscriber_id", subscribers)):
                if not rows:
                    continue
                stmt = _dialect_insert(self.engine, model)
                stmt = stmt.on_conflict_do_update(
                    index_elements=[key],
                    set_={c: stmt.excluded[c] for c in next(iter(rows.values())) if c != key})
                s.execute(stmt, list(rows.values()))
        return len(entities), len(subscribers)

    def entities(self, *, entity_type: str | None = None, region: str | None = None,
                 entity_id: str | None = None, limit: int = 50,
                 cursor: str | None = None) -> Page:
        """Registry entities by id, each with its ``subscriber_ids`` (``entity_id``: that
        one entity, as a page of at most one)."""
        limit = _limit(limit)
        q = select(Entity)
        if entity_id is not None:
            q = q.where(Entity.entity_id == str(entity_id))
        if entity_type is not None:
            q = q.where(Entity.entity_type == entity_type)
        if region is not None:
            q = q.where(Entity.region == region)
        if cursor is not None:
            _, after = _decode_cursor(cursor, "e", 2)
            q = q.where(Entity.entity_id > after)
        q = q.order_by(Entity.entity_id).limit(limit + 1)
        with self._read() as s:
            rows = list(s.scalars(q))
            subs: dict[str, list[str]] = {}
            ids = [r.entity_id for r in rows[:limit]]
            if ids:
                for sid, eid in s.execute(select(SubscriberRow.subscriber_id,
                                                 SubscriberRow.entity_id)
                                          .where(SubscriberRow.entity_id.in_(ids))
                                          .order_by(SubscriberRow.subscriber_id)):
                    subs.setdefault(eid, []).append(sid)
            return _page(rows, limit, lambda r: {**_entity_dict(r),
                                                 "subscriber_ids": subs.get(r.entity_id, [])},
                         lambda r: ["e", r.entity_id])

    def entity(self, entity_id: str) -> dict[str, Any] | None:
        """One entity with its ``subscriber_ids``, or None."""
        with self._read() as s:
            row = s.get(Entity, entity_id)
            if row is None:
                return None
            subs = list(s.scalars(select(SubscriberRow.subscriber_id)
                                  .where(SubscriberRow.entity_id == entity_id)
                                  .order_by(SubscriberRow.subscriber_id)))
            return {**_entity_dict(row), "subscriber_ids": subs}

    def _resolver(self, isp: IspRecords | Resolver | None) -> Resolver:
        """A resolver for these ISP records, built once per records object (its indexes
        take a while for a big ISP)."""
        from ..link.resolve import Resolver

        if isinstance(isp, Resolver):
            return isp
        if isp is None:
            raise ValueError("who held an address comes from the ISP's records: give them "
                             "(IspRecords or a Resolver)")
        if self._resolver_for is None or self._resolver_for[0] is not isp:
            self._resolver_for = (isp, isp.resolver())
        return self._resolver_for[1]

    def who_held(self, ip: str, at: Any, isp: IspRecords | Resolver | None = None, *,
                 port: int | None = None) -> dict[str, Any]:
        """Who held ``ip`` (and ``port``, behind CGNAT) at time ``at``, from the ISP's
        records (the store keeps detections and leads, not the ISP's assignments, which
        are the ISP's to keep and to age out). The link fields of ``scan --subscribers``
        plus the entity as the store has it."""
        try:
            address = ipaddress.ip_address(str(ip).strip())
        except ValueError:
            raise ValueError(f"ip {ip!r}: not an IP address") from None
        at_ns = to_ns(at)
        if at_ns is None:
            raise ValueError("at: a time is needed")
        if port is not None and not 0 <= int(port) <= 65535:
            raise ValueError(f"port {port!r}: not 0-65535")
        resolver = self._resolver(isp)
        link = resolver.resolve([str(address)], [port], [at_ns / 1e9])[0]
        fields = link_fields(link)
        entity = self.entity(fields["entity_id"]) if fields.get("entity_id") else None
        from ..link.inputs import IspRecords

        if entity is None and fields.get("entity_id") and isinstance(isp, IspRecords):
            sub = next((x for x in isp.subscribers if x.entity_id == fields["entity_id"]), None)
            if sub is not None:
                entity = {"entity_id": sub.entity_id, "entity_name": sub.entity_name,
                          "entity_type": sub.entity_type,
                          "registration_number": sub.registration_number,
                          "address": sub.address, "region": sub.region}
        # whether it mined: detections from the address running at that moment, and the
        # day around it (the address may have mined just before or after)
        day = 86_400 * 1_000_000_000
        with self._read() as s:
            rows = s.scalars(select(Detection).where(
                Detection.src_ip == str(address), Detection.first_seen <= at_ns + day,
                Detection.last_seen >= at_ns - day).order_by(Detection.first_seen)).all()
            around = [_detection_dict(r) for r in rows[:100]]
            running = [_detection_dict(r) for r in rows
                       if r.first_seen <= at_ns <= r.last_seen
                       and (port is None or r.src_port == port)]
        return {"ip": str(address), "port": port, "at": at_ns, **fields, "entity": entity,
                "mining": bool(running), "detections_at": running,
                "detections_within_a_day": around}

    # ---------------------------------------------------------------- leads
    def rebuild_leads(self, isp: IspRecords, week_start: Any = None) -> int:
        """Build the leads of the reporting week starting at ``week_start`` (default: the
        Monday of the latest detection) from every stored detection, replace that week's
        stored leads with them, and write each detection's link fields. Loads the registry
        first. Returns the number of leads."""
        return len(self.compute_leads(isp, week_start))

    def compute_leads(self, isp: IspRecords, week_start: Any = None, *, save: bool = True,
                      extra: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
        """``rebuild_leads``, returning the lead records. With ``save=False`` the store is
        only read, and ``extra`` records (not stored) join the stored ones
        (``poolwatch leads --db --no-store``)."""
        with self._read() as s:
            rows = s.execute(select(Detection.id, Detection.record)
                             .order_by(Detection.first_seen, Detection.id)).all()
        records = [r.record for r in rows]
        if not save:
            records += [_detection_row(r, i)["record"] for i, r in enumerate(extra)]
        week_ns = to_ns(week_start) if week_start is not None else _monday(records)
        resolver = self._resolver(isp)
        leads = build_leads(records, isp, week_start=week_ns / 1e9, resolver=resolver)
        if not save:
            return [{**x, "week_start": week_ns} for x in leads]
        found = [LeadDetection.of(r) for r in records]
        link_detections(found, resolver)
        links = []
        for (det_id, _), d in zip(rows, found):
            f = link_fields(d.link)
            links.append({"id": det_id, "subscriber_id": f.get("subscriber_id"),
                          "entity_id": f.get("entity_id"), "link_status": f.get("link_status"),
                          "link_confidence": f.get("link_confidence")})
        self.load_registry(isp)
        now = time.time_ns()
        with self._write() as s:
            if self.backend == "postgresql":  # one rebuild of a week at a time
                s.execute(text("SELECT pg_advisory_xact_lock(7006001)"))
            if links:
                s.execute(update(Detection), links)
            old = select(Lead.id).where(Lead.week_start == week_ns)
            s.execute(delete(LeadValue).where(LeadValue.lead_pk.in_(old)))
            s.execute(delete(LeadAddress).where(LeadAddress.lead_pk.in_(old)))
            s.execute(delete(Lead).where(Lead.week_start == week_ns))
            objs = [Lead(week_start=week_ns, computed_at=now,
                         **{f: _clean(x.get(f)) for f in LEAD_FIELDS}) for x in leads]
            s.add_all(objs)
            s.flush()
            values, addresses = [], []
            for obj, x in zip(objs, leads):
                for coin in dict.fromkeys(str(c).upper() for c in x.get("coins") or []):
                    values.append({"lead_pk": obj.id, "kind": "coin", "value": coin[:256]})
                for pool in dict.fromkeys(str(p).lower() for p in x.get("pools") or []):
                    values.append({"lead_pk": obj.id, "kind": "pool", "value": pool[:256]})
                for entry in x.get("src_ips") or []:
                    try:
                        ip = ipaddress.ip_address(entry["ip"])
                    except (KeyError, TypeError, ValueError):
                        continue
                    addresses.append({"lead_pk": obj.id, "ip": str(ip), "packed": _packed(ip)})
            if values:
                s.execute(LeadValue.__table__.insert(), values)
            if addresses:
                s.execute(LeadAddress.__table__.insert(), addresses)
        return [{**x, "week_start": week_ns, "computed_at": now} for x in leads]

    def _week(self, s: Session | Connection, week_start: Any) -> int | None:
        """The stored reporting week containing ``week_start`` (None: the latest week)."""
        if week_start is None:
            return s.scalar(_LATEST_WEEK)
        t = to_ns(week_start)
        week = s.scalar(select(func.max(Lead.week_start)).where(Lead.week_start <= t))
        return week if week is not None and t < week + WEEK_NS else None

    def weeks(self) -> list[int]:
        """The reporting weeks that have stored leads, newest first."""
        with self._read() as s:
            return list(s.scalars(select(Lead.week_start).distinct()
                                  .order_by(Lead.week_start.desc())))

    def list_leads(self, *, week_start: Any = None, since: Any = None, until: Any = None,
                   status: str | None = None, min_confidence: float | None = None,
                   entity_type: str | None = None, region: str | None = None,
                   coin: str | None = None, pool: str | None = None,
                   address: str | None = None, sort: str = "-power_w", limit: int = 50,
                   cursor: str | None = None, evidence: bool = True,
                   json_as_text: frozenset[str] = frozenset()) -> Page:
        """Leads of one reporting week (the week containing ``week_start``; default the
        latest), filtered, sorted by ``sort`` (a field of ``LEAD_SORTS``, ``-`` for
        descending; ties by lead_id; a missing power or hashrate sorts as the smallest) and
        paged by keyset: the cursor holds the week and the last (sort value, lead_id), so
        pages neither repeat nor skip a lead when others are written meanwhile.

        Filters: ``since`` last seen at or after, ``until`` first seen before, ``status``,
        ``min_confidence`` (0-1), ``entity_type``, ``region``, ``coin`` (any case), ``pool``,
        ``address`` (an IP, or a CIDR: a lead with a source address inside it). A bad value
        raises ValueError saying why. ``evidence=False`` leaves each lead's evidence out (a
        list page without it is a fifth of the bytes and of the decoding).
        ``json_as_text``: JSON fields (of ``LEAD_JSON_FIELDS``) to leave undecoded, as their
        stored text in an ``orjson.Fragment`` that orjson writes out as it is (a page that is
        only passed on need not build those lists).
        """
        limit = _limit(limit)
        desc = isinstance(sort, str) and sort.startswith("-")
        name = sort[1:] if desc else sort
        if name not in LEAD_SORTS:
            raise ValueError(f"sort {sort!r}: one of {', '.join(LEAD_SORTS)}, with - in front "
                             f"for descending")
        column = getattr(Lead, name)
        # -1.0 as a literal: a bound parameter would not match the index on POWER_KEY
        key = (func.coalesce(column, literal_column("-1.0"))
               if name in ("power_w", "hashrate_hs") else column)
        if status is not None and status not in STATUSES:
            raise ValueError(f"status {status!r}: one of {', '.join(STATUSES)}")
        if min_confidence is not None:
            value = _float(min_confidence)
            if value is None or not 0 <= value <= 1:
                raise ValueError(f"min_confidence {min_confidence!r}: a number from 0 to 1")
            min_confidence = value
        if entity_type is not None and entity_type not in ENTITY_TYPES:
            raise ValueError(f"entity_type {entity_type!r}: one of {', '.join(ENTITY_TYPES)}")
        network = _network(address) if address is not None else None
        after = _decode_cursor(cursor, "l", 5) if cursor is not None else None
        if after is not None and after[2] != sort:
            raise ValueError(f"cursor: made for sort {after[2]!r}, not {sort!r}")
        # SQLite plans without statistics (the Store runs no ANALYZE), guessing that an
        # equality keeps 10 rows and a range a quarter of them. Two of its choices would
        # read a whole week of a large store, so two terms are written for it: an address
        # filter drives the query (the week is no index key then), and a confidence floor
        # is said to keep most rows, so the walk in sort order wins over a range + sort.
        sqlite = self.backend == "sqlite"
        with self._read_rows() as s:
            week = after[1] if after is not None else self._week(s, week_start)
            if week is None:
                return Page([], None)
            in_week = (Lead.week_start + 0 == week) if sqlite and network is not None else (
                Lead.week_start == week)
            q = _lead_select(evidence, json_as_text).where(in_week)
            if since is not None:
                q = q.where(Lead.last_seen >= to_ns(since))
            if until is not None:
                q = q.where(Lead.first_seen < to_ns(until))
            if status is not None:
                q = q.where(Lead.status == status)
            if min_confidence is not None:
                floor = Lead.confidence >= min_confidence
                q = q.where(func.likelihood(floor, literal_column("0.9")) if sqlite else floor)
            if entity_type is not None:
                q = q.where(Lead.entity_type == entity_type)
            if region is not None:
                q = q.where(Lead.region == region)
            for kind, value in (("coin", coin and str(coin).upper()),
                                ("pool", pool and str(pool).lower())):
                if value:
                    q = q.where(exists().where(LeadValue.lead_pk == Lead.id,
                                               LeadValue.kind == kind,
                                               LeadValue.value == value))
            if network is not None:
                # the few leads with an address in range, from the address index (EXISTS
                # would have SQLite probe that index once for every lead of the week)
                low = _packed(network.network_address)
                high = _packed(network.broadcast_address)
                q = q.where(Lead.id.in_(select(LeadAddress.lead_pk).where(
                    LeadAddress.packed.between(low, high))))
            if after is not None:
                _, _, _, value, last_id = after
                beyond = key < value if desc else key > value
                # the first term is implied by the second; it lets the index walk start at
                # the cursor instead of at the week's first row
                q = q.where(key <= value if desc else key >= value,
                            or_(beyond, and_(key == value, Lead.lead_id > last_id)))
            q = q.order_by(key.desc() if desc else key.asc(), Lead.lead_id).limit(limit + 1)
            rows = s.execute(q).all()

            def cursor_of(r) -> list[Any]:
                v = getattr(r, name)
                return ["l", week, sort, -1.0 if v is None else v, r.lead_id]

            names = _LEAD_NAMES if evidence else _LEAD_SUMMARY_NAMES
            if json_as_text:
                text_at = [i for i, n in enumerate(names) if n in json_as_text]

                def item(row) -> dict[str, Any]:
                    values = list(row)
                    for i in text_at:
                        if values[i] is not None:
                            values[i] = orjson.Fragment(values[i])
                    return {"event_type": "lead", **dict(zip(names, values))}
            else:
                item = _lead_row_dict if evidence else _lead_summary_dict
            return _page(rows, limit, item, cursor_of)

    def get_lead(self, lead_id: str, week_start: Any = None) -> dict[str, Any] | None:
        """A lead of the week containing ``week_start``, or of its latest week; None when
        there is none."""
        q = select(Lead).where(Lead.lead_id == str(lead_id))
        if week_start is not None:
            t = to_ns(week_start)
            q = q.where(Lead.week_start <= t, Lead.week_start > t - WEEK_NS)
        with self._read() as s:
            row = s.scalar(q.order_by(Lead.week_start.desc()).limit(1))
            return _lead_dict(row) if row else None

    def lead_history(self, lead_id: str) -> list[dict[str, Any]]:
        """A lead's status week by week, oldest first."""
        with self._read() as s:
            rows = s.execute(select(Lead.week_start, Lead.status, Lead.status_change,
                                    Lead.confidence, Lead.power_w)
                             .where(Lead.lead_id == str(lead_id)).order_by(Lead.week_start))
            return [dict(r._mapping) for r in rows]

    def weekly_stats(self, week_start: Any = None) -> dict[str, Any]:
        """One reporting week in figures: leads by status, and leads, hashrate and power
        summed by region and by entity type (null: unattributed or not given)."""
        with self._read() as s:
            week = self._week(s, week_start)
            out: dict[str, Any] = {"week_start": week if week is not None else
                                   (to_ns(week_start) if week_start is not None else None),
                                   "leads": 0, "attributed": 0, "by_status": {},
                                   "hashrate_hs": 0.0, "power_w": 0.0, "by_region": [],
                                   "by_entity_type": []}
            if week is None:
                return out
            mine = Lead.week_start == week
            out["by_status"] = {st: n for st, n in s.execute(
                select(Lead.status, func.count()).where(mine).group_by(Lead.status)
                .order_by(Lead.status))}
            out["leads"] = sum(out["by_status"].values())
            out["attributed"] = s.scalar(select(func.count()).select_from(Lead)
                                         .where(mine, Lead.entity_id.is_not(None)))
            hs, pw = s.execute(select(func.coalesce(func.sum(Lead.hashrate_hs), 0.0),
                                      func.coalesce(func.sum(Lead.power_w), 0.0))
                               .where(mine)).one()
            out["hashrate_hs"], out["power_w"] = float(hs), float(pw)
            for field, column in (("region", Lead.region), ("entity_type", Lead.entity_type)):
                out[f"by_{field}"] = [
                    {field: v, "leads": n, "hashrate_hs": float(h or 0.0),
                     "power_w": float(p or 0.0)}
                    for v, n, h, p in s.execute(
                        select(column, func.count(), func.sum(Lead.hashrate_hs),
                               func.sum(Lead.power_w)).where(mine).group_by(column)
                        .order_by(func.coalesce(func.sum(Lead.power_w), 0.0).desc(), column))]
            return out

    # ---------------------------------------------------------------- keys, audit
    def create_key(self, name: str, scope: str) -> tuple[int, str]:
        """A new API key: returns (key_id, secret). The secret is shown this once; the
        store keeps only its SHA-256 (a 256-bit random secret needs no slow hash)."""
        if scope not in SCOPES:
            raise ValueError(f"scope {scope!r}: one of {', '.join(SCOPES)}")
        if not name or not str(name).strip() or len(str(name)) > 128:
            raise ValueError("key name: 1 to 128 characters")
        secret = "pw_" + secrets.token_urlsafe(32)
        with self._write() as s:
            key = ApiKey(name=str(name).strip(), scope=scope, key_hash=_key_hash(secret),
                         created_at=time.time_ns())
            s.add(key)
            s.flush()
            return key.id, secret

    def check_key(self, secret: str | None) -> KeyInfo | None:
        """The key a secret belongs to, or None (unknown or revoked)."""
        if not secret or not isinstance(secret, str) or len(secret) > 256:
            return None
        with self._read_rows() as conn:
            key = conn.execute(_KEY_BY_HASH, {"key_hash": _key_hash(secret)}).first()
            return KeyInfo(*key) if key else None

    def revoke_key(self, key_id: int) -> bool:
        """Revoke a key; False when there is no such key or it was already revoked."""
        with self._write() as s:
            done = s.execute(update(ApiKey).where(ApiKey.id == int(key_id),
                                                  ApiKey.revoked_at.is_(None))
                             .values(revoked_at=time.time_ns()))
            return done.rowcount == 1

    def list_keys(self) -> list[dict[str, Any]]:
        """Every key (id, name, scope, created and revoked times), never a hash."""
        with self._read() as s:
            return [{"key_id": k.id, "name": k.name, "scope": k.scope,
                     "created_at": k.created_at, "revoked_at": k.revoked_at}
                    for k in s.scalars(select(ApiKey).order_by(ApiKey.id))]

    def audit(self, key_id: int | None, action: str, target: str | None = None,
              client: str | None = None, details: Mapping[str, Any] | None = None) -> int:
        """Append to the audit log (there is no way to change or remove an entry). Returns
        the entry's id."""
        if not action:
            raise ValueError("audit: an action is needed")
        with self._write() as s:
            entry = AuditEntry(at=time.time_ns(), key_id=None if key_id is None else int(key_id),
                               action=str(action)[:64], target=_str(target),
                               client=_str(client, 128), details=_clean(dict(details or {})))
            s.add(entry)
            s.flush()
            return entry.id

    def audit_entries(self, *, since: Any = None, until: Any = None,
                      key_id: int | None = None, action: str | None = None, limit: int = 50,
                      cursor: str | None = None) -> Page:
        """The audit log, newest first."""
        limit = _limit(limit)
        q = select(AuditEntry)
        if since is not None:
            q = q.where(AuditEntry.at >= to_ns(since))
        if until is not None:
            q = q.where(AuditEntry.at < to_ns(until))
        if key_id is not None:
            q = q.where(AuditEntry.key_id == int(key_id))
        if action is not None:
            q = q.where(AuditEntry.action == action)
        if cursor is not None:
            _, before = _decode_cursor(cursor, "a", 2)
            q = q.where(AuditEntry.id < before)
        q = q.order_by(AuditEntry.id.desc()).limit(limit + 1)
        with self._read() as s:
            rows = list(s.scalars(q))
            return _page(rows, limit, lambda e: {
                "id": e.id, "at": e.at, "key_id": e.key_id, "action": e.action,
                "target": e.target, "client": e.client, "details": e.details},
                lambda e: ["a", e.id])


# ------------------------------------------------------------------------------ rows out
def _key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _monday(records: list[dict[str, Any]]) -> int:
    """Monday 00:00 UTC of the latest detection's week (``build_leads``' default), in ns."""
    latest = max((int(r.get("last_seen") or r.get("first_seen") or 0) for r in records),
                 default=time.time_ns())
    day = datetime.fromtimestamp(latest / 1e9, timezone.utc).date()
    monday = date.fromordinal(day.toordinal() - day.weekday())
    return to_ns(monday)


def _capture_dict(c: Capture) -> dict[str, Any]:
    return {"sha256": c.sha256, "first_path": c.first_path, "size": c.size,
            "first_packet": c.first_packet, "last_packet": c.last_packet,
            "first_scanned_at": c.first_scanned_at, "last_scanned_at": c.last_scanned_at,
            "scan_count": c.scan_count}


def _detection_dict(d: Detection) -> dict[str, Any]:
    return {**d.record, "id": d.id, "capture_sha256": d.capture_sha256, "batch_id": d.batch_id,
            "link_status": d.link_status, "subscriber_id": d.subscriber_id,
            "entity_id": d.entity_id, "link_confidence": d.link_confidence}


def _entity_dict(e: Entity) -> dict[str, Any]:
    return {"entity_id": e.entity_id, "entity_name": e.entity_name,
            "entity_type": e.entity_type, "registration_number": e.registration_number,
            "address": e.address, "region": e.region, "latitude": e.latitude,
            "longitude": e.longitude, "extra": e.extra, "updated_at": e.updated_at}


# list_leads selects these columns rather than Lead objects: a page of plain rows costs
# about a third less Python than ORM instances (identity map, attribute state).
_LEAD_NAMES = (*LEAD_FIELDS, "week_start", "computed_at")
_LEAD_SUMMARY_NAMES = tuple(n for n in _LEAD_NAMES if n != "evidence")
LEAD_JSON_FIELDS = frozenset(c.name for c in Lead.__table__.c if isinstance(c.type, JSON))
_LEAD_SELECTS: dict[tuple[bool, frozenset[str]], Any] = {}


def _lead_select(evidence: bool, json_as_text: frozenset[str]):
    """The lead page's SELECT, JSON fields in ``json_as_text`` as text (cast on the server:
    PostgreSQL's driver would decode a JSONB column whatever SQLAlchemy's type says). One
    statement per combination, built once, of the table's plain columns: with the ORM's
    annotated attributes, matching a cached statement's result columns to a new statement's
    compared them pairwise through SQL expressions, a fifth of a lead page's time."""
    key = (evidence, json_as_text)
    q = _LEAD_SELECTS.get(key)
    if q is None:
        unknown = json_as_text - LEAD_JSON_FIELDS
        if unknown:
            raise ValueError(f"json_as_text: {', '.join(sorted(unknown))} are no JSON fields")
        cols = Lead.__table__.c
        q = _LEAD_SELECTS[key] = select(*(
            cast(cols[f], Text).label(f) if f in json_as_text else cols[f]
            for f in (_LEAD_NAMES if evidence else _LEAD_SUMMARY_NAMES)))
    return q


# Statements run on every request, built once (building and keying a statement cost more
# than running it).
_KEY_BY_HASH = select(ApiKey.id, ApiKey.name, ApiKey.scope, ApiKey.created_at).where(
    ApiKey.key_hash == bindparam("key_hash"), ApiKey.revoked_at.is_(None))
_LATEST_WEEK = select(func.max(Lead.week_start))


def _lead_summary_dict(row: Any) -> dict[str, Any]:
    """A row of ``_lead_select(False, …)``: a lead without its evidence."""
    out: dict[str, Any] = {"event_type": "lead"}
    out.update(zip(_LEAD_SUMMARY_NAMES, row))
    return out


def _lead_row_dict(row: Any) -> dict[str, Any]:
    """A row of ``_lead_select(True, …)`` as ``_lead_dict`` gives a Lead."""
    out: dict[str, Any] = {"event_type": "lead"}
    out.update(zip(_LEAD_NAMES, row))
    return out


def _lead_dict(row: Lead) -> dict[str, Any]:
    return {"event_type": "lead", **{f: getattr(row, f) for f in LEAD_FIELDS},
            "week_start": row.week_start, "computed_at": row.computed_at}
