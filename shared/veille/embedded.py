"""The embedded stack of ``veille up``: nats-server, every service as a child process, a mail
catcher and a webhook sink, supervised so that a service that dies is restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client import CollectorRegistry, Counter, Gauge

from veille.logging import line_prefix
from veille.metrics import PREFIX
from veille.natsserver import die_with_parent
from veille.tasks import cancel_and_wait

__all__ = ["ChildService", "MailCatcher", "Supervisor", "WebhookSink"]

log = structlog.get_logger("veille.up")


class MailCatcher:
    """A local SMTP server (aiosmtpd) saving each message it receives as an .eml file."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 2525) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self._controller: Controller | None = None

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Save the message; aiosmtpd calls this for every message."""
        content = envelope.original_content or b""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}.eml"
        path.write_bytes(content)
        subject = message_from_bytes(content, policy=policy.default).get("Subject", "")
        log.info("up.mail_received", to=list(envelope.rcpt_tos), subject=str(subject), file=str(path))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        """Start listening in aiosmtpd's own thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._controller = Controller(self, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


class WebhookSink:
    """A local HTTP server appending every POST it receives as one JSON line per endpoint."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 8099) -> None:
        self.directory = directory
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        name = "".join(c for c in request.match_info.get("name", "default") if c.isalnum() or c in "-_")
        body = await request.read()
        try:
            payload: Any = json.loads(body)
        except (ValueError, RecursionError):
            payload = body.decode("utf-8", "replace")
        record = {
            "received_at": datetime.now(UTC).isoformat(),
            "headers": {k: v for k, v in request.headers.items() if k.lower().startswith(("webhook-", "content-"))},
            "body": payload,
        }
        with (self.directory / f"{name or 'default'}.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        log.info("up.webhook_received", endpoint=name, webhook_id=request.headers.get("webhook-id"))
        return web.json_response({"ok": True})

    async def start(self) -> None:
        """Start listening."""
        self.directory.mkdir(parents=True, exist_ok=True)
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_post("/hooks/{name}", self._receive)
        app.router.add_post("/hooks", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass
class ChildService:
    """One service run as ``python -m veille_cli run NAME`` (the ``veille`` program, in a child
    process: the supervisor imports no service) with its own environment."""

    name: str
    env: dict[str, str]
    http_port: int
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0
    relay: asyncio.Task[None] | None = None

    def command(self) -> list[str]:
        """The child's command line."""
        return [sys.executable, "-m", "veille_cli", "run", self.name]


@dataclass
class Supervisor:
    """Starts children, relays their logs, restarts the ones that die, stops them all cleanly."""

    services: list[ChildService]
    log_dir: Path
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    healthy_after: float = 60.0
    echo: Callable[[str], None] | None = None
    _stopping: bool = False
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.deaths = Counter(
            f"{PREFIX}_up_service_deaths_total",
            "Child services of `veille up` that exited unexpectedly.",
            ["service"],
            registry=self.registry,
        )
        self.up = Gauge(
            f"{PREFIX}_up_service_running", "1 while the child service runs.", ["service"], registry=self.registry
        )

    async def _spawn(self, child: ChildService) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **child.env}
        child.process = await asyncio.create_subprocess_exec(
            *child.command(),
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        child.started_at = time.monotonic()
        self.up.labels(child.name).set(1)
        child.relay = asyncio.create_task(self._relay(child))
        log.info("up.service_started", service=child.name, pid=child.process.pid, http_port=child.http_port)

    async def _relay(self, child: ChildService) -> None:
        assert child.process is not None and child.process.stdout is not None
        with (self.log_dir / f"{child.name}.log").open("ab") as out:
            async for line in child.process.stdout:
                out.write(line)
                out.flush()
                if self.echo is not None:
                    self.echo(line_prefix(child.name) + line.decode("utf-8", "replace").rstrip())

    async def _watch(self, child: ChildService) -> None:
        while not self._stopping:
            if child.process is None:
                await self._spawn(child)
            assert child.process is not None
            code = await child.process.wait()
            if child.relay is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.relay, 2)
            self.up.labels(child.name).set(0)
            if self._stopping:
                return
            ran_for = time.monotonic() - child.started_at
            child.failures = 1 if ran_for > self.healthy_after else child.failures + 1
            delay = min(self.backoff_initial * 2 ** (child.failures - 1), self.backoff_max)
            self.deaths.labels(child.name).inc()
            log.error(
                "up.service_died", service=child.name, exit_code=code, restart_in=delay, ran_for=round(ran_for, 1)
            )
            child.process = None
            await asyncio.sleep(delay)

    async def start(self) -> None:
        """Start every child and keep watching them."""
        for child in self.services:
            await self._spawn(child)
            self._tasks.append(asyncio.create_task(self._watch(child), name=f"up-watch-{child.name}"))

    async def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every child, wait, SIGKILL any that remain; nothing is left behind."""
        self._stopping = True
        running = [c for c in self.services if c.process is not None and c.process.returncode is None]
        for child in running:
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in running:
            assert child.process is not None
            try:
                await asyncio.wait_for(child.process.wait(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("up.service_killed", service=child.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                await child.process.wait()
        await cancel_and_wait(self._tasks)
        self._tasks.clear()

    def pids(self) -> Mapping[str, int | None]:
        """Current pid of each child (None while it is being restarted)."""
        return {c.name: (c.process.pid if c.process else None) for c in self.services}
