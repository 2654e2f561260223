"""Notifier test parts: a controllable clock, alerts, configs, a scriptable webhook receiver, app factory.

The NATS server comes from the shared ``nats_server`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web

from services.notifier.app import NotifierApp, NotifierSettings, create_app
from veille import bus
from veille.config import VeilleConfig, parse_config
from veille.models import AlertRaised, SampleMention
from veille.natsserver import NatsServerProcess

SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "services/notifier/schema/notification-v1.schema.json").read_text()
)
"""The shipped JSON Schema of the veille webhook payload, which every payload a test receives must satisfy."""

FORMATS = jsonschema.FormatChecker()
"""A format checker that checks ``date-time`` (jsonschema only does with an optional extra package)."""
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 date-time: the form and a real date and time (``2026-02-30T25:00:00Z`` fails)."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.replace("z", "Z").replace("t", "T").replace("Z", "+00:00"))
    return True


def validate_payload(body: Any) -> None:
    """Raise unless ``body`` satisfies :data:`SCHEMA`, formats (date-time) included."""
    jsonschema.Draft202012Validator(SCHEMA, format_checker=FORMATS).validate(body)


SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLXZlaWxsZS1ub3RpZmllcg=="
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


class RecordingSleep:
    """Backoff sleeps recorded instead of waited (a tiny real yield keeps tasks interleaving)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def make_alert(
    id: str = "alert-1",
    *,
    watch: str = "acme",
    kind: str = "negative_mention",
    severity: str = "warning",
    status: str = "firing",
    text: str = "Acme's outage is a disaster",
    raised_at: datetime = T0,
    **extra: Any,
) -> AlertRaised:
    """An alert like the classifier's, with one sample mention."""
    return AlertRaised.model_validate(
        {
            "id": id,
            "watch": watch,
            "kind": kind,
            "severity": severity,
            "status": status,
            "summary": f"Negative mention of {watch}: {text[:60]}",
            "lang": "en",
            "source": "rss",
            "mention_count": 1,
            "samples": [
                SampleMention(
                    id=f"rss:{id}", source="rss", url="https://news.example/a", title="Acme down", text=text
                ).model_dump()
            ],
            "started_at": raised_at,
            "raised_at": raised_at,
            "labels": {"team": "comms"},
            **extra,
        }
    )


def webhook_config(url: str, *, route: str = "", receivers_extra: str = "", receiver_opts: str = "") -> VeilleConfig:
    """A config with one webhook receiver ``hook`` at ``url`` (and optional extra YAML)."""
    text = f"""
version: 1
watches:
  - name: acme
    query: acme
  - name: globex
    query: globex
receivers:
  - name: hook
{receiver_opts}
    webhook:
      - url: {url}
        secret: {SECRET}
        headers: {{X-Team: comms}}
{receivers_extra}
route:
  receiver: hook
  group_by: [watch, kind]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
{route}
"""
    return parse_config(text, env={})


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[["ScriptedReceiver", web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ScriptedReceiver:
    """A loopback HTTP receiver: answers each POST from a script of statuses, records accepted bodies."""

    script: list[int | tuple[int, dict[str, str]]] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    attempts: list[Hit] = field(default_factory=list)
    hold: asyncio.Event | None = None
    received: asyncio.Condition = field(default_factory=asyncio.Condition)
    always: int | None = None
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._post)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = "hook") -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _post(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        hit = Hit(request.path, dict(request.headers), body)
        async with self.received:
            self.attempts.append(hit)
            self.received.notify_all()
        if self.hold is not None:
            await self.hold.wait()
        if self.script:
            step = self.script.pop(0)
        elif self.always is not None:
            step = self.always
        else:
            step = 200
        status, headers = step if isinstance(step, tuple) else (step, {})
        if 200 <= status < 300:
            async with self.received:
                self.hits.append(hit)
                self.received.notify_all()
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "nope")

    async def wait_for(self, count: int, *, attempts: bool = False, timeout: float = 15.0) -> list[Hit]:
        """Wait until ``count`` accepted deliveries (or attempts) arrived."""
        items = self.attempts if attempts else self.hits
        async with self.received:
            await asyncio.wait_for(self.received.wait_for(lambda: len(items) >= count), timeout)
        return list(items)


@pytest.fixture
async def receiver() -> AsyncIterator[ScriptedReceiver]:
    """A scriptable webhook receiver on 127.0.0.1."""
    server = ScriptedReceiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


AppFactory = Callable[..., Awaitable[NotifierApp]]


@pytest.fixture
async def notifier_factory(nats_server: NatsServerProcess) -> AsyncIterator[AppFactory]:
    """Start notifiers against the test NATS server; every one started is stopped at the end."""
    started: list[NotifierApp] = []

    async def factory(
        config: VeilleConfig, *, instance: str = "replica-a", tick: float = 0.0, **parts: Any
    ) -> NotifierApp:
        settings = NotifierSettings(
            nats_url=nats_server.url,
            instance=instance,
            notifier_tick=tick,
            notifier_lease=parts.pop("lease", 60.0),
            notifier_partition_lease=parts.pop("partition_lease", 10.0),
            notifier_max_attempts=parts.pop("max_attempts", 4),
            notifier_retry_base=0.01,
            notifier_retry_cap=0.05,
        )
        app = create_app(settings, config=config, **parts)
        await app.start()
        started.append(app)
        return app

    try:
        yield factory
    finally:
        for app in started:
            try:
                await asyncio.wait_for(app.stop(), 25)
            except TimeoutError:
                import sys

                for task in asyncio.all_tasks():
                    task.print_stack(file=sys.stderr)
                raise


async def publish_alert(js: Any, alert: AlertRaised) -> None:
    """Publish an alert the way the classifier does."""
    msg_id = alert.id if alert.status == "firing" else f"{alert.id}:resolved"
    await js.publish(bus.alert_subject(alert.watch), alert.model_dump_json().encode(), headers={"Nats-Msg-Id": msg_id})


async def settled(js: Any, timeout: float = 10.0) -> None:
    """Wait until the notifier's consumers (one per partition) have acked every alert on the stream (all in KV)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        infos = [await js.consumer_info(c.stream, c.durable) for c in bus.NOTIFIER_ALERT_CONSUMERS]
        if all(info.num_ack_pending == 0 and info.num_pending == 0 for info in infos):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"alerts not all acked: {[i for i in infos if i.num_pending or i.num_ack_pending]}")
        await asyncio.sleep(0.02)


async def flush(app: NotifierApp, js: Any, timeout: float = 10.0) -> None:
    """Let every published alert be recorded, then plan every group and finish the sends."""
    await settled(js, timeout=timeout)
    await app.flush_due()


def suppressed(app: NotifierApp, reason: str) -> float:
    """The notifier's suppressed-alerts counter for ``reason``."""
    return app.notifier_metrics.suppressed.labels(reason)._value.get()  # type: ignore[no-any-return]
