"""Hostile receivers on real loopback servers: huge or endless answers, redirects, trickled answers.

The huge and trickling receivers are raw asyncio servers, so a test decides every byte of the answer
and counts what the notifier really took from the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from nats.js import JetStreamContext

from services.notifier.delivery import RESPONSE_LIMIT
from tests.notifier.conftest import AppFactory, ManualClock, RecordingSleep, make_alert, publish_alert
from tests.notifier.test_delivery import wait_dead_letters
from veille.config import VeilleConfig, parse_config

BODY_SIZE = 300 * 1024 * 1024
"""The answer a huge receiver sends: 300 MB (2.8 GB of notifier RSS when read whole)."""

MAX_TAKEN = 32 * 1024 * 1024
"""What the notifier may take off the socket at most: a few KB read, plus what loopback buffers hold."""

CHUNK = b"x" * 65536


def config_for(kind: str, url: str, *, timeout: str = "10s") -> VeilleConfig:
    """One receiver ``hook`` with one integration of ``kind`` at ``url``, every alert due at once."""
    entry = f"- url: {url}\n        timeout: {timeout}"
    if kind == "webhook":
        entry += "\n        headers: {X-Api-Key: secret-key}"
    return parse_config(
        f"""
version: 1
watches: [{{name: acme, query: acme}}]
receivers:
  - name: hook
    {kind}:
      {entry}
route:
  receiver: hook
  group_by: [watch, kind]
  group_wait: 0s
  group_interval: 5m
""",
        env={},
    )


class RawReceiver:
    """A loopback HTTP/1.1 server on raw sockets: reads each request, then plays ``mode``.

    Modes: ``huge`` (``status`` with a ``BODY_SIZE`` body, declared or ended by closing), ``trickle_head``
    and ``trickle_body`` (one byte every 0.1 s, forever), ``ok`` (a plain 200).
    """

    def __init__(self, mode: str, *, status: int = 200, declared: bool = True) -> None:
        self.mode = mode
        self.status = status
        self.declared = declared
        self.requests = 0
        self.answered = 0
        self.sent = 0
        self.finished = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests += 1
                if not await self._answer(writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)
            self.finished.set()

    async def _answer(self, writer: asyncio.StreamWriter) -> bool:
        """Play the mode on one request; return whether the connection may serve another."""
        if self.mode == "ok":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            self.answered += 1
            return True
        if self.mode == "huge":
            length = f"Content-Length: {BODY_SIZE}\r\n" if self.declared else "Connection: close\r\n"
            writer.write(f"HTTP/1.1 {self.status} Whatever\r\n{length}Content-Type: text/plain\r\n\r\n".encode())
            while self.sent < BODY_SIZE:
                writer.write(CHUNK)
                await writer.drain()
                self.sent += len(CHUNK)
            return False
        if self.mode == "trickle_head":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            drip = b"X-Slow: " + b"a" * 1_000_000
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            drip = b"b" * 1_000_000
        for byte in drip:
            writer.write(bytes([byte]))
            await writer.drain()
            self.sent += 1
            await asyncio.sleep(0.1)
        return False


@pytest.fixture
async def raw_servers() -> AsyncIterator[list[RawReceiver]]:
    """Raw receivers a test appends to; all stopped at the end."""
    servers: list[RawReceiver] = []
    try:
        yield servers
    finally:
        for server in servers:
            await server.stop()


async def started(servers: list[RawReceiver], server: RawReceiver) -> RawReceiver:
    await server.start()
    servers.append(server)
    return server


def counter(app: Any, name: str, *labels: str) -> float:
    return getattr(app.notifier_metrics, name).labels(*labels)._value.get()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("kind", "status", "declared"),
    [("webhook", 200, True), ("webhook", 200, False), ("slack", 503, True), ("teams", 500, False)],
)
async def test_huge_answer_is_read_only_a_few_kilobytes(
    js: JetStreamContext,
    notifier_factory: AppFactory,
    raw_servers: list[RawReceiver],
    kind: str,
    status: int,
    declared: bool,
) -> None:
    """A receiver answering 300 MB (declared or until it closes) gets its socket closed after a few KB are read."""
    server = await started(raw_servers, RawReceiver("huge", status=status, declared=declared))
    app = await notifier_factory(config_for(kind, server.url()), sleep=RecordingSleep(), max_attempts=1)
    await publish_alert(js, make_alert("alert-huge"))
    if status == 200:
        await asyncio.wait_for(server.finished.wait(), 60)
        await app.dispatcher.drain()
        assert counter(app, "notifications", "hook", kind, "sent") == 1
    else:
        [entry] = await wait_dead_letters(js, 1, timeout=60)
        assert f"HTTP {status}" in entry.letter.reason and "xxxx" in entry.letter.reason
        assert len(entry.letter.reason) < 400
        await asyncio.wait_for(server.finished.wait(), 60)
    assert server.requests == 1
    assert RESPONSE_LIMIT <= server.sent < MAX_TAKEN, f"the notifier took {server.sent} bytes"


class RedirectingReceiver:
    """Answers every request with ``status`` and a Location on another loopback server, which records everything."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[str] = []
        self.elsewhere: list[tuple[str, dict[str, str], bytes]] = []
        self._runners: list[web.AppRunner] = []
        self.port = self.other_port = 0

    async def _site(self, handler: Any) -> int:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runners.append(runner)
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr, no-any-return]

    async def start(self) -> None:
        self.port = await self._site(self._redirect)
        self.other_port = await self._site(self._record)

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    @property
    def location(self) -> str:
        return f"http://127.0.0.1:{self.other_port}/landing"

    async def _redirect(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append(request.method)
        return web.Response(status=self.status, headers={"Location": self.location})

    async def _record(self, request: web.Request) -> web.Response:
        self.elsewhere.append((request.method, dict(request.headers), await request.read()))
        return web.Response(text="thanks")


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirect_is_not_followed_and_fails_the_delivery(
    js: JetStreamContext, notifier_factory: AppFactory, status: int
) -> None:
    """A webhook answering a redirect to another host is dead-lettered naming the Location; that host gets nothing."""
    server = RedirectingReceiver(status)
    await server.start()
    try:
        app = await notifier_factory(
            config_for("webhook", f"http://127.0.0.1:{server.port}/hook"), sleep=RecordingSleep()
        )
        await publish_alert(js, make_alert("alert-redirect"))
        [entry] = await wait_dead_letters(js, 1)
        await app.dispatcher.drain()
        assert server.requests == ["POST"]  # one attempt: a redirect is not retried
        assert server.elsewhere == []  # neither the signed body nor the X-Api-Key went anywhere else
        assert "not retryable" in entry.letter.reason
        assert f"HTTP {status}" in entry.letter.reason and server.location in entry.letter.reason
        assert counter(app, "delivery_errors", "hook", "webhook", "redirect") == 1
        assert counter(app, "notifications", "hook", "webhook", "dead_lettered") == 1
        assert counter(app, "notifications", "hook", "webhook", "sent") == 0
    finally:
        await server.stop()


@pytest.mark.parametrize("mode", ["trickle_head", "trickle_body"])
async def test_trickling_receiver_times_out_and_its_group_moves_on(
    js: JetStreamContext, notifier_factory: AppFactory, raw_servers: list[RawReceiver], mode: str
) -> None:
    """A byte every 0.1 s beats a per-read timeout, yet each attempt ends at its 1 s deadline; the group moves on."""
    server = await started(raw_servers, RawReceiver(mode))
    sleep, clock = RecordingSleep(), ManualClock()
    app = await notifier_factory(
        config_for("webhook", server.url(), timeout="1s"), sleep=sleep, clock=clock, max_attempts=2
    )
    await publish_alert(js, make_alert("alert-trickle"))
    [entry] = await wait_dead_letters(js, 1, timeout=30)
    assert "gave up after 2 attempt(s)" in entry.letter.reason and "within 1s" in entry.letter.reason
    assert server.requests == 2
    assert counter(app, "delivery_errors", "hook", "webhook", "timeout") == 2
    assert len(sleep.delays) == 1 and sleep.delays[0] >= 1.0  # no retry before the receiver's own timeout

    server.mode = "ok"  # the receiver recovers: the group's next notification goes through
    await app.dispatcher.drain()
    await publish_alert(js, make_alert("alert-after"))
    clock.advance(minutes=6)
    deadline = asyncio.get_running_loop().time() + 15
    while server.answered == 0 and asyncio.get_running_loop().time() < deadline:
        await app.flush_due()
        await asyncio.sleep(0.05)
    assert server.answered == 1
    assert counter(app, "notifications", "hook", "webhook", "sent") == 1
