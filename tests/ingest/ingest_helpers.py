"""Helpers for the ingestor tests: loopback HTTP servers serving recorded payloads, bus readers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.js.api import ConsumerConfig, DeliverPolicy

from veille import bus
from veille.config import VeilleConfig, parse_config
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested
from veille.settings import ServiceSettings

PAYLOADS = Path(__file__).parent / "payloads"
FIXED_NOW = datetime(2025, 6, 12, 12, 0, tzinfo=UTC)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def payload(name: str) -> bytes:
    """A recorded payload from ``tests/ingest/payloads``."""
    return (PAYLOADS / name).read_bytes()


@dataclass
class LoopbackServer:
    """An aiohttp server on 127.0.0.1 whose routes a test sets; it records every request."""

    routes: dict[str, Handler] = field(default_factory=dict)
    requests: list[web.Request] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def route(self, path: str, handler: Handler) -> None:
        """Serve ``path`` with ``handler`` (replacing any previous one)."""
        self.routes[path] = handler

    def requests_to(self, path: str) -> list[web.Request]:
        """The requests received for ``path``."""
        return [r for r in self.requests if r.path == path]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        handler = self.routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text="no such route")
        return await handler(request)

    async def start(self) -> None:
        """Listen on a free loopback port."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        """Stop listening."""
        if self.runner is not None:
            await self.runner.cleanup()


def settings_for(nats_url: str) -> ServiceSettings:
    """Service settings pointing at the test's nats-server."""
    return ServiceSettings(nats_url=nats_url, http_port=0)


def config_from(text: str) -> VeilleConfig:
    """A validated configuration from YAML text."""
    return parse_config(text, env={})


def metric(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    """The current value of a sample on the service's registry (0 when absent)."""
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def read_mentions(
    nats_url: str, subject: str = "veille.mentions.ingested.>"
) -> list[tuple[str, MentionIngested]]:
    """Every mention stored in the mentions stream, with its ``Nats-Msg-Id``, oldest first."""
    client: NatsClient = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        info = await js.stream_info(bus.MENTIONS.name)
        total = info.state.messages
        if total == 0:
            return []
        sub = await js.pull_subscribe(
            subject,
            durable=None,
            stream=bus.MENTIONS.name,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        out: list[tuple[str, MentionIngested]] = []
        while True:
            try:
                msgs = await sub.fetch(500, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            for msg in msgs:
                out.append(((msg.headers or {}).get("Nats-Msg-Id", ""), MentionIngested.model_validate_json(msg.data)))
                await msg.ack()
        await sub.unsubscribe()
        return out
    finally:
        await client.close()


async def wait_for(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true, failing the test after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not await predicate():  # noqa: ASYNC110 - polling a condition on another process
            await asyncio.sleep(0.05)


def dumps(value: Any) -> str:
    """Compact JSON."""
    return json.dumps(value, separators=(",", ":"))
