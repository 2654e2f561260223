"""The small HTTP server every service runs: ``/metrics``, ``/healthz`` and ``/readyz``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from veille.metrics import ServiceMetrics

__all__ = ["Health", "HealthServer"]

Check = Callable[[], str | None]


@dataclass
class Health:
    """Readiness checks: each returns None when fine, or a sentence saying what is wrong."""

    checks: dict[str, Check] = field(default_factory=dict)

    def add(self, name: str, check: Check) -> None:
        """Register a readiness check under ``name``."""
        self.checks[name] = check

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
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": self.service})

    async def _readyz(self, request: web.Request) -> web.Response:
        problems = self.health.problems()
        self.metrics.ready.labels(self.service).set(0 if problems else 1)
        if problems:
            return web.json_response({"status": "not ready", "service": self.service, "problems": problems}, status=503)
        return web.json_response({"status": "ready", "service": self.service})
