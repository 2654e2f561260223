"""The small HTTP server every service runs: ``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from nats.js.api import DiscardPolicy
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from veille.metrics import ServiceMetrics

__all__ = ["Health", "HealthServer", "JetStreamCheck"]

Check = Callable[[], str | None]


@dataclass
class Health:
    """Readiness checks: each returns None when fine, or a sentence saying what is wrong."""

    checks: dict[str, Check] = field(default_factory=dict)
    refreshers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add(self, name: str, check: Check) -> None:
        """Register a readiness check under ``name``."""
        self.checks[name] = check

    async def refresh(self) -> None:
        """Let checks that ask a server (cached by them) update before they are read."""
        for refresher in self.refreshers:
            with contextlib.suppress(Exception):  # a refresher records its own failure; a probe never raises
                await refresher()

    def problems(self) -> dict[str, str]:
        """Return the failing checks and why."""
        out: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                reason = check()
            except Exception as exc:
                reason = f"check raised {type(exc).__name__}: {exc}"
            if reason:
                out[name] = reason
        return out


class HealthServer:
    """aiohttp server exposing metrics and probes on one port."""

    def __init__(self, service: str, metrics: ServiceMetrics, health: Health) -> None:
        self.service = service
        self.metrics = metrics
        self.health = health
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Start listening; return the bound port (useful when ``port`` is 0)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.health.refresh()
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.service})

    async def _readyz(self, request: web.Request) -> web.Response:
        await self.health.refresh()
        problems = self.health.problems()
        self.metrics.ready.labels(self.service).set(0 if problems else 1)
        if problems:
            return web.json_response({"status": "not ready", "service": self.service, "problems": problems}, status=503)
        return web.json_response({"status": "ready", "service": self.service})


FULL_MARGIN = 1024 * 1024
"""A stream (or the account) within this many bytes of its budget (or 1% of it) counts as full."""


def _full(used: int, limit: int) -> bool:
    return limit > 0 and used >= limit - min(FULL_MARGIN, limit // 100)


class JetStreamCheck:
    """Readiness of JetStream for writes: reachable, enabled, and no stream or account at its size budget.

    One account-info request and one stream-info request per stream, at most every ``ttl`` seconds, whatever
    the probe rate. ``connection`` returns the service's NATS client (None before it connects);
    ``streams`` names the streams whose fullness matters. The result is also the gauge
    ``veille_jetstream_available`` (1 or 0).
    """

    def __init__(
        self,
        service: str,
        connection: Callable[[], Any],
        streams: Iterable[str],
        registry: Any,
        *,
        ttl: float = 3.0,
        timeout: float = 2.0,
    ) -> None:
        self.connection = connection
        self.streams = frozenset(streams)
        self.ttl = ttl
        self.timeout = timeout
        self.problem: str | None = None
        self._checked = float("-inf")
        self._lock = asyncio.Lock()
        self.gauge = Gauge(
            "veille_jetstream_available",
            "1 when JetStream takes writes (reachable, enabled, no stream at its size budget), 0 otherwise.",
            ["service"],
            registry=registry,
        ).labels(service)
        self.gauge.set(1)

    def __call__(self) -> str | None:
        """The last result: None, or why JetStream refuses writes."""
        return self.problem

    async def refresh(self) -> None:
        """Ask the server again when the last answer is older than ``ttl`` seconds."""
        async with self._lock:
            if time.monotonic() - self._checked < self.ttl:
                return
            self.problem = await self._ask()
            self._checked = time.monotonic()
            self.gauge.set(0 if self.problem else 1)

    async def _ask(self) -> str | None:
        nc = self.connection()
        if nc is None or not getattr(nc, "is_connected", False):
            return None  # the "nats" check says so; nothing to ask
        js = nc.jetstream(timeout=self.timeout)
        try:
            account = await js.account_info()
        except Exception as exc:
            return f"JetStream unavailable (writes refused): {type(exc).__name__}: {exc}"
        if _full(account.storage, account.limits.max_storage):
            return f"JetStream account storage full ({account.storage} of {account.limits.max_storage} bytes)"
        full = []
        for name in sorted(self.streams):  # one STREAM.INFO each: the services' NATS users may not list streams
            try:
                info = await js.stream_info(name)
            except Exception as exc:
                return f"JetStream unavailable (stream {name}): {type(exc).__name__}: {exc}"
            limit, used = info.config.max_bytes or -1, info.state.bytes
            if info.config.discard == DiscardPolicy.NEW and _full(used, limit):  # OLD ones make room
                full.append(f"{name} ({used} of {limit} bytes)")
        if full:
            return "JetStream stream full, new messages are refused: " + ", ".join(sorted(full))
        return None
