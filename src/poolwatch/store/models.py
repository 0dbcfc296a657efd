"""The lead store's tables, as SQLAlchemy 2 ``Mapped[...]`` models (docs/store.md).

One schema serves SQLite and PostgreSQL. Portable choices, each for a reason:

* Every time is a BIGINT of nanoseconds since the Unix epoch, UTC: the detectors' own form
  (``StratumSession.first_seen``), exact (no float or time-zone rounding between backends),
  and a plain integer range is what an index serves best.
* JSON columns are JSONB on PostgreSQL and JSON text on SQLite.
* Integer primary keys are INTEGER on SQLite (so they alias the rowid and autoincrement)
  and BIGINT elsewhere.
* Constraint names follow a naming convention, so Alembic's batch mode (SQLite rebuilds
  tables to ALTER them) can find them again.

The migrations in ``migrations/versions`` create exactly these tables; a test compares
them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, CheckConstraint, Float, ForeignKey, Index,
                        Integer, LargeBinary, MetaData, String, Text, UniqueConstraint, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Json = JSON().with_variant(JSONB(), "postgresql")
BigId = BigInteger().with_variant(Integer(), "sqlite")
Ns = BigInteger  # nanoseconds since the epoch, UTC

KINDS = ("stratum_session", "pool_contact")
# The sort key of power (and hashrate) listings: a missing value sorts as the smallest.
# Written with a literal, not a bound parameter, so that both backends match the queries
# of Store.list_leads to the expression indexes below.
POWER_KEY = "coalesce(power_w, -1.0)"
SCOPES = ("sensor", "analyst", "investigator", "admin")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: Json, list[Any]: Json, Any: Json}


class Capture(Base):
    """A capture file, by the SHA-256 of its bytes as stored: renamed or copied, it is the
    same capture; rescanned, its count goes up and nothing else is duplicated."""

    __tablename__ = "captures"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_path: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    first_packet: Mapped[int | None] = mapped_column(Ns)
    last_packet: Mapped[int | None] = mapped_column(Ns)
    first_scanned_at: Mapped[int | None] = mapped_column(Ns)
    last_scanned_at: Mapped[int | None] = mapped_column(Ns)
    scan_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class IngestBatch(Base):
    """One call of ``Store.ingest``: a scan's slice of records or a sensor's batch. The
    idempotency key makes a retried batch a replay of the first answer."""

    __tablename__ = "ingest_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    source: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[int] = mapped_column(Ns, index=True)
    record_count: Mapped[int] = mapped_column(Integer)
    inserted: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    # SHA-256 over the batch's sorted natural keys: a key reused for other records is refused
    digest: Mapped[str] = mapped_column(String(64))


class Detection(Base):
    """A stratum session or pool contact. ``natural_key`` makes re-ingesting a no-op: the
    SHA-256 of kind, Community ID, first-seen ns and capture SHA-256, or of the whole record
    when it names no capture (a live sensor's)."""

    __tablename__ = "detections"
    __table_args__ = (
        CheckConstraint("kind IN ('stratum_session', 'pool_contact')", name="kind"),
        Index("ix_detections_kind_first_seen", "kind", "first_seen", "id"),
        Index("ix_detections_first_seen", "first_seen", "id"),
        Index("ix_detections_entity_first_seen", "entity_id", "first_seen"),
        Index("ix_detections_src_ip", "src_ip"),
        Index("ix_detections_capture_sha256", "capture_sha256"),
        Index("ix_detections_batch_id", "batch_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    natural_key: Mapped[str] = mapped_column(String(64), unique=True)
    community_id: Mapped[str | None] = mapped_column(String(64))
    src_ip: Mapped[str] = mapped_column(String(64))
    src_port: Mapped[int | None] = mapped_column(Integer)
    dest_ip: Mapped[str | None] = mapped_column(String(64))
    dest_port: Mapped[int | None] = mapped_column(Integer)
    first_seen: Mapped[int] = mapped_column(Ns)
    last_seen: Mapped[int] = mapped_column(Ns)
    pool: Mapped[str | None] = mapped_column(String(256))
    coin: Mapped[str | None] = mapped_column(String(32))
    dialect: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(Text)
    wallet: Mapped[str | None] = mapped_column(Text)
    hashrate_hs: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    score: Mapped[float | None] = mapped_column(Float)
    record: Mapped[dict[str, Any]] = mapped_column(Json)
    capture_sha256: Mapped[str | None] = mapped_column(ForeignKey("captures.sha256"))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("ingest_batches.id"))
    subscriber_id: Mapped[str | None] = mapped_column(String(128))
    entity_id: Mapped[str | None] = mapped_column(String(128))
    link_status: Mapped[str | None] = mapped_column(String(16))
    link_confidence: Mapped[float | None] = mapped_column(Float)


class Entity(Base):
    """A company, household or institution of the ISP's registry."""

    __tablename__ = "entities"
    __table_args__ = (Index("ix_entities_entity_type", "entity_type"),
                      Index("ix_entities_region", "region"))

    entity_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_name: Mapped[str | None] = mapped_column(Text)
    entity_type: Mapped[str | None] = mapped_column(String(32))
    registration_number: Mapped[str | None] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(String(128))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    extra: Mapped[dict[str, Any]] = mapped_column(Json)
    updated_at: Mapped[int] = mapped_column(Ns)


class SubscriberRow(Base):
    """An access line or contract of an entity (the registry's rows)."""

    __tablename__ = "subscribers"
    __table_args__ = (Index("ix_subscribers_entity_id", "entity_id"),)

    subscriber_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    entity_id: Mapped[str] = mapped_column(ForeignKey("entities.entity_id"))
    address: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(String(128))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    cpe_mac: Mapped[str | None] = mapped_column(String(17))
    extra: Mapped[dict[str, Any]] = mapped_column(Json)
    origin: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[int] = mapped_column(Ns)


class Lead(Base):
    """A lead of one reporting week: one row per (lead_id, week_start), so a lead's weekly
    status history stays. A surrogate ``id`` keys the filter side tables."""

    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("lead_id", "week_start"),
        # The default listing, -power_w (ties by lead_id), walks these in order and stops
        # after a page, with or without an equality filter; plain power_w columns could
        # not serve it, because a missing power sorts as the smallest (migration 0002).
        Index("ix_leads_week_power_key", "week_start", text(f"{POWER_KEY} DESC"), "lead_id"),
        Index("ix_leads_week_status_power", "week_start", "status", text(f"{POWER_KEY} DESC"),
              "lead_id"),
        Index("ix_leads_week_type_power", "week_start", "entity_type",
              text(f"{POWER_KEY} DESC"), "lead_id", "confidence"),
        Index("ix_leads_week_region_power", "week_start", "region", text(f"{POWER_KEY} DESC"),
              "lead_id"),
        Index("ix_leads_week_confidence", "week_start", "confidence", "lead_id"),
        Index("ix_leads_week_last_seen", "week_start", "last_seen", "lead_id"),
        Index("ix_leads_entity_id", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_id: Mapped[str] = mapped_column(String(32))
    week_start: Mapped[int] = mapped_column(Ns)
    entity_id: Mapped[str | None] = mapped_column(String(128))
    entity_name: Mapped[str | None] = mapped_column(Text)
    entity_type: Mapped[str | None] = mapped_column(String(32))
    registration_number: Mapped[str | None] = mapped_column(String(128))
    address: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(String(128))
    subscriber_ids: Mapped[list[Any]] = mapped_column(Json)
    src_ips: Mapped[list[Any]] = mapped_column(Json)
    sessions: Mapped[int] = mapped_column(Integer)
    contacts: Mapped[int] = mapped_column(Integer)
    pools: Mapped[list[Any]] = mapped_column(Json)
    coins: Mapped[list[Any]] = mapped_column(Json)
    wallets: Mapped[list[Any]] = mapped_column(Json)
    workers: Mapped[list[Any]] = mapped_column(Json)
    hashrate_hs: Mapped[float | None] = mapped_column(Float)
    hashrate_hs_low: Mapped[float | None] = mapped_column(Float)
    hashrate_hs_high: Mapped[float | None] = mapped_column(Float)
    power_w: Mapped[float | None] = mapped_column(Float)
    power_w_low: Mapped[float | None] = mapped_column(Float)
    power_w_high: Mapped[float | None] = mapped_column(Float)
    energy_kwh_per_day: Mapped[float | None] = mapped_column(Float)
    first_seen: Mapped[int] = mapped_column(Ns)
    last_seen: Mapped[int] = mapped_column(Ns)
    status: Mapped[str] = mapped_column(String(16))
    status_change: Mapped[str | None] = mapped_column(String(40))
    confidence: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[Any]] = mapped_column(Json)
    datacenter: Mapped[bool] = mapped_column(Boolean)
    meter_ratio: Mapped[float | None] = mapped_column(Float)
    candidates: Mapped[list[Any]] = mapped_column(Json)
    evidence: Mapped[list[Any]] = mapped_column(Json)
    computed_at: Mapped[int] = mapped_column(Ns)


class LeadValue(Base):
    """A lead's coins and pools, one row each, so ``coin=`` and ``pool=`` filters are index
    lookups rather than scans of JSON lists (portable between the backends)."""

    __tablename__ = "lead_values"
    __table_args__ = (Index("ix_lead_values_kind_value", "kind", "value", "lead_pk"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "coin" (upper case) or "pool" (lower)
    value: Mapped[str] = mapped_column(String(256))


class LeadAddress(Base):
    """A lead's source addresses as 16 bytes (IPv4 mapped into ::ffff:0:0/96), so that "an
    address in this CIDR" is one index range scan, ``packed BETWEEN first AND last``, on
    both backends (bytes compare as unsigned big-endian numbers in both)."""

    __tablename__ = "lead_addresses"
    __table_args__ = (Index("ix_lead_addresses_packed", "packed", "lead_pk"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    ip: Mapped[str] = mapped_column(String(64))
    packed: Mapped[bytes] = mapped_column(LargeBinary(16))


class ApiKey(Base):
    """An API key: only the SHA-256 of its secret is kept (the secret is shown once)."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("scope IN ('sensor', 'analyst', 'investigator', 'admin')",
                        name="scope"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(Ns)
    revoked_at: Mapped[int | None] = mapped_column(Ns)


class AuditEntry(Base):
    """Who read or changed what. Append-only: the Store has no update or delete for it, and
    a trigger refuses UPDATE and DELETE (and TRUNCATE on PostgreSQL) in the database."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_key_id", "key_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[int] = mapped_column(Ns)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(Json)
