"""The archive under faults: killed with SIGKILL mid-load, and its PostgreSQL stopped for a while."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.db import make_engine
from tests.archive.conftest import classified, encode, make_archive, publish_mentions, scalar, wait_for
from tests.archive.postgres import PostgresServer, postgres_unavailable
from veille import bus
from veille.natsserver import NatsServerProcess

REPO = Path(__file__).resolve().parents[2]
LOAD = 10_000


def start_child(db_url: str, nats_url: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    """``python -m tests.archive.child``: one archive in its own process."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.archive.child", db_url, nats_url, str(data_dir), "200"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def settled(js: JetStreamContext) -> bool:
    """Whether the archive's mention consumer has nothing pending or unacked."""
    info = await js.consumer_info(bus.ARCHIVE_CONSUMER.stream, bus.ARCHIVE_CONSUMER.durable)
    return (info.num_pending or 0) == 0 and (info.num_ack_pending or 0) == 0


async def test_kill_9_during_a_10000_mention_load_then_restart_stores_each_mention_once(
    nats_server: NatsServerProcess, js: JetStreamContext, db_url: str, reader: AsyncEngine, tmp_path: Path
) -> None:
    """SIGKILL while batches are being written; after a restart every mention is there exactly once."""
    await publish_mentions(js, [encode(classified(i, watches=("acme",))) for i in range(LOAD)])
    log = tmp_path / "archive.log"
    child = start_child(db_url, nats_server.url, tmp_path, log)
    try:
        await wait_for(lambda: _at_least(reader, 1), f"the first batch committed\n{_tail(log)}", timeout=120)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
        at_kill = await scalar(reader, "SELECT count(*) FROM mentions")
        print(f"{at_kill} of {LOAD} mentions committed when killed")
        child = start_child(db_url, nats_server.url, tmp_path, log)
        # what the killed process had fetched and not acked comes back after the consumer's ack_wait (30 s)
        await wait_for(lambda: _exactly(reader, LOAD), f"{LOAD} mentions archived\n{_tail(log)}", timeout=180)
        await wait_for(lambda: settled(js), "every mention acked", timeout=120)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    assert await scalar(reader, "SELECT count(*) FROM mentions") == LOAD
    assert await scalar(reader, "SELECT count(DISTINCT id) FROM mentions") == LOAD
    assert await scalar(reader, "SELECT count(*) FROM mention_watches") == LOAD


async def _at_least(engine: AsyncEngine, n: int) -> bool:
    return (await scalar(engine, "SELECT count(*) FROM mentions") or 0) >= n


async def _exactly(engine: AsyncEngine, n: int) -> bool:
    return await scalar(engine, "SELECT count(*) FROM mentions") == n


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


@pytest.fixture
def own_postgres() -> object:
    """A PostgreSQL server of this test's own, which it stops and starts."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    server = PostgresServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


async def test_database_down_the_archive_holds_reports_not_ready_then_catches_up(
    nats_server: NatsServerProcess, js: JetStreamContext, own_postgres: PostgresServer, tmp_path: Path
) -> None:
    """PostgreSQL stopped: /readyz names the database, nothing more is acked; started again: all stored."""
    db_url = own_postgres.create_database()
    reader = make_engine(make_url(db_url), write=False)
    app = make_archive(nats_server.url, db_url, tmp_path, batch_size=50)
    await app.start()
    try:
        await publish_mentions(js, [encode(classified(i)) for i in range(100)])
        await wait_for(lambda: _exactly(reader, 100), "the first 100 mentions archived")
        await wait_for(lambda: settled(js), "the first 100 acked")
        await reader.dispose()
        await asyncio.to_thread(own_postgres.stop)
        await publish_mentions(js, [encode(classified(i)) for i in range(100, 400)])
        await wait_for(lambda: _async("database" in app.health.problems()), "/readyz to name the database")
        assert "database unavailable" in app.health.problems()["database"]
        await wait_for(lambda: _async(app.held._value.get() > 0), "a batch held")
        before = await js.consumer_info(bus.ARCHIVE_CONSUMER.stream, bus.ARCHIVE_CONSUMER.durable)
        await asyncio.sleep(2.0)  # retries go on meanwhile: none may ack
        after = await js.consumer_info(bus.ARCHIVE_CONSUMER.stream, bus.ARCHIVE_CONSUMER.durable)
        assert before.ack_floor is not None and after.ack_floor is not None
        assert after.ack_floor.stream_seq == before.ack_floor.stream_seq == 100
        assert (after.num_ack_pending or 0) > 0
        assert app.database_up._value.get() == 0
        await asyncio.to_thread(own_postgres.start)
        await wait_for(lambda: _exactly(reader, 400), "all 400 mentions archived after the database came back")
        await wait_for(lambda: settled(js), "every mention acked")
        assert app.health.problems() == {}
        assert await scalar(reader, "SELECT count(DISTINCT id) FROM mentions") == 400
        assert app.database_up._value.get() == 1
    finally:
        await app.stop()
        await reader.dispose()


async def _async(value: bool) -> bool:
    return value
