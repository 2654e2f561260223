"""``veille run SERVICE`` and ``veille check-config FILE``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["check_config", "run"]


def _service_names() -> list[str]:
    from services import SERVICES

    return sorted(SERVICES)


@click.command()
@click.argument("service", type=click.Choice(_service_names()))
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML configuration (default: $VEILLE_CONFIG or veille.yaml).",
)
def run(service: str, config_path: Path | None) -> None:
    """Run one service in the foreground until SIGTERM or Ctrl-C.

    Settings come from VEILLE_* environment variables; the service serves /metrics, /healthz
    and /readyz on VEILLE_HTTP_HOST:VEILLE_HTTP_PORT.
    """
    from services import SERVICES
    from veille.service import run_app_module

    sys.exit(run_app_module(service, SERVICES[service], config_path))


@click.command("check-config")
@click.argument("file", type=click.Path(path_type=Path))
def check_config(file: Path) -> None:
    """Validate a configuration file; print every mistake with its file, line and field.

    Exits 0 when the file is valid, 1 when it has mistakes.
    """
    from veille.config import ConfigError, load_config

    try:
        config = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        click.echo(f"{len(exc.problems)} mistake(s) in {file}", err=True)
        sys.exit(1)
    routes = _count_routes(config.route)
    click.echo(
        f"{file}: OK — {len(config.watches)} watch(es), {len(config.sources.rss.feeds)} feed(s), "
        f"{len(config.receivers)} receiver(s), {routes} route(s)"
    )


def _count_routes(route: object) -> int:
    children = getattr(route, "routes", [])
    return 1 + sum(_count_routes(child) for child in children)
