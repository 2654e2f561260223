"""``veille secret new``: a fresh webhook signing secret (Standard Webhooks ``whsec_`` + base64)."""

from __future__ import annotations

import click

__all__ = ["secret"]


@click.group()
def secret() -> None:
    """Make secrets for the configuration."""


@secret.command("new")
def new() -> None:
    """Print a fresh webhook signing secret: whsec_ followed by base64 of 32 random bytes.

    Put it in a webhook receiver's `secret:` (better: in an environment variable the file names as
    `secret: ${WEBHOOK_SECRET}`, or in the file named by `secret_file:`), and give the same value to
    whoever verifies the signatures.
    """
    from veille.config import new_webhook_secret

    click.echo(new_webhook_secret())
