"""Indexes for the archive's aggregations (services/archive/aggregate.py).

- ``mention_watches (watch, ts, sentiment)``: a watch's volume per bucket and sentiment over a time
  range reads this index alone (covering), without visiting the table.
- ``mentions (site, ts)``: top sites of a time range.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEXES = {
    "mention_watches_volume_idx": "mention_watches (watch, ts, sentiment)",
    "mentions_site_idx": "mentions (site, ts)",
}


def upgrade() -> None:
    # on PostgreSQL an index on a partitioned table is created on every partition (and future ones)
    for name, target in _INDEXES.items():
        op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")


def downgrade() -> None:
    for name in _INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
