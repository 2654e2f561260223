"""The ``veille`` command-line program: one entry point for every operation."""

from __future__ import annotations

import importlib

import click

from veille import __version__

__all__ = ["main"]


# Commands that live with the service they belong to, loaded only when called (the archive's pull in
# SQLAlchemy, test-send the notifier's integrations): name -> ("module:attribute", short help).
LAZY: dict[str, tuple[str, str]] = {
    "test-send": ("services.notifier.test_send:test_send", "Send one sample notification through a receiver."),
    "db": ("services.archive.cli:db", "The archive's database schema: upgrade, current."),
    "mentions": ("services.archive.cli:mentions", "Search the archived mentions."),
    "alerts": ("services.archive.cli:alerts", "List the archived alerts."),
    "corrections": ("services.console.cli:corrections", "Export the sentiment corrections made in the console."),
    "users": ("services.console.cli:users", "Manage the console's accounts."),
}


class _Veille(click.Group):
    """The ``veille`` group: its own commands plus :data:`LAZY`, imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY:
            return command
        module_name, _, attribute = LAZY[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY and name not in self.commands:
                rows.append((name, LAZY[name][1]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_Veille, context_settings={"help_option_names": ["-h", "--help"]})
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
