"""The console's tables (issue 16): its users, what responders did about alerts, sentiment corrections.

- ``console_users``: local accounts (``veille users add``), argon2 password hashes, a role
  (viewer, responder, admin).
- ``alert_actions``: one row per action on an alert (acknowledge, assign, comment, resolve, silence):
  who, when, what; an alert's history is its rows in time order. ``silence_id`` is the silence an
  acknowledgement put in the notifier's silences bucket (expired again when the alert is resolved).
- ``corrections``: a responder saying a mention's sentiment is wrong, with the right label and the
  mention's text as it was, so ``veille corrections export`` needs nothing else.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "alert_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.Text, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("silence_id", sa.Text),
    )
    op.create_index("alert_actions_alert_idx", "alert_actions", ["alert_id", "at"])
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mention_id", sa.Text, nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("predicted", sa.Text, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("lang", sa.Text),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_index("corrections_mention_idx", "corrections", ["mention_id", "at"])


def downgrade() -> None:
    op.drop_table("corrections")
    op.drop_table("alert_actions")
    op.drop_table("console_users")
