"""The batch consumer on a real nats-server: poison dead-lettered, failures isolated, stop acks what it did."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from tests.helpers.deadletters import dead_letters
from veille import bus
from veille.messaging import BatchConsumer, DeadLetterSink, gather_publishes
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested

CONSUMER = bus.Consumer(bus.MENTIONS.name, "probe-batch", "veille.mentions.ingested.>", ack_wait=30.0)
OUT_SUBJECT = "veille.mentions.classified.probe"


async def settled(js: JetStreamContext, timeout: float = 20.0) -> None:
    """Wait until the probe consumer has nothing pending and nothing unacked."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await js.consumer_info(CONSUMER.stream, CONSUMER.durable)
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        assert asyncio.get_running_loop().time() < deadline, f"not settled: {info.num_pending}, {info.num_ack_pending}"
        await asyncio.sleep(0.05)


async def publish_raw(js: JetStreamContext, msg_id: str, body: bytes) -> None:
    """Publish one raw payload on the mentions stream with its ``Nats-Msg-Id``."""
    await js.publish("veille.mentions.ingested.rss", body, headers={"Nats-Msg-Id": msg_id})


def mention(mention_id: str) -> bytes:
    """A valid raw mention."""
    return MentionIngested(id=mention_id, source="rss", text=f"text of {mention_id}").model_dump_json().encode()


def make_consumer(
    nc: NatsClient,
    handler: Callable[[list[MentionIngested]], Awaitable[Awaitable[None] | None]],
    metrics: ServiceMetrics,
    **options: Any,
) -> BatchConsumer[MentionIngested]:
    """A batch consumer of the mentions stream for the ``probe`` service."""
    sink = DeadLetterSink("probe", metrics)
    sink.bind(nc)
    options.setdefault("fetch_timeout", 0.3)
    return BatchConsumer(
        service="probe",
        consumer=CONSUMER,
        model=MentionIngested,
        handler=handler,
        metrics=metrics,
        sink=sink,
        **options,
    )


async def out_ids(js: JetStreamContext) -> list[str]:
    """Ids of every output message stored by the handlers (duplicates included)."""
    info = await js.stream_info(bus.CLASSIFIED.name)
    if info.state.messages == 0:
        return []
    sub = await js.pull_subscribe(OUT_SUBJECT, stream=bus.CLASSIFIED.name)
    out: list[str] = []
    try:
        while len(out) < info.state.messages:
            msgs = await sub.fetch(500, timeout=2)
            out.extend(json.loads(m.data)["id"] for m in msgs)
            for m in msgs:
                await m.ack()
    finally:
        await sub.unsubscribe()
    return out


async def test_poison_in_a_batch_is_dead_lettered_and_the_rest_handled_together(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """Bad payloads in a batch each become a dead letter of their kind; the valid ones reach the handler in one call."""
    metrics = ServiceMetrics("probe")
    batches: list[list[str]] = []

    async def handle(mentions: list[MentionIngested]) -> None:
        batches.append([m.id for m in mentions])

    await publish_raw(js, "ok-1", mention("ok-1"))
    await publish_raw(js, "bad-json", b"this is not json")
    await publish_raw(js, "ok-2", mention("ok-2"))
    await publish_raw(js, "bad-schema", b'{"id": 42, "text": []}')
    await publish_raw(js, "bad-utf8", b'{"id": "x\xff\xfe"}')
    await publish_raw(js, "bad-list", b"[1, 2, 3]")
    await publish_raw(js, "bad-size", json.dumps({"id": "big", "source": "rss", "text": "x" * 5000}).encode())
    await publish_raw(js, "ok-3", mention("ok-3"))
    consumer = make_consumer(nc, handle, metrics, max_bytes=4096)
    await consumer.start(nc)
    try:
        letters = await dead_letters(js, 5)
        await settled(js)
    finally:
        await consumer.stop()

    kinds = {letter.headers.get("Nats-Msg-Id"): letter.error_kind for letter in letters}
    assert kinds == {
        "bad-json": "invalid_json",
        "bad-schema": "invalid_schema",
        "bad-utf8": "invalid_utf8",
        "bad-list": "invalid_schema",
        "bad-size": "too_large",
    }
    assert batches == [["ok-1", "ok-2", "ok-3"]]
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "ok")._value.get() == 3
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "dead_lettered")._value.get() == 5
    assert metrics.dead_letters.labels("probe", "invalid_json")._value.get() == 1


async def test_a_failing_message_fails_alone_and_is_retried_then_dead_lettered(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """A failing batch is retried one message at a time: only the failing one is naked, then dead-lettered."""
    metrics = ServiceMetrics("probe")
    done: list[str] = []
    calls: list[list[str]] = []

    async def handle(mentions: list[MentionIngested]) -> None:
        ids = [m.id for m in mentions]
        calls.append(ids)
        if "poison" in ids:
            raise RuntimeError("cannot classify this one")
        done.extend(ids)

    for mention_id in ("a", "b", "poison", "c"):
        await publish_raw(js, mention_id, mention(mention_id))
    consumer = make_consumer(nc, handle, metrics, max_attempts=2)
    await consumer.start(nc)
    try:
        letters = await dead_letters(js, 1)
        await settled(js)
    finally:
        await consumer.stop()

    assert sorted(done) == ["a", "b", "c"], "the other messages were handled once each, on their own"
    assert calls[0] == ["a", "b", "poison", "c"]
    assert [ids for ids in calls if ids == ["poison"]] == [["poison"], ["poison"]], "one retry after a nak"
    assert [(letter.error_kind, letter.attempts) for letter in letters] == [("processing_failed", 2)]
    assert "cannot classify this one" in letters[0].reason
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "retried")._value.get() == 1
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "ok")._value.get() == 3


async def test_stop_mid_stream_acks_what_was_processed_and_output_has_no_duplicate(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """A stop acks the batches in hand; a second consumer finishes the rest and no output is stored twice."""
    metrics = ServiceMetrics("probe")
    first_batch_seen = asyncio.Event()

    async def handle(mentions: list[MentionIngested]) -> None:
        futures = [
            await js.publish_async(OUT_SUBJECT, json.dumps({"id": m.id}).encode(), headers={"Nats-Msg-Id": m.id})
            for m in mentions
        ]
        await gather_publishes(futures)
        first_batch_seen.set()
        await asyncio.sleep(0)

    total = 600
    futures = [
        await js.publish_async("veille.mentions.ingested.rss", mention(f"m{i}"), headers={"Nats-Msg-Id": f"m{i}"})
        for i in range(total)
    ]
    await asyncio.gather(*futures)
    first = make_consumer(nc, handle, metrics, batch_size=50)
    await first.start(nc)
    await first_batch_seen.wait()
    await first.stop()
    handled_by_first = metrics.messages.labels("probe", bus.MENTIONS.name, "ok")._value.get()
    assert 0 < handled_by_first < total
    # Acked: exactly what was handled. Delivered but not handed to the handler (requested ahead):
    # nakked, so it stays "ack pending" only until redelivered.
    for _ in range(100):  # the server applies acks asynchronously
        info = await js.consumer_info(CONSUMER.stream, CONSUMER.durable)
        if info.num_pending + info.num_ack_pending == total - handled_by_first:
            break
        await asyncio.sleep(0.05)
    assert info.num_pending + info.num_ack_pending == total - handled_by_first

    second = make_consumer(nc, handle, ServiceMetrics("probe"), batch_size=50)
    await second.start(nc)
    try:
        # Well within ack_wait (30 s): a message the first consumer held without nakking it would
        # only come back after that, and this would time out.
        await settled(js, timeout=20.0)
    finally:
        await second.stop()
    ids = await out_ids(js)
    assert len(ids) == total and set(ids) == {f"m{i}" for i in range(total)}


async def _unacked(js: JetStreamContext) -> int:
    info = await js.consumer_info(CONSUMER.stream, CONSUMER.durable)
    return info.num_ack_pending


class Waiting:
    """A handler whose batches each wait for a future the test resolves (``waits``, in batch order)."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.waits: list[asyncio.Future[None]] = []

    async def handle(self, mentions: list[MentionIngested]) -> asyncio.Future[None]:
        self.batches.append([m.id for m in mentions])
        self.waits.append(asyncio.get_running_loop().create_future())
        return self.waits[-1]

    @contextlib.asynccontextmanager
    async def consuming(
        self, nc: NatsClient, metrics: ServiceMetrics, **options: Any
    ) -> AsyncIterator[BatchConsumer[MentionIngested]]:
        """A started consumer with this handler; on the way out every wait ends (a failed assertion must
        not leave ``stop()`` waiting for them), then the consumer stops."""
        consumer = make_consumer(nc, self.handle, metrics, **options)
        await consumer.start(nc)
        try:
            yield consumer
        finally:
            for wait in self.waits:
                if not wait.done():
                    wait.set_result(None)
            await consumer.stop()


async def test_a_batch_waiting_for_its_handlers_awaitable_is_acked_after_it_and_frees_its_fetch_slot(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """With one slot, a second batch is handled while the first waits; each is acked only once its awaitable is done."""
    metrics = ServiceMetrics("probe")
    probe = Waiting()
    batches, waits = probe.batches, probe.waits

    async with probe.consuming(nc, metrics, concurrency=1):
        await publish_raw(js, "first", mention("first"))
        await _until(lambda: len(batches) == 1)
        await publish_raw(js, "second", mention("second"))
        await _until(lambda: len(batches) == 2)  # the first batch's slot was free while it waited
        assert batches == [["first"], ["second"]]
        assert await _unacked(js) == 2
        waits[1].set_result(None)
        await _until_acked(js, 1)
        waits[0].set_result(None)
        await settled(js)
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "ok")._value.get() == 2


async def test_a_batch_whose_awaitable_fails_is_handled_again_one_message_at_a_time(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """The awaitable's failure fails the batch as a raise would: each message is handled on its own, then acked."""
    metrics = ServiceMetrics("probe")
    calls: list[list[str]] = []

    async def handle(mentions: list[MentionIngested]) -> asyncio.Future[None]:
        calls.append([m.id for m in mentions])
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if len(calls) == 1:
            done.set_exception(ConnectionError("KV write refused"))
        else:
            done.set_result(None)
        return done

    for n in range(3):
        await publish_raw(js, f"m{n}", mention(f"m{n}"))
    consumer = make_consumer(nc, handle, metrics)
    await consumer.start(nc)
    try:
        await settled(js)
    finally:
        await consumer.stop()
    assert calls[0] == ["m0", "m1", "m2"]
    assert sorted(calls[1:]) == [["m0"], ["m1"], ["m2"]]
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "ok")._value.get() == 3
    assert (await js.stream_info(bus.DEADLETTER.name)).state.messages == 0


async def test_batches_waiting_past_max_waiting_keep_their_slot_and_fetching_stops(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """With room for one waiting message and one slot, a third batch is fetched only once a wait ends."""
    metrics = ServiceMetrics("probe")
    probe = Waiting()
    batches, waits = probe.batches, probe.waits

    async with probe.consuming(nc, metrics, concurrency=1, max_waiting=1):
        await publish_raw(js, "one", mention("one"))
        await _until(lambda: len(batches) == 1)  # waits without its slot (1 message waiting: the room)
        await publish_raw(js, "two", mention("two"))
        await _until(lambda: len(batches) == 2)  # waits holding the only slot
        await publish_raw(js, "three", mention("three"))
        await asyncio.sleep(1.0)  # time for a third fetch (fetches time out after 0.3 s), were the loop free
        assert batches == [["one"], ["two"]]
        waits[1].set_result(None)  # the batch that kept the slot: done, acked, the slot back
        await _until(lambda: len(batches) == 3)
        assert batches[2] == ["three"]
        waits[0].set_result(None)
        waits[2].set_result(None)
        await settled(js)
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "ok")._value.get() == 3


async def test_once_a_batch_has_waited_too_long_the_next_ones_keep_their_slot(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """A write that stalls (a wait past ``max_waiting_seconds``) stops fetching, however few messages wait."""
    metrics = ServiceMetrics("probe")
    probe = Waiting()
    batches, waits = probe.batches, probe.waits

    async with probe.consuming(nc, metrics, concurrency=1, max_waiting_seconds=0.2):
        await publish_raw(js, "one", mention("one"))
        await _until(lambda: len(batches) == 1)  # waits without its slot
        await asyncio.sleep(0.5)  # now it has waited past max_waiting_seconds
        await publish_raw(js, "two", mention("two"))
        await _until(lambda: len(batches) == 2)  # keeps the only slot
        await publish_raw(js, "three", mention("three"))
        await asyncio.sleep(1.0)  # time for a third fetch (fetches time out after 0.3 s), were the loop free
        assert batches == [["one"], ["two"]]
        waits[0].set_result(None)
        waits[1].set_result(None)
        await _until(lambda: len(batches) == 3)
        waits[2].set_result(None)
        await settled(js)
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "ok")._value.get() == 3


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def _until_acked(js: JetStreamContext, unacked: int, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await _unacked(js) != unacked:
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _trickle(js: JetStreamContext, prefix: str, count: int, gap: float) -> None:
    for i in range(count):
        await publish_raw(js, f"{prefix}-{i}", mention(f"{prefix}-{i}"))
        await asyncio.sleep(gap)


async def test_a_consumer_that_has_caught_up_takes_a_trickle_in_whole_batches_when_it_lingers(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """Five mentions 50 ms apart: one batch with a linger (handed over once whole, long before the linger ends),
    several without."""
    metrics = ServiceMetrics("probe")
    lingering = Waiting()
    async with lingering.consuming(nc, metrics, batch_size=5, linger=60.0):
        await _trickle(js, "slow", 5, 0.05)
        await _until(lambda: len(lingering.batches) == 1, timeout=20)
        assert lingering.batches == [[f"slow-{i}" for i in range(5)]]
    plain = Waiting()
    async with plain.consuming(nc, metrics, batch_size=5):
        await _trickle(js, "plain", 5, 0.05)
        await _until(lambda: sum(map(len, plain.batches)) == 5)
        assert len(plain.batches) > 1, plain.batches
    await settled(js)


async def test_mentions_that_came_while_a_batch_was_handled_are_handed_over_without_lingering(
    nc: NatsClient, js: JetStreamContext
) -> None:
    """The consumer is behind (two mentions in hand as a fetch begins): they go at once, even with a long linger."""
    metrics = ServiceMetrics("probe")
    probe = Waiting()
    # one slot, kept while its batch waits (max_waiting=0): the next fetch begins only once the first batch is done;
    # the pull request made ahead lasts 2 s (fetch_timeout), so the later mentions are delivered while it waits
    options = {"batch_size": 3, "linger": 60.0, "concurrency": 1, "max_waiting": 0, "fetch_timeout": 2.0}
    async with probe.consuming(nc, metrics, **options) as consumer:
        for i in range(3):
            await publish_raw(js, f"first-{i}", mention(f"first-{i}"))
        await _until(lambda: len(probe.batches) == 1)
        for i in range(2):
            await publish_raw(js, f"later-{i}", mention(f"later-{i}"))
        fetcher = consumer._fetcher
        assert fetcher is not None
        await _until(lambda: len(fetcher._buffer) == 2)  # in hand while the first batch waits
        probe.waits[0].set_result(None)
        # before the rule, the fetch lingered for a third mention: 60 s
        await _until(lambda: len(probe.batches) == 2, timeout=20)
        assert probe.batches == [[f"first-{i}" for i in range(3)], ["later-0", "later-1"]]
        probe.waits[1].set_result(None)
        await settled(js)


async def test_stopping_hands_a_lingering_batch_over_and_acks_it(nc: NatsClient, js: JetStreamContext) -> None:
    """A fetch lingering for a whole batch (60 s) when the consumer stops: the mention in hand is handled and acked,
    and the stop does not wait for the linger to end."""
    metrics = ServiceMetrics("probe")
    handled: list[str] = []

    async def handler(mentions: list[MentionIngested]) -> None:
        handled.extend(m.id for m in mentions)

    consumer = make_consumer(nc, handler, metrics, batch_size=5, linger=60.0)
    await consumer.start(nc)
    try:
        await publish_raw(js, "alone", mention("alone"))
        fetcher = consumer._fetcher
        assert fetcher is not None
        await _until(lambda: len(fetcher._buffer) == 1)  # in hand, the fetch lingering for four more
    finally:
        await asyncio.wait_for(consumer.stop(), 20)  # before: up to the linger's 60 s
    assert handled == ["alone"]
    await settled(js)
