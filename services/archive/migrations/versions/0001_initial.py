"""The archive's first schema: mentions (monthly partitions on PostgreSQL), their watches, alerts, full text.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

import structlog
from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = structlog.get_logger("archive.migrations")

_POSTGRES = [
    """
    CREATE TABLE mentions (
        id text NOT NULL,
        ts timestamptz NOT NULL,
        source text NOT NULL,
        watch text,
        url text,
        title text,
        text text NOT NULL,
        author text,
        site text,
        lang text,
        sentiment text NOT NULL,
        sentiment_score double precision NOT NULL,
        story_id text,
        watches jsonb NOT NULL DEFAULT '[]'::jsonb,
        engagement jsonb,
        published_at timestamptz,
        ingested_at timestamptz NOT NULL,
        classified_at timestamptz NOT NULL,
        archived_at timestamptz NOT NULL DEFAULT now(),
        tsv tsvector,
        PRIMARY KEY (id, ts)
    ) PARTITION BY RANGE (ts)
    """,
    "CREATE INDEX mentions_ts_idx ON mentions (ts)",
    "CREATE INDEX mentions_tsv_idx ON mentions USING gin (tsv)",
    "CREATE INDEX mentions_story_idx ON mentions (story_id, ts)",
    "CREATE INDEX mentions_source_idx ON mentions (source, ts)",
    "CREATE TABLE mention_keys (id text PRIMARY KEY, ts timestamptz NOT NULL)",
    "CREATE INDEX mention_keys_ts_idx ON mention_keys (ts)",
    """
    CREATE TABLE mention_watches (
        watch text NOT NULL,
        ts timestamptz NOT NULL,
        mention_id text NOT NULL,
        sentiment text NOT NULL,
        PRIMARY KEY (watch, ts, mention_id)
    ) PARTITION BY RANGE (ts)
    """,
    "CREATE INDEX mention_watches_mention_idx ON mention_watches (mention_id)",
    """
    CREATE TABLE alerts (
        id text NOT NULL,
        status text NOT NULL,
        watch text NOT NULL,
        kind text NOT NULL,
        severity text NOT NULL,
        summary text NOT NULL,
        lang text,
        source text,
        observed double precision,
        expected double precision,
        mention_count integer NOT NULL,
        started_at timestamptz NOT NULL,
        ends_at timestamptz,
        raised_at timestamptz NOT NULL,
        payload jsonb NOT NULL,
        archived_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (id, status)
    )
    """,
    "CREATE INDEX alerts_watch_idx ON alerts (watch, raised_at)",
    "CREATE INDEX alerts_raised_idx ON alerts (raised_at)",
]

_SQLITE = [
    # seq: a stable integer rowid for the FTS5 external-content index (a VACUUM may renumber an implicit rowid)
    """
    CREATE TABLE mentions (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        ts DATETIME NOT NULL,
        source TEXT NOT NULL,
        watch TEXT,
        url TEXT,
        title TEXT,
        text TEXT NOT NULL,
        author TEXT,
        site TEXT,
        lang TEXT,
        sentiment TEXT NOT NULL,
        sentiment_score REAL NOT NULL,
        story_id TEXT,
        watches JSON NOT NULL DEFAULT '[]',
        engagement JSON,
        published_at DATETIME,
        ingested_at DATETIME NOT NULL,
        classified_at DATETIME NOT NULL,
        archived_at DATETIME NOT NULL
    )
    """,
    "CREATE INDEX mentions_ts_idx ON mentions (ts)",
    "CREATE INDEX mentions_story_idx ON mentions (story_id, ts)",
    "CREATE INDEX mentions_source_idx ON mentions (source, ts)",
    """
    CREATE VIRTUAL TABLE mentions_fts USING fts5(
        title, text, content='mentions', content_rowid='seq', tokenize='unicode61 remove_diacritics 2'
    )
    """,
    """
    CREATE TRIGGER mentions_fts_insert AFTER INSERT ON mentions BEGIN
        INSERT INTO mentions_fts (rowid, title, text) VALUES (new.seq, new.title, new.text);
    END
    """,
    """
    CREATE TRIGGER mentions_fts_delete AFTER DELETE ON mentions BEGIN
        INSERT INTO mentions_fts (mentions_fts, rowid, title, text) VALUES ('delete', old.seq, old.title, old.text);
    END
    """,
    """
    CREATE TRIGGER mentions_fts_update AFTER UPDATE OF title, text ON mentions BEGIN
        INSERT INTO mentions_fts (mentions_fts, rowid, title, text) VALUES ('delete', old.seq, old.title, old.text);
        INSERT INTO mentions_fts (rowid, title, text) VALUES (new.seq, new.title, new.text);
    END
    """,
    """
    CREATE TABLE mention_watches (
        watch TEXT NOT NULL,
        ts DATETIME NOT NULL,
        mention_id TEXT NOT NULL,
        sentiment TEXT NOT NULL,
        PRIMARY KEY (watch, ts, mention_id)
    )
    """,
    "CREATE INDEX mention_watches_mention_idx ON mention_watches (mention_id)",
    "CREATE INDEX mention_watches_ts_idx ON mention_watches (ts)",
    """
    CREATE TABLE alerts (
        id TEXT NOT NULL,
        status TEXT NOT NULL,
        watch TEXT NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        summary TEXT NOT NULL,
        lang TEXT,
        source TEXT,
        observed REAL,
        expected REAL,
        mention_count INTEGER NOT NULL,
        started_at DATETIME NOT NULL,
        ends_at DATETIME,
        raised_at DATETIME NOT NULL,
        payload JSON NOT NULL,
        archived_at DATETIME NOT NULL,
        PRIMARY KEY (id, status)
    )
    """,
    "CREATE INDEX alerts_watch_idx ON alerts (watch, raised_at)",
    "CREATE INDEX alerts_raised_idx ON alerts (raised_at)",
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        _create_unaccent(bind)
        statements = _POSTGRES
    else:
        statements = _SQLITE
    for statement in statements:
        op.execute(statement)


def _create_unaccent(bind: object) -> None:
    """``CREATE EXTENSION unaccent`` when this role may; without it search still works, accents count."""
    try:
        with bind.begin_nested():  # type: ignore[attr-defined]  # a savepoint: a refusal leaves the migration going
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")  # type: ignore[attr-defined]
    except DBAPIError as exc:
        log.warning(
            "archive.unaccent_unavailable",
            error=str(exc.orig).splitlines()[0] if exc.orig else str(exc),
            effect="full-text search will not fold accents (é and e differ); a superuser can run "
            "CREATE EXTENSION unaccent in this database, then restart the archive",
        )


def downgrade() -> None:
    for table in ("alerts", "mention_watches", "mention_keys", "mentions_fts", "mentions"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
