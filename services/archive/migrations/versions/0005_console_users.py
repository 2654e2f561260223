"""The console's user management (issue 16, "who may do what"): account source, state, last login, and
who changed which account.

- ``console_users`` gains ``source`` (``local``: ``veille users add``, a password; ``sso``: made by a
  trusted reverse proxy's header, no password), ``email``, ``disabled`` (a disabled account's sessions
  stop at their next request) and ``last_login``.
- ``user_actions``: one row per change to an account (add, role, disable, enable, password), who did
  it (a console admin or ``cli:<system user>``) and when: the Users page's history.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("console_users", sa.Column("source", sa.Text, nullable=False, server_default="local"))
    op.add_column("console_users", sa.Column("email", sa.Text))
    op.add_column("console_users", sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("console_users", sa.Column("last_login", _TIME))
    op.create_table(
        "user_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("user_actions_at_idx", "user_actions", ["at"])


def downgrade() -> None:
    op.drop_table("user_actions")
    with op.batch_alter_table("console_users") as batch:
        for column in ("last_login", "disabled", "email", "source"):
            batch.drop_column(column)
