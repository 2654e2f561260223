"""Per-batch writes on SQLite: the archive's store indexes and counts the mentions it inserts itself.

Measured on SQLite (10,000-20,000 mentions in batches of 500, 2 cores, load 1.7-3.5): the store wrote
1,920 mentions/s at 190 us of CPU each. Of that CPU, the full-text insert trigger (0001) took about 80
us a mention: a row trigger's insert into FTS5 is its own statement, and FTS5 writes its pending terms
out as a new segment at each one (then merges them), where one ``INSERT INTO mentions_fts ... SELECT``
of the batch's rows costs 15-20 us a mention. The ``mention_tops`` insert trigger (0007/0009) took
about 60 us (a ``json_each``, a three-way ``UNION`` and three single-row upserts per mention) and
``mention_counts``' (0006) 30 us. The store now feeds the full-text index with one statement per batch
and adds a batch's new mentions to both count tables itself, one upsert per distinct (watch, bucket,
sentiment) and (watch, day, dimension, key) of the batch, in its own transaction
(:mod:`services.archive.store`).

Every other writer keeps the triggers: the three skip a row only while ``archive_batch`` holds a row, and
the store inserts that row at the start of its insert and deletes it before its commit, inside its
``BEGIN IMMEDIATE`` transaction, so no other connection ever sees it (a reader sees committed data; a
writer waits for the lock) and a crash rolls it back with the rest. The delete and update triggers
(retention, reclassifications) are unchanged.

PostgreSQL: nothing changes (its triggers are per statement already: one grouped upsert per batch).

Nothing is rewritten: the upgrade replaces two triggers and adds an empty table, instantly.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_counts = importlib.import_module("services.archive.migrations.versions.0006_mention_counts")
_tops = importlib.import_module("services.archive.migrations.versions.0007_mention_tops")

_NOT_COUNTING = "NOT EXISTS (SELECT 1 FROM archive_batch)"
_FTS_ADD = "INSERT INTO mentions_fts (rowid, title, text) VALUES (new.seq, new.title, new.text);"

_SQLITE = [
    "CREATE TABLE archive_batch (writer INTEGER NOT NULL)",
    "DROP TRIGGER IF EXISTS mention_tops_insert",
    "DROP TRIGGER IF EXISTS mention_counts_insert",
    "DROP TRIGGER IF EXISTS mentions_fts_insert",
    f"CREATE TRIGGER mentions_fts_insert AFTER INSERT ON mentions WHEN {_NOT_COUNTING} BEGIN {_FTS_ADD} END",
    f"CREATE TRIGGER mention_tops_insert AFTER INSERT ON mentions WHEN new.watches <> '[]' AND {_NOT_COUNTING} "
    f"BEGIN {_tops._lite_change('new', '+')} END",
    f"CREATE TRIGGER mention_counts_insert AFTER INSERT ON mention_watches WHEN {_NOT_COUNTING} "
    f"BEGIN {_counts._sqlite_add('new', '+')} END",
]

# 0001's (full text), 0009's (tops) and 0006's (counts) insert triggers, as they were: what the downgrade puts back
_SQLITE_BEFORE = [
    "DROP TRIGGER IF EXISTS mention_tops_insert",
    "DROP TRIGGER IF EXISTS mention_counts_insert",
    "DROP TRIGGER IF EXISTS mentions_fts_insert",
    f"CREATE TRIGGER mentions_fts_insert AFTER INSERT ON mentions BEGIN {_FTS_ADD} END",
    "CREATE TRIGGER mention_tops_insert AFTER INSERT ON mentions WHEN new.watches <> '[]' "
    f"BEGIN {_tops._lite_change('new', '+')} END",
    f"CREATE TRIGGER mention_counts_insert AFTER INSERT ON mention_watches BEGIN {_counts._sqlite_add('new', '+')} END",
    "DROP TABLE IF EXISTS archive_batch",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    for statement in _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        return
    for statement in _SQLITE_BEFORE:
        op.execute(statement)
