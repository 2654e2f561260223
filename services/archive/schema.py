"""The archive's tables (SQLAlchemy Core), the same names and columns on SQLite and PostgreSQL.

The DDL itself lives in the Alembic migrations (``migrations/versions``), which add what each
database does its own way:

- ``mentions``: one row per mention id. ``ts`` is the mention's time on the archive's axis (its
  published time, else its ingested time), set when the mention is first archived and never moved.
  PostgreSQL partitions it by month of ``ts`` (``mentions_pYYYY_MM``) and keeps a ``tsv``
  column (tsvector, ``french`` or ``english`` configuration by the mention's language, ``simple``
  otherwise, accents removed by ``unaccent`` when the extension is there); SQLite keeps an FTS5
  external-content index ``mentions_fts`` (title, text) synced by triggers.
- ``mention_keys`` (PostgreSQL only): mention id -> ``ts``. A partitioned table's unique keys must
  hold the partition key, so this small table is what makes an id unique across partitions: a
  mention seen again with another ingested time is still the same row.
- ``mention_watches``: (watch, ts, mention id, sentiment), one row per watch a mention matched,
  the table volume and sentiment aggregations per watch read (partitioned like ``mentions``).
- ``mention_counts``: ``mention_watches`` counted per (watch, 5-minute bucket, sentiment), kept
  by triggers, what the volume aggregation reads (a 90-day series is at most 78,000 rows).
- ``alerts``: one row per (alert id, status): a firing alert and its resolution are two rows.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = [
    "VERSION_TABLE",
    "alerts",
    "mention_counts",
    "mention_keys",
    "mention_watches",
    "mentions",
    "metadata",
    "volume_baselines",
]

VERSION_TABLE = "archive_alembic_version"
"""Alembic's version table (its own name, so the archive can share a database with other schemas)."""

metadata = MetaData()

_JSON = JSON().with_variant(JSONB(), "postgresql")
_TIME = DateTime(timezone=True)

mentions = Table(
    "mentions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("ts", _TIME, primary_key=True, doc="published_at, else ingested_at: the archive's time axis"),
    Column("source", Text, nullable=False),
    Column("watch", Text, doc="the watch whose source search found it, if any"),
    Column("url", Text),
    Column("title", Text),
    Column("text", Text, nullable=False),
    Column("author", Text),
    Column("site", Text),
    Column("lang", Text, doc="detected (else declared) language"),
    Column("sentiment", Text, nullable=False),
    Column("sentiment_score", Float, nullable=False),
    Column("story_id", Text),
    Column("watches", _JSON, nullable=False),
    Column("engagement", _JSON),
    Column("published_at", _TIME),
    Column("ingested_at", _TIME, nullable=False),
    Column("classified_at", _TIME, nullable=False),
    Column("archived_at", _TIME, nullable=False),
)

mention_keys = Table(
    "mention_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("ts", _TIME, nullable=False),
)

mention_watches = Table(
    "mention_watches",
    metadata,
    Column("watch", Text, primary_key=True),
    Column("ts", _TIME, primary_key=True),
    Column("mention_id", Text, primary_key=True),
    Column("sentiment", Text, nullable=False),
)

COUNTS_GRAIN = 300
"""Seconds per bucket of the pre-aggregated ``mention_counts`` (migration 0006)."""

mention_counts = Table(
    "mention_counts",
    metadata,
    Column("watch", Text, primary_key=True),
    Column("bucket", Integer, primary_key=True, doc="floor(seconds since the epoch / 300)"),
    Column("sentiment", Text, primary_key=True),
    Column("n", Integer, nullable=False),
)
"""Mentions per (watch, 5-minute bucket, sentiment): ``mention_watches`` pre-aggregated by triggers
(migration 0006), what volume aggregations read."""

alerts = Table(
    "alerts",
    metadata,
    Column("id", Text, primary_key=True),
    Column("status", Text, primary_key=True),
    Column("watch", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("severity", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("lang", Text),
    Column("source", Text),
    Column("observed", Float),
    Column("expected", Float),
    Column("mention_count", Integer, nullable=False),
    Column("started_at", _TIME, nullable=False),
    Column("ends_at", _TIME),
    Column("raised_at", _TIME, nullable=False),
    Column("payload", _JSON, nullable=False, doc="the whole AlertRaised message"),
    Column("archived_at", _TIME, nullable=False),
)

volume_baselines = Table(
    "volume_baselines",
    metadata,
    Column("watch", Text, primary_key=True),
    Column("settings", Text, primary_key=True, doc="a digest of the detector's settings"),
    Column("start", BigInteger, primary_key=True, doc="the replay's first 5-minute bucket (epoch / width)"),
    Column("state", LargeBinary, nullable=False, doc="zlib-compressed JSON: counts, expected, detector states"),
    Column("updated_at", _TIME, nullable=False),
)
"""The volume baseline's detector replays, kept for the next process (migration 0008; a cache the
readers write, see ``aggregate.volume``)."""
