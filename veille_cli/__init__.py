"""The ``veille`` command-line program: one entry point for every operation."""

from __future__ import annotations

import click

from veille import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="veille")
def main() -> None:
    """veille: watch what people say about an organisation and alert the right people.

    Start everything on this machine with `veille up`; run one service with
    `veille run SERVICE`; validate a configuration with `veille check-config FILE`.
    """


@main.command()
def version() -> None:
    """Print veille's version."""
    click.echo(__version__)


def _register() -> None:
    from veille_cli import commands

    for command in commands.ALL:
        main.add_command(command)


_register()
