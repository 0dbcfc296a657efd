"""Lead listing indexes in the listing's own order: ``GET /v1/leads`` (default sort
``-power_w``, ties by ``lead_id``) reads one page from an index instead of sorting the week.

The sort key is ``coalesce(power_w, -1.0)`` (a missing power sorts as the smallest), which
the old ``(week_start, power_w, lead_id)`` index could not serve, so every list query read
and sorted all of its week's matching rows, JSON and all: about 20,000 rows a week with a
million leads stored. The week + status, week + entity type and week + region indexes
become the same prefix followed by that key, so a filtered page is an index walk too;
the entity type one also carries ``confidence``, so a ``min_confidence`` filter is checked
in the index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Written out here, not imported from models.py: a migration is history.
KEY = sa.text("coalesce(power_w, -1.0) DESC")

OLD = (("ix_leads_week_status", ["week_start", "status"]),
       ("ix_leads_week_entity_type", ["week_start", "entity_type"]),
       ("ix_leads_week_region", ["week_start", "region"]),
       ("ix_leads_week_power", ["week_start", "power_w", "lead_id"]))
NEW = (("ix_leads_week_power_key", ["week_start", KEY, "lead_id"]),
       ("ix_leads_week_status_power", ["week_start", "status", KEY, "lead_id"]),
       ("ix_leads_week_type_power", ["week_start", "entity_type", KEY, "lead_id",
                                     "confidence"]),
       ("ix_leads_week_region_power", ["week_start", "region", KEY, "lead_id"]))


def upgrade() -> None:
    for name, columns in NEW:
        op.create_index(name, "leads", columns)
    for name, _ in OLD:
        op.drop_index(name, table_name="leads")


def downgrade() -> None:
    for name, columns in OLD:
        op.create_index(name, "leads", columns)
    for name, _ in NEW:
        op.drop_index(name, table_name="leads")
