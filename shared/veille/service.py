"""Running a service: health server, signals, graceful drain; the same for every service.

A service's composition root builds a :class:`ServiceApp`; ``veille run NAME`` (and each
container, and ``python -m services.NAME``) calls :func:`run_app_module`, which loads the settings and
the configuration, builds the app and calls :func:`run_service`, which starts it, serves ``/metrics``, ``/healthz`` and
``/readyz``, and on SIGTERM or SIGINT stops it cleanly (subscribers drained, in-flight work acked).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import signal
import sys
from pathlib import Path
from typing import Protocol

import structlog

from veille import bus
from veille.health import Health, HealthServer, JetStreamCheck
from veille.metrics import ServiceMetrics
from veille.settings import ServiceSettings
from veille.tasks import cancel_and_wait

__all__ = ["ServiceApp", "add_jetstream_check", "run_app_module", "run_service", "serve", "settle_collector"]

log = structlog.get_logger("veille.service")

YOUNG_COLLECTION = 50_000
"""Allocations between two young-generation collections once a busy service runs (Python's default: 700)."""


def settle_collector(young: int = YOUNG_COLLECTION) -> None:
    """Tune the cyclic garbage collector for a service process that has started (loaded what it keeps).

    What the process holds by now (modules, configuration, language models, lexicons) lives as long as it
    does: it is collected once and frozen out of the collector's way, so that a full collection walks only
    what the messages allocate (about 10 % less CPU per mention in the classifier). Each message then
    allocates a few hundred short-lived containers (decoded models, lists, dicts), nearly all freed by
    reference counting; at Python's default threshold the young generation was collected every couple of
    messages, and each collection's cost landed on whatever line allocated: about 6 % of the classifier's
    CPU, and 8-15 % of the notifier's in runs alternated with and without (``bench/classifier_bench.py``,
    ``bench/notifier_bench.py``; docs/benchmarks.md). Collecting every ``young`` allocations instead, at
    most that many objects caught in reference cycles wait for a collection (a few MB); the older
    generations keep their thresholds.

    Once per process, after the start (:func:`serve` with ``settle=True``): whatever is frozen is never
    collected, so an app started and stopped again in the same process would stay in memory.
    """
    gc.collect()
    gc.freeze()
    current, older, oldest = gc.get_threshold()
    gc.set_threshold(max(current, young), older, oldest)


class ServiceApp(Protocol):
    """What a composition root returns."""

    name: str
    metrics: ServiceMetrics
    health: Health

    async def start(self) -> None:
        """Connect and start consuming or polling."""

    async def stop(self) -> None:
        """Stop taking work, finish what is in flight, disconnect."""


def add_jetstream_check(app: ServiceApp) -> None:
    """Make ``/readyz`` say 503 while JetStream refuses writes, when ``app`` has a NATS broker."""
    broker = getattr(app, "broker", None)
    if broker is None or "jetstream" in app.health.checks:
        return

    def connection() -> object:
        try:
            return broker.connection
        except Exception:  # not connected yet
            return None

    check = JetStreamCheck(app.name, connection, (s.name for s in bus.STREAMS), app.metrics.registry)
    app.health.add("jetstream", check)
    app.health.refreshers.append(check.refresh)


async def _start_unless_stopped(app: ServiceApp, stop: asyncio.Event) -> bool:
    """``app.start()``, abandoned (cancelled) if ``stop`` is set first: a service still waiting for a
    NATS that is down stops on SIGTERM or Ctrl-C instead of ignoring it. True when it started."""
    starting = asyncio.ensure_future(app.start())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if starting.done():
        starting.result()  # a start that failed raises here
        return True
    await cancel_and_wait([starting])  # a start that completed as it was cancelled is stopped by serve all the same
    return False


async def serve(app: ServiceApp, settings: ServiceSettings, stop: asyncio.Event, *, settle: bool = False) -> None:
    """Run ``app`` with its health server until ``stop`` is set.

    ``/healthz`` answers as soon as the server listens; ``/readyz`` says 503 ("starting") until
    ``app.start()`` has returned: broker connected, topology declared, subscribers started; and 503
    ("stopping") again from the moment a stop is asked, while in-flight work drains.

    ``settle``: once started, :func:`settle_collector` (what the process is for: :func:`run_service`, one
    service per process). Not for a process that starts and stops apps in turn (tests): the app frozen
    with the heap would never be collected once stopped.
    """
    add_jetstream_check(app)
    phase = "starting"

    def lifecycle() -> str | None:
        if phase == "starting":
            return "still starting (connecting to NATS, declaring streams, starting subscribers)"
        if phase == "stopping":
            return "stopping (finishing the work in flight)"
        return None

    app.health.add("lifecycle", lifecycle)
    server = HealthServer(app.name, app.metrics, app.health)
    port = await server.start(settings.http_host, settings.http_port)
    log.info(
        f"{app.name}.http_started",
        metrics_url=f"http://{settings.http_host}:{port}/metrics",
    )
    try:
        if await _start_unless_stopped(app, stop):
            if settle:
                settle_collector()
            log.info(f"{app.name}.started", nats=settings.nats_url)
            phase = "ready"
            await stop.wait()
        else:
            log.info(f"{app.name}.start_abandoned", reason="asked to stop before it had started (NATS unreachable?)")
    finally:
        phase = "stopping"
        log.info(f"{app.name}.stopping")
        try:
            await asyncio.wait_for(app.stop(), timeout=30)
        finally:
            await server.stop()
        log.info(f"{app.name}.stopped")


def run_service(app: ServiceApp, settings: ServiceSettings) -> None:
    """Run ``app`` in a fresh event loop until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(app, settings, stop, settle=True)

    asyncio.run(main())


def run_app_module(name: str, module: str, config_path: Path | None = None) -> int:
    """Run the service whose composition root is ``module`` (it has ``create_app(settings, config=)``).

    Settings come from ``VEILLE_*`` variables, the configuration from ``config_path`` (default:
    ``$VEILLE_CONFIG``). A mistake in either, or a NATS that refuses the connection at start, is one
    clear line on stderr and a non-zero return (2: fix the settings; 1: NATS), never a traceback.
    """
    from veille.config import ConfigError, load_config
    from veille.logging import configure_logging
    from veille.settings import SettingsError, load_settings

    overrides = {"config": config_path} if config_path else {}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        print(f"veille {name}: {exc}", file=sys.stderr)
        return 2
    configure_logging(name, level=settings.log_level, fmt=settings.log_format)
    try:
        config = load_config(settings.config)
    except ConfigError as exc:
        print(f"veille {name}: the configuration has mistakes:\n{exc}", file=sys.stderr)
        return 2
    try:
        app = importlib.import_module(module).create_app(settings, config=config)
    except SettingsError as exc:  # a setting only the service reads (its database URL, say)
        print(f"veille {name}: {exc}", file=sys.stderr)
        return 2
    from nats.errors import Error as NatsError

    from veille.natsauth import describe_connect_error

    try:
        run_service(app, settings)
    except NatsError as exc:  # refused at start (bad credentials, no server): a clear line, no traceback
        print(f"veille {name}: {describe_connect_error(settings, exc)}", file=sys.stderr)
        return 1
    return 0
