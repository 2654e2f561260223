"""Pre-aggregated volume: ``mention_counts`` (watch, 5-minute bucket, sentiment) -> mentions, kept by triggers.

A watch's volume over 90 days (and the detector's 5-minute counts its baseline replays) read at most
26,000 x 3 rows of this table instead of every ``mention_watches`` row of the range (1.5 million for
a big watch of a 10-million-mention archive). ``bucket`` is the bucket's start in seconds since the
epoch divided by 300 (``floor(epoch / 300)``, the spike detector's default bucket, as
:class:`services.archive.aggregate.epoch_bucket` computes it).

Triggers on ``mention_watches`` keep it equal to that table's rows, whatever writes them: SQLite row
triggers (insert, delete, update: +1 / -1); PostgreSQL statement triggers with transition tables on
the partitioned table (one grouped upsert per statement, keys in a fixed order so concurrent
writers lock them in the same order). Dropping a month's partition (retention) does not fire them:
the aggregations read the counts only from the watch's oldest remaining row on (see
``aggregate.volume``). Zero counts are kept (a bucket that had mentions), which changes no sum.

The upgrade fills the table from the existing rows (one ``GROUP BY`` over ``mention_watches``: about
a minute for 10 million rows on a small server).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

# ruff: noqa: S608 - the SQL here is built from constants only
from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_SQLITE_BUCKET = "CAST(strftime('%s', {ts}) AS INTEGER) / 300"
_PG_BUCKET = "CAST(floor(extract(epoch FROM {ts}) / 300) AS bigint)"


def _sqlite_add(row: str, sign: str) -> str:
    bucket = _SQLITE_BUCKET.format(ts=f"{row}.ts")
    return (
        f"INSERT INTO mention_counts (watch, bucket, sentiment, n) VALUES ({row}.watch, {bucket}, {row}.sentiment, "
        f"{sign}1) ON CONFLICT (watch, bucket, sentiment) DO UPDATE SET n = n {sign} 1;"
    )


_SQLITE = [
    """
    CREATE TABLE mention_counts (
        watch TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        sentiment TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (watch, bucket, sentiment)
    ) WITHOUT ROWID
    """,
    f"CREATE TRIGGER mention_counts_insert AFTER INSERT ON mention_watches BEGIN {_sqlite_add('new', '+')} END",
    f"CREATE TRIGGER mention_counts_delete AFTER DELETE ON mention_watches BEGIN {_sqlite_add('old', '-')} END",
    "CREATE TRIGGER mention_counts_update AFTER UPDATE OF watch, ts, sentiment ON mention_watches BEGIN "
    f"{_sqlite_add('old', '-')} {_sqlite_add('new', '+')} END",
    "INSERT INTO mention_counts (watch, bucket, sentiment, n) SELECT watch, "
    + _SQLITE_BUCKET.format(ts="ts")
    + " AS b, sentiment, count(*) FROM mention_watches GROUP BY watch, b, sentiment",
]


def _pg_function(name: str, table: str, sign: str) -> str:
    bucket = _PG_BUCKET.format(ts="ts")
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO mention_counts AS c (watch, bucket, sentiment, n)
        SELECT watch, {bucket}, sentiment, {sign}count(*) FROM {table} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (watch, bucket, sentiment) DO UPDATE SET n = c.n + excluded.n;
        RETURN NULL;
    END
    $$
    """


_POSTGRES = [
    """
    CREATE TABLE mention_counts (
        watch text NOT NULL,
        bucket bigint NOT NULL,
        sentiment text NOT NULL,
        n integer NOT NULL,
        PRIMARY KEY (watch, bucket, sentiment)
    )
    """,
    _pg_function("mention_counts_add", "new_rows", ""),
    _pg_function("mention_counts_remove", "old_rows", "-"),
    "CREATE TRIGGER mention_counts_insert AFTER INSERT ON mention_watches REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mention_counts_add()",
    "CREATE TRIGGER mention_counts_delete AFTER DELETE ON mention_watches REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mention_counts_remove()",
    # an update (an upsert's DO UPDATE among them) removes the old rows' counts and adds the new ones'
    "CREATE TRIGGER mention_counts_update_old AFTER UPDATE ON mention_watches REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mention_counts_remove()",
    "CREATE TRIGGER mention_counts_update_new AFTER UPDATE ON mention_watches REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mention_counts_add()",
    "INSERT INTO mention_counts (watch, bucket, sentiment, n) SELECT watch, "
    + _PG_BUCKET.format(ts="ts")
    + " AS b, sentiment, count(*) FROM mention_watches GROUP BY watch, b, sentiment",
]


def upgrade() -> None:
    statements = _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for trigger in ("insert", "delete", "update_old", "update_new"):
            op.execute(f"DROP TRIGGER IF EXISTS mention_counts_{trigger} ON mention_watches")
        op.execute("DROP FUNCTION IF EXISTS mention_counts_add()")
        op.execute("DROP FUNCTION IF EXISTS mention_counts_remove()")
    else:
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS mention_counts_{trigger}")
    op.execute("DROP TABLE IF EXISTS mention_counts")
