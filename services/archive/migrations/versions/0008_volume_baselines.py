"""The volume aggregation at scale: ``mention_counts`` read by index only, and the baseline's replays kept.

- PostgreSQL: an index ``mention_counts (watch, bucket, sentiment) INCLUDE (n)``. The table is filled
  by grouped upserts in no particular order, so one watch's 79,000 rows of a 90-day range lie on
  about 19,000 heap pages; with ``n`` in the index they are read from a few hundred index pages
  (an index-only scan: 0.5 s -> a few tens of ms on a 10-million-mention archive). SQLite's
  ``mention_counts`` is a ``WITHOUT ROWID`` table, already ordered by its key: nothing to do.
- ``volume_baselines``: the spike detector's replays the volume aggregation's baseline comes from
  (``services/archive/aggregate.py``), one row per (watch, detector settings, first bucket), so the
  first call of a new process resumes the replay instead of stepping the detector over 28,000
  5-minute buckets (about 2 s). ``state`` is zlib-compressed JSON: the counts the replay was fed,
  what it expected for each bucket, and the detector's state (``SpikeDetector.to_state``) once a
  day; a cache, written by the readers, that can be emptied at any time.

The upgrade builds one index over ``mention_counts`` (2.7 million rows for a 10-million-mention
archive: about 5 s) and creates an empty table.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLE = """
CREATE TABLE volume_baselines (
    watch {text} NOT NULL,
    settings {text} NOT NULL,
    start {bigint} NOT NULL,
    state {blob} NOT NULL,
    updated_at {time} NOT NULL,
    PRIMARY KEY (watch, settings, start)
)
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE INDEX IF NOT EXISTS mention_counts_cover_idx ON mention_counts (watch, bucket, sentiment) "
            "INCLUDE (n)"
        )
        op.execute(_TABLE.format(text="text", bigint="bigint", blob="bytea", time="timestamptz"))
    else:
        op.execute(_TABLE.format(text="TEXT", bigint="INTEGER", blob="BLOB", time="DATETIME"))


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS volume_baselines")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS mention_counts_cover_idx")
