"""``veille nats-users``: the generated users block of ``deploy/nats/*.conf``."""

from __future__ import annotations

import click

__all__ = ["nats_users"]


@click.command("nats-users")
def nats_users() -> None:
    """Print the NATS users and permissions block for deploy/nats/*.conf.

    One user per registered service, each allowed only the subjects it needs (derived from
    veille.bus), and the admin user of the command line. Paste it between the BEGIN/END marks.
    """
    from services import SERVICES
    from veille.natsauth import authorization_block

    click.echo(authorization_block(SERVICES))
