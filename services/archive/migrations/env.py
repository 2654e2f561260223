"""Alembic environment: migrate the connection ``services.archive.db.migrate`` hands over.

The archive runs its migrations itself at start (under a lock, see ``db.migrate``), on its own
async engine: the connection arrives in ``config.attributes["connection"]``; there is no
``alembic.ini`` and no offline (SQL script) mode.
"""

from __future__ import annotations

from alembic import context

from services.archive.schema import VERSION_TABLE

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only db.migrate runs these migrations
    raise RuntimeError("the archive's migrations run through services.archive.db.migrate (veille db upgrade)")

context.configure(connection=connection, version_table=VERSION_TABLE, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
