"""Cheaper writes: the pre-count triggers of 0006/0007 (and SQLite's full-text update) fire only when
what they count changed.

SQLite row triggers (``AFTER UPDATE OF`` fires when a column is in the ``SET`` list, changed or not, and
the archive's store rewrites every column of a reclassified mention):

- ``mentions_fts_update``: only when ``title`` or ``text`` differ (else the full-text index deleted and
  re-added the same words: a new FTS5 segment per batch);
- ``mention_tops_update``: only when ``watches``, ``ts``, ``story_id``, ``source`` or ``site`` differ (a
  reclassification that moves the sentiment alone changes no top count);
- ``mention_tops_insert`` / ``_delete``: not for a mention that matched no watch (``watches`` is ``[]``:
  nothing to count, the ``json_each`` and its three upserts were paid for nothing);
- ``mention_counts_update``: only when ``watch``, ``ts`` or ``sentiment`` differ.

PostgreSQL: ``mention_tops_add`` (after an insert into ``mentions``) no longer runs the zero-count
delete, which aggregated the inserted rows a second time: adding counts cannot bring one to zero.

Nothing is rewritten: the upgrade replaces triggers and one function, instantly on any archive.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

# ruff: noqa: S608 - the SQL here is built from constants only
from __future__ import annotations

import importlib

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_counts = importlib.import_module("services.archive.migrations.versions.0006_mention_counts")
_tops = importlib.import_module("services.archive.migrations.versions.0007_mention_tops")

_TOPS_COLUMNS = ("watches", "ts", "story_id", "source", "site")


def _differ(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"old.{c} IS NOT new.{c}" for c in columns)


_SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS mentions_fts_update",
    "DROP TRIGGER IF EXISTS mention_tops_insert",
    "DROP TRIGGER IF EXISTS mention_tops_delete",
    "DROP TRIGGER IF EXISTS mention_tops_update",
    "DROP TRIGGER IF EXISTS mention_counts_update",
]

_SQLITE = [
    *_SQLITE_DROP,
    """
    CREATE TRIGGER mentions_fts_update AFTER UPDATE OF title, text ON mentions
    WHEN old.title IS NOT new.title OR old.text IS NOT new.text BEGIN
        INSERT INTO mentions_fts (mentions_fts, rowid, title, text) VALUES ('delete', old.seq, old.title, old.text);
        INSERT INTO mentions_fts (rowid, title, text) VALUES (new.seq, new.title, new.text);
    END
    """,
    "CREATE TRIGGER mention_tops_insert AFTER INSERT ON mentions WHEN new.watches <> '[]' "
    f"BEGIN {_tops._lite_change('new', '+')} END",
    "CREATE TRIGGER mention_tops_delete AFTER DELETE ON mentions WHEN old.watches <> '[]' "
    f"BEGIN {_tops._lite_change('old', '-')} {_tops._lite_prune('old')} END",
    f"CREATE TRIGGER mention_tops_update AFTER UPDATE OF {', '.join(_TOPS_COLUMNS)} ON mentions "
    f"WHEN {_differ(_TOPS_COLUMNS)} BEGIN "
    f"{_tops._lite_change('old', '-')} {_tops._lite_prune('old')} {_tops._lite_change('new', '+')} END",
    "CREATE TRIGGER mention_counts_update AFTER UPDATE OF watch, ts, sentiment ON mention_watches "
    f"WHEN {_differ(('watch', 'ts', 'sentiment'))} BEGIN "
    f"{_counts._sqlite_add('old', '-')} {_counts._sqlite_add('new', '+')} END",
]

# 0007's statements, as they were: what the downgrade puts back
_SQLITE_BEFORE = [
    *_SQLITE_DROP,
    """
    CREATE TRIGGER mentions_fts_update AFTER UPDATE OF title, text ON mentions BEGIN
        INSERT INTO mentions_fts (mentions_fts, rowid, title, text) VALUES ('delete', old.seq, old.title, old.text);
        INSERT INTO mentions_fts (rowid, title, text) VALUES (new.seq, new.title, new.text);
    END
    """,
    *(s for s in _tops._SQLITE if s.startswith("CREATE TRIGGER")),
    *(s for s in _counts._SQLITE if s.startswith("CREATE TRIGGER mention_counts_update")),
]

_PG_ADD = f"""
    CREATE OR REPLACE FUNCTION mention_tops_add() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO mention_tops AS t (watch, day, dimension, key, n)
        SELECT watch, day, dimension, key, n FROM ({_tops._PG_ROWS.format(table="new_rows", sign="")}) AS c
        ORDER BY 1, 2, 3, 4
        ON CONFLICT (watch, day, dimension, key) DO UPDATE SET n = t.n + excluded.n;
        RETURN NULL;
    END
    $$
"""

_PG_ADD_BEFORE = _tops._pg_function("mention_tops_add", _tops._PG_ROWS.format(table="new_rows", sign="")).replace(
    "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_ADD)
        return
    for statement in _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_ADD_BEFORE)
        return
    for statement in _SQLITE_BEFORE:
        op.execute(statement)
