"""Pre-aggregated top lists: ``mention_tops`` (watch, UTC day, dimension, key) -> mentions, kept by triggers.

The watch overview's top stories, sources and sites over 30 days read at most a few thousand rows of
this table (one per key and day) instead of joining every ``mention_watches`` row of the range to its
mention (69,000 for the biggest watch of a 1-million-mention archive: about 0.3 s each, three times
per page). ``day`` is ``floor(seconds since the epoch / 86400)`` of the mention's ``ts``; ``dimension``
is ``stories`` (``story_id``), ``sources`` (``source``) or ``sites`` (``site``); a NULL key is not counted.

The triggers are on ``mentions`` (whose ``watches`` column lists the watches its ``mention_watches``
rows hold, written from the same list by the archive's store): each row carries its watches and its
keys, so an insert adds 1 per (watch, dimension), a delete removes 1, and an update (another
classification: other story, other watches) removes the old row's and adds the new one's, whatever
order the store writes the two tables in. SQLite: row triggers; a count that falls to 0 is deleted
(SQLite's retention deletes rows, so old days go). PostgreSQL: statement triggers with transition
tables on the partitioned table, one grouped upsert per statement (keys in a fixed order, so
concurrent writers lock them in the same order); dropping a month's partition (retention) fires
nothing, so the store deletes that month's days from this table too and the aggregations read the
counts only from the watch's oldest remaining row's day on (``services/archive/tops.py``).

The upgrade fills the table from the existing rows (one ``GROUP BY``: about 20 s for 1 million
mentions on SQLite).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

# ruff: noqa: S608 - the SQL here is built from constants only
from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_LITE_DAY = "CAST(strftime('%s', {row}.ts) AS INTEGER) / 86400"


def _lite_keys(row: str) -> str:
    return (
        f"(SELECT 'stories' AS dimension, {row}.story_id AS key UNION ALL SELECT 'sources', {row}.source "
        f"UNION ALL SELECT 'sites', {row}.site)"
    )


def _lite_change(row: str, sign: str) -> str:
    """One upsert: +1 or -1 per (watch, dimension) of ``row`` (``new`` or ``old``)."""
    return (
        f"INSERT INTO mention_tops (watch, day, dimension, key, n) "
        f"SELECT w.value, {_LITE_DAY.format(row=row)}, d.dimension, d.key, {sign}1 "
        f"FROM (SELECT DISTINCT value FROM json_each({row}.watches)) AS w, {_lite_keys(row)} AS d "
        f"WHERE d.key IS NOT NULL "
        f"ON CONFLICT (watch, day, dimension, key) DO UPDATE SET n = n {sign} 1;"
    )


def _lite_prune(row: str) -> str:
    """Delete the counts ``row``'s removal brought to 0 (so retention leaves no rows behind)."""
    return (
        f"DELETE FROM mention_tops WHERE n = 0 AND day = {_LITE_DAY.format(row=row)} "
        f"AND watch IN (SELECT value FROM json_each({row}.watches)) "
        f"AND ((dimension = 'stories' AND key = {row}.story_id) OR (dimension = 'sources' AND key = {row}.source) "
        f"OR (dimension = 'sites' AND key = {row}.site));"
    )


_SQLITE = [
    """
    CREATE TABLE mention_tops (
        watch TEXT NOT NULL,
        day INTEGER NOT NULL,
        dimension TEXT NOT NULL,
        key TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (watch, dimension, day, key)
    ) WITHOUT ROWID
    """,
    f"CREATE TRIGGER mention_tops_insert AFTER INSERT ON mentions BEGIN {_lite_change('new', '+')} END",
    f"CREATE TRIGGER mention_tops_delete AFTER DELETE ON mentions BEGIN {_lite_change('old', '-')} "
    f"{_lite_prune('old')} END",
    "CREATE TRIGGER mention_tops_update AFTER UPDATE OF watches, ts, story_id, source, site ON mentions BEGIN "
    f"{_lite_change('old', '-')} {_lite_prune('old')} {_lite_change('new', '+')} END",
    # the rows already archived (one GROUP BY per dimension; the store writes no watch twice in a row's list)
    "INSERT INTO mention_tops (watch, day, dimension, key, n) "
    + " UNION ALL ".join(
        f"SELECT w.value, {_LITE_DAY.format(row='m')}, '{dimension}', m.{column}, count(*) "
        f"FROM mentions AS m, json_each(m.watches) AS w WHERE m.{column} IS NOT NULL GROUP BY 1, 2, 4"
        for dimension, column in (("stories", "story_id"), ("sources", "source"), ("sites", "site"))
    ),
]

_PG_ROWS = """
    SELECT w.watch, CAST(floor(extract(epoch FROM r.ts) / 86400) AS integer) AS day, d.dimension, d.key,
           {sign}count(*) AS n
    FROM {table} AS r
    CROSS JOIN LATERAL (SELECT DISTINCT jsonb_array_elements_text(r.watches)) AS w(watch)
    CROSS JOIN LATERAL (VALUES ('stories', r.story_id), ('sources', r.source), ('sites', r.site)) AS d(dimension, key)
    WHERE d.key IS NOT NULL
    GROUP BY 1, 2, 3, 4
"""

_PG_APPLY = """
    INSERT INTO mention_tops AS t (watch, day, dimension, key, n)
    SELECT watch, day, dimension, key, sum(n) FROM ({rows}) AS c
    GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4
    ON CONFLICT (watch, day, dimension, key) DO UPDATE SET n = t.n + excluded.n;
    DELETE FROM mention_tops AS t USING ({rows}) AS c
    WHERE t.n = 0 AND t.watch = c.watch AND t.day = c.day AND t.dimension = c.dimension AND t.key = c.key;
"""


def _pg_function(name: str, rows: str) -> str:
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        {_PG_APPLY.format(rows=rows)}
        RETURN NULL;
    END
    $$
    """


_POSTGRES = [
    """
    CREATE TABLE mention_tops (
        watch text NOT NULL,
        day integer NOT NULL,
        dimension text NOT NULL,
        key text NOT NULL,
        n integer NOT NULL,
        PRIMARY KEY (watch, dimension, day, key)
    )
    """,
    _pg_function("mention_tops_add", _PG_ROWS.format(table="new_rows", sign="")),
    _pg_function("mention_tops_remove", _PG_ROWS.format(table="old_rows", sign="-")),
    _pg_function(
        "mention_tops_change",
        _PG_ROWS.format(table="old_rows", sign="-") + " UNION ALL " + _PG_ROWS.format(table="new_rows", sign=""),
    ),
    "CREATE TRIGGER mention_tops_insert AFTER INSERT ON mentions REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mention_tops_add()",
    "CREATE TRIGGER mention_tops_delete AFTER DELETE ON mentions REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION mention_tops_remove()",
    # an update (an upsert's DO UPDATE: another classification) moves its counts from the old keys to the new
    "CREATE TRIGGER mention_tops_update AFTER UPDATE ON mentions REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mention_tops_change()",
    "INSERT INTO mention_tops (watch, day, dimension, key, n) " + _PG_ROWS.format(table="mentions", sign=""),
]


def upgrade() -> None:
    statements = _POSTGRES if op.get_bind().dialect.name == "postgresql" else _SQLITE
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    for trigger in ("insert", "delete", "update"):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS mention_tops_{trigger} ON mentions")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS mention_tops_{trigger}")
    if op.get_bind().dialect.name == "postgresql":
        for name in ("add", "remove", "change"):
            op.execute(f"DROP FUNCTION IF EXISTS mention_tops_{name}()")
    op.execute("DROP TABLE IF EXISTS mention_tops")
