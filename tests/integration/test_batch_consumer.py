"""The batch consumer on a real nats-server: poison dead-lettered, failures isolated, stop acks what it did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
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
    handler: Callable[[list[MentionIngested]], Awaitable[None]],
    metrics: ServiceMetrics,
    **options: Any,
) -> BatchConsumer[MentionIngested]:
    """A batch consumer of the mentions stream for the ``probe`` service."""
    sink = DeadLetterSink("probe", metrics)
    sink.bind(nc)
    return BatchConsumer(
        service="probe",
        consumer=CONSUMER,
        model=MentionIngested,
        handler=handler,
        metrics=metrics,
        sink=sink,
        fetch_timeout=0.3,
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
