"""/readyz of a service stays 503 until it has finished starting, and turns 503 again as soon as it stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from veille.natsserver import NatsServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]


class SlowLink:
    """A TCP proxy on 127.0.0.1 that hands every byte from the server over ``delay`` seconds late (a far link)."""

    def __init__(self, port: int, upstream_port: int, delay: float) -> None:
        self.port, self.upstream_port, self.delay = port, upstream_port, delay
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        """Listen on ``port``."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        for writer in self._writers:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        for task in (self._pipe(reader, up_writer, 0.0), self._pipe(up_reader, writer, self.delay)):
            running = asyncio.create_task(task)
            self._tasks.add(running)
            running.add_done_callback(self._tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay: float) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def feed() -> None:
            while True:
                data = await source.read(65536)
                queue.put_nowait((loop.time() + delay, data))
                if not data:
                    return

        feeder = asyncio.create_task(feed())
        try:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    sink.close()
                    return
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            return
        finally:
            feeder.cancel()


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    try:
        return await client.get(url)
    except httpx.TransportError:  # not listening yet
        return None


async def _until(client: httpx.AsyncClient, url: str, child: asyncio.subprocess.Process, what: str) -> httpx.Response:
    for _ in range(3600):
        assert child.returncode is None, f"the service exited ({child.returncode}) while waiting for {what}"
        response = await _get(client, url)
        if response is not None and response.status_code == 200:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


async def test_readyz_is_503_until_the_service_has_started(tmp_path: Path) -> None:
    """A classifier whose nats-server is first absent, then behind a slow link, answers /healthz 200 at once but
    /readyz 200 only once it has logged that it started (connected, topology declared, consumer started)."""
    nats = NatsServerProcess(store_dir=tmp_path / "nats", log_file=tmp_path / "nats.log")
    nats.start()
    link = SlowLink(free_port(), nats.port, delay=0.4)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    log_path = tmp_path / "classifier.log"
    env = {
        **os.environ,
        "VEILLE_NATS_URL": f"nats://127.0.0.1:{link.port}",
        "VEILLE_HTTP_HOST": "127.0.0.1",
        "VEILLE_HTTP_PORT": str(http_port),
        "VEILLE_CONFIG": str(REPO / "examples" / "veille.yaml"),
        "VEILLE_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "veille_cli", "run", "classifier", env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            await _until(client, f"{base}/healthz", child, "/healthz")
            waiting = await _get(client, f"{base}/readyz")
            assert waiting is not None and waiting.status_code == 503, waiting
            await link.start()  # NATS is there now, 0.4 s away: connecting and declaring take a while
            ready = await _until(client, f"{base}/readyz", child, "/readyz to turn 200")
            started = '"classifier.started"' in log_path.read_text(encoding="utf-8")
            assert started, f"/readyz said {ready.json()} before the classifier had started"
    finally:
        child.terminate()
        try:
            await asyncio.wait_for(child.wait(), 30)
        except TimeoutError:
            child.kill()
            await child.wait()
        await link.stop()
        with contextlib.suppress(Exception):
            nats.stop()


class DrainingApp:
    """A service whose stop() waits until the test lets it finish (work in flight)."""

    def __init__(self) -> None:
        from veille.health import Health
        from veille.metrics import ServiceMetrics

        self.name = "probe"
        self.metrics = ServiceMetrics("probe")
        self.health = Health()
        self.stopping = asyncio.Event()
        self.release = asyncio.Event()

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Say it is stopping, then wait for the test."""
        self.stopping.set()
        await self.release.wait()


async def test_readyz_turns_503_as_soon_as_a_stop_is_asked() -> None:
    """While a service drains its work in flight after SIGTERM, /readyz says 503 "stopping", so a load
    balancer or a supervisor sends it nothing new."""
    from veille.service import serve
    from veille.settings import ServiceSettings

    app = DrainingApp()
    port = free_port()
    stop = asyncio.Event()
    running = asyncio.create_task(serve(app, ServiceSettings(http_port=port), stop))
    async with httpx.AsyncClient(timeout=5) as client:
        url = f"http://127.0.0.1:{port}/readyz"
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    break
            await asyncio.sleep(0.1)
        assert (await client.get(url)).status_code == 200
        stop.set()
        await asyncio.wait_for(app.stopping.wait(), 10)
        response = await client.get(url)
        assert response.status_code == 503 and "stopping" in response.text, response.text
    app.release.set()
    await asyncio.wait_for(running, 30)
