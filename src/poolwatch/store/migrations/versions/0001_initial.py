"""The lead store's first schema: captures, ingest batches, detections, the registry,
weekly leads (with their coin/pool and address side tables), API keys and the append-only
audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here, not imported from models.py: a migration is history and must not
# change when the models do.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NS = sa.BigInteger  # nanoseconds since the epoch, UTC


def _id() -> sa.Column:
    return sa.Column("id", ID, nullable=False)


def upgrade() -> None:
    op.create_table(
        "captures",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("first_path", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("first_packet", NS(), nullable=True),
        sa.Column("last_packet", NS(), nullable=True),
        sa.Column("first_scanned_at", NS(), nullable=True),
        sa.Column("last_scanned_at", NS(), nullable=True),
        sa.Column("scan_count", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("sha256", name="pk_captures"),
    )
    op.create_table(
        "ingest_batches",
        _id(),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("received_at", NS(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_batches"),
        sa.UniqueConstraint("idempotency_key", name="uq_ingest_batches_idempotency_key"),
    )
    op.create_index("ix_ingest_batches_received_at", "ingest_batches", ["received_at"])
    op.create_table(
        "detections",
        _id(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("natural_key", sa.String(64), nullable=False),
        sa.Column("community_id", sa.String(64), nullable=True),
        sa.Column("src_ip", sa.String(64), nullable=False),
        sa.Column("src_port", sa.Integer(), nullable=True),
        sa.Column("dest_ip", sa.String(64), nullable=True),
        sa.Column("dest_port", sa.Integer(), nullable=True),
        sa.Column("first_seen", NS(), nullable=False),
        sa.Column("last_seen", NS(), nullable=False),
        sa.Column("pool", sa.String(256), nullable=True),
        sa.Column("coin", sa.String(32), nullable=True),
        sa.Column("dialect", sa.String(64), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("wallet", sa.Text(), nullable=True),
        sa.Column("hashrate_hs", sa.Float(), nullable=True),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("record", JSON, nullable=False),
        sa.Column("capture_sha256", sa.String(64), nullable=True),
        sa.Column("batch_id", ID, nullable=True),
        sa.Column("subscriber_id", sa.String(128), nullable=True),
        sa.Column("entity_id", sa.String(128), nullable=True),
        sa.Column("link_status", sa.String(16), nullable=True),
        sa.Column("link_confidence", sa.Float(), nullable=True),
        sa.CheckConstraint("kind IN ('stratum_session', 'pool_contact')",
                           name="ck_detections_kind"),
        sa.ForeignKeyConstraint(["batch_id"], ["ingest_batches.id"],
                                name="fk_detections_batch_id_ingest_batches"),
        sa.ForeignKeyConstraint(["capture_sha256"], ["captures.sha256"],
                                name="fk_detections_capture_sha256_captures"),
        sa.PrimaryKeyConstraint("id", name="pk_detections"),
        sa.UniqueConstraint("natural_key", name="uq_detections_natural_key"),
    )
    op.create_index("ix_detections_kind_first_seen", "detections", ["kind", "first_seen", "id"])
    op.create_index("ix_detections_first_seen", "detections", ["first_seen", "id"])
    op.create_index("ix_detections_entity_first_seen", "detections", ["entity_id", "first_seen"])
    op.create_index("ix_detections_src_ip", "detections", ["src_ip"])
    op.create_index("ix_detections_capture_sha256", "detections", ["capture_sha256"])
    op.create_index("ix_detections_batch_id", "detections", ["batch_id"])

    op.create_table(
        "entities",
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("entity_name", sa.Text(), nullable=True),
        sa.Column("entity_type", sa.String(32), nullable=True),
        sa.Column("registration_number", sa.String(128), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("region", sa.String(128), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("updated_at", NS(), nullable=False),
        sa.PrimaryKeyConstraint("entity_id", name="pk_entities"),
    )
    op.create_index("ix_entities_entity_type", "entities", ["entity_type"])
    op.create_index("ix_entities_region", "entities", ["region"])
    op.create_table(
        "subscribers",
        sa.Column("subscriber_id", sa.String(128), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("region", sa.String(128), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("cpe_mac", sa.String(17), nullable=True),
        sa.Column("extra", JSON, nullable=False),
        sa.Column("origin", sa.Text(), nullable=True),
        sa.Column("updated_at", NS(), nullable=False),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.entity_id"],
                                name="fk_subscribers_entity_id_entities"),
        sa.PrimaryKeyConstraint("subscriber_id", name="pk_subscribers"),
    )
    op.create_index("ix_subscribers_entity_id", "subscribers", ["entity_id"])

    op.create_table(
        "leads",
        _id(),
        sa.Column("lead_id", sa.String(32), nullable=False),
        sa.Column("week_start", NS(), nullable=False),
        sa.Column("entity_id", sa.String(128), nullable=True),
        sa.Column("entity_name", sa.Text(), nullable=True),
        sa.Column("entity_type", sa.String(32), nullable=True),
        sa.Column("registration_number", sa.String(128), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("region", sa.String(128), nullable=True),
        sa.Column("subscriber_ids", JSON, nullable=False),
        sa.Column("src_ips", JSON, nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("pools", JSON, nullable=False),
        sa.Column("coins", JSON, nullable=False),
        sa.Column("wallets", JSON, nullable=False),
        sa.Column("workers", JSON, nullable=False),
        sa.Column("hashrate_hs", sa.Float(), nullable=True),
        sa.Column("hashrate_hs_low", sa.Float(), nullable=True),
        sa.Column("hashrate_hs_high", sa.Float(), nullable=True),
        sa.Column("power_w", sa.Float(), nullable=True),
        sa.Column("power_w_low", sa.Float(), nullable=True),
        sa.Column("power_w_high", sa.Float(), nullable=True),
        sa.Column("energy_kwh_per_day", sa.Float(), nullable=True),
        sa.Column("first_seen", NS(), nullable=False),
        sa.Column("last_seen", NS(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_change", sa.String(40), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("reasons", JSON, nullable=False),
        sa.Column("datacenter", sa.Boolean(), nullable=False),
        sa.Column("meter_ratio", sa.Float(), nullable=True),
        sa.Column("candidates", JSON, nullable=False),
        sa.Column("evidence", JSON, nullable=False),
        sa.Column("computed_at", NS(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_leads"),
        sa.UniqueConstraint("lead_id", "week_start", name="uq_leads_lead_id_week_start"),
    )
    op.create_index("ix_leads_week_status", "leads", ["week_start", "status"])
    op.create_index("ix_leads_week_entity_type", "leads", ["week_start", "entity_type"])
    op.create_index("ix_leads_week_region", "leads", ["week_start", "region"])
    op.create_index("ix_leads_week_power", "leads", ["week_start", "power_w", "lead_id"])
    op.create_index("ix_leads_week_confidence", "leads", ["week_start", "confidence", "lead_id"])
    op.create_index("ix_leads_week_last_seen", "leads", ["week_start", "last_seen", "lead_id"])
    op.create_index("ix_leads_entity_id", "leads", ["entity_id"])
    op.create_table(
        "lead_values",
        _id(),
        sa.Column("lead_pk", ID, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.ForeignKeyConstraint(["lead_pk"], ["leads.id"], name="fk_lead_values_lead_pk_leads",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_lead_values"),
    )
    op.create_index("ix_lead_values_kind_value", "lead_values", ["kind", "value", "lead_pk"])
    op.create_index("ix_lead_values_lead_pk", "lead_values", ["lead_pk"])
    op.create_table(
        "lead_addresses",
        _id(),
        sa.Column("lead_pk", ID, nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("packed", sa.LargeBinary(16), nullable=False),
        sa.ForeignKeyConstraint(["lead_pk"], ["leads.id"],
                                name="fk_lead_addresses_lead_pk_leads", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_lead_addresses"),
    )
    op.create_index("ix_lead_addresses_packed", "lead_addresses", ["packed", "lead_pk"])
    op.create_index("ix_lead_addresses_lead_pk", "lead_addresses", ["lead_pk"])

    op.create_table(
        "api_keys",
        _id(),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", NS(), nullable=False),
        sa.Column("revoked_at", NS(), nullable=True),
        sa.CheckConstraint("scope IN ('sensor', 'analyst', 'investigator', 'admin')",
                           name="ck_api_keys_scope"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_table(
        "audit_log",
        _id(),
        sa.Column("at", NS(), nullable=False),
        sa.Column("key_id", ID, nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("client", sa.String(128), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name="fk_audit_log_key_id_api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_key_id", "audit_log", ["key_id"])
    _audit_log_append_only()


def _audit_log_append_only() -> None:
    """The database itself refuses to rewrite history, whatever client connects."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION poolwatch_audit_log_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
                    USING ERRCODE = 'insufficient_privilege';
            END $$
        """)
        op.execute("CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
                   "FOR EACH ROW EXECUTE FUNCTION poolwatch_audit_log_append_only()")
        op.execute("CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
                   "FOR EACH STATEMENT EXECUTE FUNCTION poolwatch_audit_log_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
                       f"BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: {verb} "
                       f"refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS poolwatch_audit_log_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_delete")
    for table in ("audit_log", "api_keys", "lead_addresses", "lead_values", "leads",
                  "subscribers", "entities", "detections", "ingest_batches", "captures"):
        op.drop_table(table)
