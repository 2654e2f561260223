"""Spike counters in KV: what a replica remembers of its own writes never loses or doubles a count."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError

from services.classifier.detection import SurgeDetection, counter_key, state_key
from services.classifier.surges import bucket_start
from tests.classifier.conftest import Apps, at, caught_up, publish_mentions
from veille import bus
from veille.models import MentionClassified, MentionIngested

BUCKET = at(30)
WIDTH = timedelta(seconds=60)  # the bucket of the watch in tests.classifier.conftest.CONFIG
NAME = counter_key("acme", bucket_start(BUCKET, WIDTH))


def _mention(n: int, *, negative: bool = False) -> MentionClassified:
    mention = MentionIngested(
        id=f"rss:{n}", source="rss", site=f"site{n % 3}.example", text=f"Acme news {n}", ingested_at=BUCKET
    )
    return MentionClassified(
        mention=mention,
        lang="en",
        sentiment="negative" if negative else "neutral",
        sentiment_score=-0.5 if negative else 0.0,
        watches=["acme"],
        story_id=f"s{n}",
    )


def _detection(app: Any) -> SurgeDetection:
    assert app.detection is not None
    return app.detection  # type: ignore[no-any-return]


async def _count(detection: SurgeDetection, first: int, n: int, *, negative: bool = False) -> None:
    for i in range(first, first + n):
        detection.record(_mention(i, negative=negative), ["news"], wait=False)
    await detection.flush()


async def _stored(js: JetStreamContext) -> dict[str, Any]:
    kv = await js.key_value(bus.DETECTOR.name)
    entry = await kv.get(NAME)
    return json.loads(entry.value or b"{}")  # type: ignore[no-any-return]


def _reads(detection: SurgeDetection) -> list[str]:
    """Record the keys ``detection`` reads from KV from now on."""
    seen: list[str] = []
    get = detection.kv.get

    async def counted(key: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(key)
        return await get(key, *args, **kwargs)

    detection.kv.get = counted  # type: ignore[method-assign]
    return seen


async def test_a_replica_alone_on_a_bucket_writes_each_flush_without_reading_it_back(
    apps: Apps, js: JetStreamContext
) -> None:
    """Five flushes of one bucket: one read at most (none after the first write), every count kept."""
    app = await apps.start()
    detection = _detection(app)
    apps.clock.now = BUCKET
    reads = _reads(detection)
    for k in range(5):
        await _count(detection, 10 * k, 7, negative=k == 2)
    assert reads.count(NAME) <= 1
    stored = await _stored(js)
    assert stored["total"] == 35
    assert stored["negative"] == 7
    assert stored["terms"] == {"news": 35}
    assert len(stored["stories"]) == 35


async def test_two_replicas_flushing_one_bucket_in_turns_lose_no_count(apps: Apps, js: JetStreamContext) -> None:
    """Each replica's remembered revision goes stale when the other writes: the refused write is re-read and merged."""
    one, two = await apps.start(), await apps.start()
    apps.clock.now = BUCKET
    first, second = _detection(one), _detection(two)
    reads = _reads(first)
    for k in range(6):
        await _count(first if k % 2 == 0 else second, 100 * k, 5)
    await _count(first, 1000, 3)  # the second replica wrote last: refused, read, merged
    await _count(first, 2000, 3)  # its own write was the last: written at once
    stored = await _stored(js)
    assert stored["total"] == 36
    assert len(stored["stories"]) == 36
    assert reads.count(NAME) == 4  # its first write (no key yet), then once after each of the other's writes
    conflicts = one.detection_metrics.conflicts.labels("counter")._value.get()
    assert conflicts == 3


async def test_a_bucket_purged_between_flushes_is_written_again_from_the_next_delta(
    apps: Apps, js: JetStreamContext
) -> None:
    """A purged counter key (its bucket left the explanation window) is created anew, not merged with what was."""
    app = await apps.start()
    apps.clock.now = BUCKET
    detection = _detection(app)
    await _count(detection, 0, 4)
    kv = await js.key_value(bus.DETECTOR.name)
    await kv.purge(NAME)
    await _count(detection, 100, 2)
    stored = await _stored(js)
    assert stored["total"] == 2


async def test_mentions_are_published_at_once_and_acked_only_once_their_counts_are_written(
    apps: Apps, js: JetStreamContext
) -> None:
    """With an hour between flushes, classified mentions are in their stream but unacked; a flush acks them."""
    app = await apps.start(flush_interval=3600.0)
    detection = _detection(app)
    apps.clock.now = BUCKET
    mentions = [
        MentionIngested(id=f"rss:w{n}", source="rss", text=f"Acme opens store {n}", ingested_at=BUCKET)
        for n in range(3)
    ]
    await publish_mentions(js, mentions)
    await _until(lambda: _classified(js), 3)
    info = await js.consumer_info(bus.CLASSIFIER_CONSUMER.stream, bus.CLASSIFIER_CONSUMER.durable)
    assert info.num_ack_pending == 3
    with pytest.raises(KeyNotFoundError):
        await (await js.key_value(bus.DETECTOR.name)).get(NAME)
    await detection.flush()
    await caught_up(js)
    assert (await _stored(js))["total"] == 3


async def test_a_stopping_classifier_writes_the_counts_of_its_last_batches_and_acks_them(
    apps: Apps, js: JetStreamContext
) -> None:
    """Stop does not wait out the flush interval: the counts are written, the mentions acked."""
    app = await apps.start(flush_interval=3600.0)
    apps.clock.now = BUCKET
    mentions = [
        MentionIngested(id=f"rss:s{n}", source="rss", text=f"Acme closes store {n}", ingested_at=BUCKET)
        for n in range(4)
    ]
    await publish_mentions(js, mentions)
    await _until(lambda: _classified(js), 4)
    await asyncio.wait_for(apps.stop(app), 60)  # a guard against a hang, not a speed check
    info = await js.consumer_info(bus.CLASSIFIER_CONSUMER.stream, bus.CLASSIFIER_CONSUMER.durable)
    assert info.num_ack_pending == 0 and info.num_pending == 0
    assert (await _stored(js))["total"] == 4


async def _classified(js: JetStreamContext) -> int:
    return (await js.stream_info(bus.CLASSIFIED.name)).state.messages  # type: ignore[no-any-return]


async def _until(count: Callable[[], Awaitable[int]], expected: int, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await count() < expected:
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_flush_cancelled_mid_write_leaves_what_it_did_not_write_to_the_next(
    apps: Apps, js: JetStreamContext
) -> None:
    """Counts are neither lost nor doubled, and the batch waiting for them is released by the next flush."""
    app = await apps.start(flush_interval=3600.0)
    detection = _detection(app)
    apps.clock.now = BUCKET
    await _count(detection, 0, 2)  # the key exists: the next write is an update
    for i in range(10, 13):
        detection.record(_mention(i), ["news"], wait=False)
    waiter = detection.written()
    await _flush_cancelled_in(detection, "update", lambda key: True)
    assert not waiter.done()
    await detection.flush()
    assert waiter.done() and waiter.exception() is None
    assert (await _stored(js))["total"] == 5


async def test_a_flush_cancelled_while_starting_a_new_watch_starts_it_on_the_next(
    apps: Apps, js: JetStreamContext
) -> None:
    """The counts were written but the watch's detector state was not: the next flush creates it."""
    app = await apps.start(flush_interval=3600.0)
    detection = _detection(app)
    apps.clock.now = BUCKET
    detection.record(_mention(1), ["news"], wait=False)
    waiter = detection.written()
    await _flush_cancelled_in(detection, "create", lambda key: key == state_key("acme"))
    await detection.flush()
    assert waiter.done()
    kv = await js.key_value(bus.DETECTOR.name)
    assert (await kv.get(state_key("acme"))).value
    assert (await _stored(js))["total"] == 1


async def _flush_cancelled_in(detection: SurgeDetection, method: str, blocks: Callable[[str], bool]) -> None:
    """Run a flush, and cancel it while its KV ``method`` (``create``, ``update``) hangs on a key ``blocks`` picks."""
    original = getattr(detection.kv, method)
    blocked = asyncio.Event()

    async def hanging(key: str, *args: Any, **kwargs: Any) -> Any:
        if blocks(key):
            blocked.set()
            await asyncio.Event().wait()  # never answers
        return await original(key, *args, **kwargs)

    setattr(detection.kv, method, hanging)
    try:
        flushing = asyncio.create_task(detection.flush())
        await blocked.wait()
        flushing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flushing
    finally:
        setattr(detection.kv, method, original)
