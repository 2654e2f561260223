"""Shared fixtures: a real nats-server per test on a free loopback port with a temporary store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from veille import bus
from veille.natsserver import NatsServerProcess

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServerProcess]:
    """A real nats-server with JetStream on 127.0.0.1; ``.stop()``/``.start()`` keep port and store."""
    server = NatsServerProcess(store_dir=tmp_path / "nats-store", log_file=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(nats_server: NatsServerProcess) -> AsyncIterator[NatsClient]:
    """A plain nats-py client connected to the test server, with the topology declared."""
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    await bus.ensure_topology(client.jetstream())
    try:
        yield client
    finally:
        await client.drain()


@pytest.fixture
def js(nc: NatsClient) -> JetStreamContext:
    """JetStream context of the test client."""
    return nc.jetstream()
