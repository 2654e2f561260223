"""Poison messages on a real nats-server: dead-lettered with their reason, and the consumer goes on."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

from faststream import AckPolicy
from faststream.nats import JStream, PullSub
from nats.js import JetStreamContext

from tests.helpers.deadletters import dead_letters
from veille import bus
from veille.messaging import DeadLetterSink, dead_letter_middleware, make_broker
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested
from veille.natsserver import NatsServerProcess
from veille.settings import ServiceSettings


async def test_poison_messages_are_dead_lettered_and_valid_ones_processed(
    nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """Not-JSON, too deeply nested, wrong-schema, non-UTF-8 and oversized payloads each become a dead letter."""
    metrics = ServiceMetrics("probe")
    sink = DeadLetterSink("probe", metrics)
    middleware = dead_letter_middleware("probe", bus.MENTIONS.name, metrics, sink, max_bytes=64 * 1024)
    broker = make_broker(ServiceSettings(nats_url=nats_server.url), "probe", metrics, middlewares=(middleware,))
    seen: list[str] = []
    handled = asyncio.Event()

    @broker.subscriber(
        "veille.mentions.ingested.>",
        stream=JStream(bus.MENTIONS.name, declare=False),
        durable="probe",
        pull_sub=PullSub(batch_size=10, timeout=0.5),
        ack_policy=AckPolicy.MANUAL,
    )
    async def handle(mention: MentionIngested) -> None:
        seen.append(mention.id)
        handled.set()

    await broker.connect()
    sink.bind(broker.connection)
    await broker.start()
    try:
        good = MentionIngested(id="rss:1", source="rss", text="hello").model_dump_json().encode()
        await js.publish("veille.mentions.ingested.rss", b"this is not json", headers={"Nats-Msg-Id": "bad-1"})
        await js.publish("veille.mentions.ingested.rss", b'{"id": 42, "text": []}', headers={"Nats-Msg-Id": "bad-2"})
        await js.publish("veille.mentions.ingested.rss", b'{"id": "x\xff\xfe"}', headers={"Nats-Msg-Id": "bad-3"})
        await js.publish("veille.mentions.ingested.rss", b"[1, 2, 3]", headers={"Nats-Msg-Id": "bad-4"})
        huge = json.dumps({"id": "big", "source": "rss", "text": "x" * 200_000}).encode()
        await js.publish("veille.mentions.ingested.rss", huge, headers={"Nats-Msg-Id": "bad-5"})
        nested = b"[" * 30_000  # 30 kB of nesting: Python's json gives up with RecursionError
        await js.publish("veille.mentions.ingested.rss", nested, headers={"Nats-Msg-Id": "bad-6"})
        await js.publish("veille.mentions.ingested.rss", good, headers={"Nats-Msg-Id": "rss:1"})
        letters = await dead_letters(js, 6)
        # The valid message comes last: the dead letters can all be in before it is handled.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(handled.wait(), 15)
    finally:
        await broker.stop()

    kinds = {letter.headers.get("Nats-Msg-Id"): letter.error_kind for letter in letters}
    assert kinds == {
        "bad-1": "invalid_json",
        "bad-2": "invalid_schema",
        "bad-3": "invalid_utf8",
        "bad-4": "invalid_schema",
        "bad-5": "too_large",
        "bad-6": "invalid_json",
    }
    by_id = {letter.headers["Nats-Msg-Id"]: letter for letter in letters}
    assert base64.b64decode(by_id["bad-1"].payload) == b"this is not json"
    assert "id" in by_id["bad-2"].reason and "not a valid message" in by_id["bad-2"].reason
    assert seen == ["rss:1"]
    assert "nested too deeply" in by_id["bad-6"].reason
    assert metrics.dead_letters.labels("probe", "invalid_json")._value.get() == 2
    info = await js.consumer_info(bus.MENTIONS.name, "probe")
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_a_failing_handler_is_retried_then_dead_lettered(
    nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """A handler that keeps failing is retried with a delay, then the message is kept as a dead letter."""
    metrics = ServiceMetrics("probe")
    sink = DeadLetterSink("probe", metrics)
    middleware = dead_letter_middleware("probe", bus.MENTIONS.name, metrics, sink, max_attempts=2)
    broker = make_broker(ServiceSettings(nats_url=nats_server.url), "probe", metrics, middlewares=(middleware,))
    calls: list[str] = []

    @broker.subscriber(
        "veille.mentions.ingested.>",
        stream=JStream(bus.MENTIONS.name, declare=False),
        durable="probe2",
        pull_sub=PullSub(batch_size=10, timeout=0.5),
        ack_policy=AckPolicy.MANUAL,
    )
    async def handle(mention: MentionIngested) -> None:
        calls.append(mention.id)
        if mention.id == "rss:flaky" and calls.count("rss:flaky") == 1:
            raise ConnectionError("downstream hiccup")
        if mention.id == "rss:broken":
            raise RuntimeError("always fails")

    await broker.connect()
    sink.bind(broker.connection)
    await broker.start()
    try:
        for mention_id in ("rss:flaky", "rss:broken"):
            body = MentionIngested(id=mention_id, source="rss").model_dump_json().encode()
            await js.publish("veille.mentions.ingested.rss", body, headers={"Nats-Msg-Id": mention_id})
        letters = await dead_letters(js, 1, timeout=20)
    finally:
        await broker.stop()
    assert calls.count("rss:flaky") == 2, "retried once, then processed"
    assert [letter.error_kind for letter in letters] == ["processing_failed"]
    assert "always fails" in letters[0].reason and letters[0].attempts == 2
    assert metrics.messages.labels("probe", bus.MENTIONS.name, "retried")._value.get() >= 2
