"""``veille up``: the whole stack on this machine, no Docker."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from veille.config import VeilleConfig

__all__ = ["Stack", "run_stack", "up"]

Prepare = Callable[["JetStreamContext"], Awaitable[None]]


@dataclass(frozen=True)
class Stack:
    """Where a local stack (``veille up``, ``veille demo``) reads its watches and what it listens on.

    The ports are the ones asked for (:func:`stack_options`); a taken one is swapped for a free one,
    and said, when the stack starts. ``nats_url`` set: use that server, start none.
    """

    config_path: Path
    data_dir: Path
    nats_port: int
    nats_url: str | None
    smtp_port: int
    webhook_port: int
    metrics_port: int


def _port_or_free(port: int) -> int:
    from veille.natsserver import _port_open, free_port

    return free_port() if _port_open("127.0.0.1", port) else port


def _choose_port(port: int, what: str, flag: str, command: str = "up") -> int:
    """``port`` if nothing listens on it, else a free one, said on stderr."""
    chosen = _port_or_free(port)
    if chosen != port:
        click.echo(f"veille {command}: port {port} ({flag}) is in use; {what} listens on {chosen} instead", err=True)
    return chosen


def _webhook_secret(data_dir: Path) -> str:
    """The signing secret of the local webhook sink: from the environment, else made once and kept."""
    from veille.config import new_webhook_secret
    from veille.settings import read_secret_file

    if os.environ.get("VEILLE_WEBHOOK_SECRET"):
        return os.environ["VEILLE_WEBHOOK_SECRET"]
    path = data_dir / "webhook-secret"
    if path.exists():
        return read_secret_file(path)
    secret = new_webhook_secret()
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def _enabled_services(config: VeilleConfig) -> list[str]:
    import importlib

    from services import SERVICES

    names = []
    for name, module_name in sorted(SERVICES.items()):
        module = importlib.import_module(module_name)
        enabled = getattr(module, "enabled", None)
        if enabled is None or enabled(config):
            names.append(name)
    return names


def stack_options(data_dir: Path, data_dir_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The flags ``veille up`` and ``veille demo`` share: data directory, ports, ``--nats-url``, ``--quiet``."""

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        options = [
            click.option(
                "--data-dir",
                type=click.Path(path_type=Path, file_okay=False),
                default=data_dir,
                show_default=True,
                help=data_dir_help,
            ),
            click.option("--nats-port", type=int, default=4222, show_default=True, help="NATS client port (loopback)."),
            click.option(
                "--nats-url",
                default=None,
                help="Use this NATS server (with JetStream) instead of starting one; credentials from "
                "VEILLE_NATS_USER and VEILLE_NATS_PASSWORD (or VEILLE_NATS_TOKEN).",
            ),
            click.option(
                "--smtp-port", type=int, default=2525, show_default=True, help="Port of the local mail catcher."
            ),
            click.option(
                "--webhook-port", type=int, default=8099, show_default=True, help="Port of the local webhook sink."
            ),
            click.option(
                "--metrics-port", type=int, default=9100, show_default=True, help="First of the metrics ports."
            ),
            click.option(
                "--quiet", is_flag=True, help="Do not echo the services' logs (they still go to DATA_DIR/logs)."
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return apply


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("veille.yaml"),
    show_default=True,
    help="YAML configuration of watches, sources, receivers and routes.",
)
@stack_options(Path("var"), "Where the NATS store, mail, webhooks and logs go.")
def up(
    config_path: Path,
    data_dir: Path,
    nats_port: int,
    nats_url: str | None,
    smtp_port: int,
    webhook_port: int,
    metrics_port: int,
    quiet: bool,
) -> None:
    """Run veille on this machine: nats-server, every service, a mail catcher and a webhook sink.

    Everything listens on 127.0.0.1 only. Ctrl-C or SIGTERM stops it all cleanly. A service that
    dies is restarted with backoff (counted in veille_up_service_deaths_total).

    With VEILLE_NATS_USER and VEILLE_NATS_PASSWORD (or VEILLE_NATS_TOKEN) set, the embedded
    nats-server requires them and every service uses them; with --nats-url, veille up starts no
    nats-server and uses that one with those credentials.
    """
    run_stack(Stack(config_path, data_dir, nats_port, nats_url, smtp_port, webhook_port, metrics_port), quiet=quiet)


def run_stack(
    stack: Stack,
    *,
    quiet: bool,
    prepare: Prepare | None = None,
    command: str = "up",
) -> None:
    """What ``veille up`` (and ``veille demo``) run: ``stack`` until a signal.

    The mail catcher's and webhook sink's ports are taken if free, else free ones are picked and
    said; ``VEILLE_SMTP_PORT`` and ``VEILLE_WEBHOOK_PORT`` are set to the ports really used (the
    example configuration's webhook URL reads the latter). ``prepare`` runs on JetStream once the
    topology exists, before the services start.
    """
    import asyncio

    from veille.config import ConfigError, load_config
    from veille.logging import configure_logging, line_prefix

    # Echoing the services, the supervisor's own lines look like theirs: same format (the children
    # log for the console, see _up), same name column.
    configure_logging(
        command,
        fmt=os.environ.get("VEILLE_LOG_FORMAT", "auto" if quiet else "console"),
        prefix=None if quiet else line_prefix(command),
    )
    stack = replace(
        stack,
        data_dir=stack.data_dir.resolve(),
        smtp_port=_choose_port(stack.smtp_port, "the mail catcher", "--smtp-port", command),
        webhook_port=_choose_port(stack.webhook_port, "the webhook sink", "--webhook-port", command),
    )
    os.environ["VEILLE_SMTP_PORT"] = str(stack.smtp_port)
    os.environ["VEILLE_WEBHOOK_PORT"] = str(stack.webhook_port)
    os.environ["VEILLE_WEBHOOK_SECRET"] = _webhook_secret(stack.data_dir)
    try:  # after the above: the example config takes the sink's secret and ports from the environment
        config = load_config(stack.config_path)
    except ConfigError as exc:
        click.echo(f"veille {command}: {stack.config_path} has mistakes:\n{exc}", err=True)
        sys.exit(2)
    asyncio.run(_up(config, stack, echo=not quiet, prepare=prepare, command=command))


async def _up(
    config: VeilleConfig,
    stack: Stack,
    *,
    echo: bool,
    prepare: Prepare | None = None,
    command: str = "up",
) -> None:
    import asyncio

    from veille import bus
    from veille.embedded import ChildService, MailCatcher, Supervisor, WebhookSink
    from veille.health import Health, HealthServer
    from veille.metrics import ServiceMetrics
    from veille.natsserver import NatsServerProcess

    data_dir, nats_url, smtp_port, webhook_port = stack.data_dir, stack.nats_url, stack.smtp_port, stack.webhook_port
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    from veille.natsauth import NatsConnectError, connect
    from veille.settings import ServiceSettings, SettingsError, load_settings

    try:
        settings = load_settings(nats_url=nats_url) if nats_url else load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    server: NatsServerProcess | None = None
    monitor_port: int | None = None
    if nats_url is None:
        nats_port = _choose_port(stack.nats_port, "NATS", "--nats-port", command)
        monitor_port = _port_or_free(8222)
        server = NatsServerProcess(
            store_dir=data_dir / "nats",
            port=nats_port,
            monitor_port=monitor_port,
            server_name="veille-embedded",
            log_file=data_dir / "logs" / "nats-server.log",
            user=settings.nats_user,
            password=settings.nats_password.get_secret_value() if settings.nats_password else None,
            token=settings.nats_token.get_secret_value() if settings.nats_token else None,
        )
        server.start()
        settings = ServiceSettings(nats_url=server.url)
    mail = MailCatcher(data_dir / "mail", port=smtp_port)
    sink = WebhookSink(data_dir / "webhooks", port=webhook_port)
    supervisor: Supervisor | None = None
    health_server: HealthServer | None = None
    try:
        try:
            nc = await connect(settings, name="veille-up")
        except NatsConnectError as exc:
            click.echo(f"veille {command}: {exc}", err=True)
            sys.exit(1)
        await bus.ensure_topology(nc.jetstream(), replicas=settings.stream_replicas)
        if prepare is not None:
            await prepare(nc.jetstream())
        await nc.drain()
        for what, flag, port, start in (
            ("mail catcher", "--smtp-port", smtp_port, _sync_start(mail.start)),
            ("webhook sink", "--webhook-port", webhook_port, sink.start),
        ):
            try:
                await start()
            except OSError as exc:  # taken between the check and the bind
                click.echo(f"veille {command}: the {what} cannot listen on 127.0.0.1:{port} ({flag}): {exc}", err=True)
                sys.exit(1)
        children = []
        pages: dict[str, str] = {}
        for offset, name in enumerate(_enabled_services(config), start=1):
            port = _port_or_free(stack.metrics_port + offset)
            env = {
                "VEILLE_NATS_URL": settings.nats_url,  # credentials: the VEILLE_NATS_* variables inherited
                "VEILLE_CONFIG": str(stack.config_path.resolve()),
                "VEILLE_HTTP_HOST": "127.0.0.1",
                "VEILLE_HTTP_PORT": str(port),
                "VEILLE_DATA_DIR": str(data_dir),
                "VEILLE_LOG_FORMAT": os.environ.get("VEILLE_LOG_FORMAT", "console" if echo else "json"),
            }
            env.update(_web_ports(name, command, pages))
            children.append(ChildService(name, env, port))
        up_metrics = ServiceMetrics("up")
        supervisor = Supervisor(
            children, data_dir / "logs", registry=up_metrics.registry, echo=click.echo if echo else None
        )
        health_server = HealthServer("up", up_metrics, Health())
        own_port = await health_server.start("127.0.0.1", _port_or_free(stack.metrics_port))
        await supervisor.start()
        _print_summary(settings.nats_url, monitor_port, data_dir, smtp_port, webhook_port, own_port, children, pages)
        await stop.wait()
        click.echo(f"veille {command}: stopping…")
    finally:
        if supervisor is not None:
            await supervisor.stop()
        if health_server is not None:
            await health_server.stop()
        with contextlib.suppress(Exception):
            await sink.stop()
        with contextlib.suppress(Exception):
            mail.stop()
        if server is not None:
            server.stop()
        click.echo(f"veille {command}: stopped.")


# The services with a page for people: where each listens under veille up (on loopback; the default
# port, or its VEILLE_*_PORT, if free, else a free one, said), and the line the summary prints.
_WEB = {
    "console": ("VEILLE_CONSOLE_HOST", "VEILLE_CONSOLE_PORT", 8090, "console", "http://127.0.0.1:{port}/"),
    "archive": (
        "VEILLE_ARCHIVE_API_HOST",
        "VEILLE_ARCHIVE_API_PORT",
        8081,
        "archive API",
        "http://127.0.0.1:{port}/api/v1/mentions",
    ),
}


def _web_ports(name: str, command: str, pages: dict[str, str]) -> dict[str, str]:
    if name not in _WEB:
        return {}
    host_var, port_var, default, what, url = _WEB[name]
    wanted = int(os.environ.get(port_var) or default)
    port = _choose_port(wanted, f"the {what}", port_var, command)
    pages[what] = url.format(port=port)
    return {host_var: "127.0.0.1", port_var: str(port)}


def _sync_start(start: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        start()

    return run


def _print_summary(
    nats_url: str,
    monitor_port: int | None,
    data_dir: Path,
    smtp_port: int,
    webhook_port: int,
    own_port: int,
    children: Sequence[object],
    pages: dict[str, str] | None = None,
) -> None:
    lines = [
        "",
        "veille is up — everything listens on 127.0.0.1",
        f"  NATS              {nats_url}"
        + (f"   (monitoring http://127.0.0.1:{monitor_port}/jsz)" if monitor_port else "   (external)"),
        f"  JetStream store   {data_dir / 'nats' if monitor_port else 'on the external server'}",
        f"  mail catcher      smtp://127.0.0.1:{smtp_port} → {data_dir / 'mail'}/*.eml",
        f"  webhook sink      http://127.0.0.1:{webhook_port}/hooks/NAME → {data_dir / 'webhooks'}/NAME.jsonl",
        f"  supervisor        http://127.0.0.1:{own_port}/metrics",
    ]
    lines += [f"  {what:<17} {url}" for what, url in sorted((pages or {}).items())]
    for child in children:
        name = getattr(child, "name", "?")
        port = getattr(child, "http_port", 0)
        lines.append(f"  {name:<17} http://127.0.0.1:{port}/metrics  /healthz  /readyz")
    lines += [
        f"  logs              {data_dir / 'logs'}",
        "For veille dlq, silence, topology and backtest in another shell:",
        f"  export VEILLE_NATS_URL={nats_url}",
        "Press Ctrl-C to stop.",
        "",
    ]
    click.echo("\n".join(lines))
