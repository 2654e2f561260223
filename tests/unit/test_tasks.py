"""A stop always returns: background loops end even when a cancellation is swallowed (veille.tasks).

On Python 3.11, ``asyncio.wait_for`` swallows a cancellation that arrives in the same turn of the event
loop as its result (CPython gh-86296); nats-py's requests and KV watchers are built on it. A loop
cancelled just as a reply came in then went on running, and the notifier's and the RSS ingester's
``stop()`` hung in CI. These tests make that turn happen on purpose.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from veille import bus
from veille.consumerlag import ConsumerLagMonitor
from veille.tasks import cancel_and_wait

HANG_GUARD = 60  # seconds: turns a hang into a failure instead of the suite's timeout


class RepliesAsCancelled:
    """Requests answered by the test, as nats-py's are: ``await asyncio.wait_for(reply, timeout)``."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.reply: asyncio.Future[Any] | None = None
        self.requests = 0

    async def request(self) -> Any:
        self.requests += 1
        self.reply = asyncio.get_running_loop().create_future()
        self.asked.set()
        return await asyncio.wait_for(self.reply, 5.0)

    async def answer_as(self, cancel: Any) -> None:
        """Wait for a request, then answer it and cancel in the same turn of the loop."""
        await self.asked.wait()
        self.asked.clear()
        assert self.reply is not None
        self.reply.set_result(None)
        cancel()


async def _polling_loop(server: RepliesAsCancelled, interval: float) -> None:
    while True:
        await server.request()
        await asyncio.sleep(interval)


async def test_a_loop_that_swallowed_its_cancellation_is_cancelled_again_and_ends() -> None:
    server = RepliesAsCancelled()
    task = asyncio.create_task(_polling_loop(server, interval=3600), name="poller")
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_GUARD):
            await server.answer_as(task.cancel)
            await cancel_and_wait([task], grace=0.05)
    assert task.cancelled()
    assert server.requests == 1
    ignored = [entry["tasks"] for entry in logs if entry["event"] == "tasks.cancel_ignored"]
    # on Python 3.11 the first cancel is swallowed and a second one was needed (from 3.12 the first holds)
    assert ignored == ([["poller"]] if sys.version_info < (3, 12) else [])


async def test_a_caller_cancelled_while_waiting_passes_its_cancellation_on_to_the_tasks() -> None:
    server = RepliesAsCancelled()
    task = asyncio.create_task(_polling_loop(server, interval=3600), name="poller")
    stopping: list[asyncio.Task[None]] = []
    await server.answer_as(lambda: stopping.append(asyncio.create_task(cancel_and_wait([task], grace=3600))))
    await asyncio.sleep(0.05)  # the first cancel swallowed: the poller sleeps, the stop waits out its grace
    stopping[0].cancel()  # as serve's limit on a stop would
    await asyncio.wait({stopping[0], task}, timeout=HANG_GUARD)
    assert stopping[0].cancelled()
    assert task.cancelled(), "the poller went on running after its stop was cancelled"


async def test_a_task_that_ignores_every_cancellation_is_left_behind_with_an_error_naming_it() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        async with asyncio.timeout(HANG_GUARD):
            await cancel_and_wait([task], grace=0.01, timeout=0.05)
    assert not task.done()
    [abandoned] = [entry for entry in logs if entry["event"] == "tasks.abandoned"]
    assert abandoned["tasks"] == ["stubborn"] and abandoned["log_level"] == "error"
    release.set()
    task.cancel()
    await asyncio.wait({task})
    assert task.done()


async def test_a_failed_task_is_logged_and_the_others_still_stopped() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails(), name="fails")
    sleeper = asyncio.create_task(asyncio.sleep(3600), name="sleeper")
    await asyncio.sleep(0)
    with capture_logs() as logs:
        await cancel_and_wait([failed, None, sleeper])
    assert sleeper.cancelled()
    [entry] = [e for e in logs if e["event"] == "tasks.failed"]
    assert entry["task"] == "fails" and entry["error"] == "RuntimeError: boom"


class _ConsumerInfo:
    num_pending = 3
    num_ack_pending = 1
    num_redelivered = 0


class _JetStream(RepliesAsCancelled):
    async def consumer_info(self, stream: str, durable: str, timeout: float) -> _ConsumerInfo:
        await self.request()
        return _ConsumerInfo()


@pytest.mark.parametrize("interval", [3600.0, 0.0])
async def test_the_consumer_lag_monitor_stops_when_stopped_as_a_reply_arrives(interval: float) -> None:
    """The notifier's stop hung here in CI: ``consumer_info``'s reply and the stop's cancel in one turn."""
    monitor = ConsumerLagMonitor("notifier", CollectorRegistry(), [bus.NOTIFIER_CONSUMER], interval=interval)
    js = _JetStream()
    monitor.start(js)  # type: ignore[arg-type]
    stopping: list[asyncio.Task[None]] = []
    await js.answer_as(lambda: stopping.append(asyncio.create_task(monitor.stop())))
    # not awaited directly: a guard's cancel would reach the poller through the stop and end it
    done, _ = await asyncio.wait(stopping, timeout=HANG_GUARD)
    assert done, "the monitor's stop never returned: its loop went on after the cancellation"
    requests = js.requests
    await asyncio.sleep(0.05)
    assert js.requests == requests  # nothing polls any more
