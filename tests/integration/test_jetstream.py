"""The lean JetStream publisher and pull fetcher on a real nats-server: acks, errors, order, nak on stop."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError

from veille import natsdirect
from veille.jetstream import PullFetcher, StreamPublisher, pub_ack

STREAM = "PROBE"


@pytest.fixture
async def stream(js: JetStreamContext) -> str:
    """A probe stream ``PROBE`` on ``probe.>`` with a durable explicit-ack consumer ``reader``."""
    await js.add_stream(StreamConfig(name=STREAM, subjects=["probe.>"]))
    await js.add_consumer(
        STREAM,
        ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.EXPLICIT, ack_wait=120.0, max_ack_pending=1000),
    )
    return STREAM


async def test_publisher_resolves_each_stream_ack_and_flags_duplicates(nc: NatsClient, stream: str) -> None:
    publisher = StreamPublisher()
    await publisher.start(nc)
    futures = [await publisher.publish("probe.a", f"m{i}".encode(), {"Nats-Msg-Id": f"id-{i}"}) for i in range(300)]
    again = await publisher.publish("probe.a", b"m7 again", {"Nats-Msg-Id": "id-7"})
    acks = [pub_ack(raw) for raw in await asyncio.gather(*futures, again)]
    assert [ack.seq for ack in acks[:300]] == list(range(1, 301))
    assert all(ack.stream == STREAM and not ack.duplicate for ack in acks[:300])
    assert acks[300].duplicate and acks[300].seq == 8
    assert publisher.in_flight == 0
    info = await nc.jetstream().stream_info(STREAM)
    assert info.state.messages == 300
    await publisher.stop()


async def test_publisher_fails_a_publish_no_stream_takes(nc: NatsClient, stream: str) -> None:
    publisher = StreamPublisher()
    await publisher.start(nc)
    no_stream = await publisher.publish("nowhere.at.all", b"lost?")
    with pytest.raises(NoStreamResponseError):
        await asyncio.wait_for(no_stream, 10)
    wrong_stream = await publisher.publish("probe.a", b"x", {"Nats-Expected-Stream": "OTHER"})
    with pytest.raises(APIError):
        await asyncio.wait_for(wrong_stream, 10)
    fine = await publisher.publish("probe.a", b"y")
    assert pub_ack(await asyncio.wait_for(fine, 10)).seq == 1
    await publisher.stop()


async def test_fetcher_keeps_stream_order_across_batches(nc: NatsClient, js: JetStreamContext, stream: str) -> None:
    for i in range(1000):
        await js.publish("probe.a", str(i).encode())
    fetcher = PullFetcher(STREAM, "reader", expires=2.0)
    await fetcher.start(nc)
    seen: list[int] = []
    while len(seen) < 1000:
        msgs = await fetcher.fetch(128, timeout=10)
        assert 1 <= len(msgs) <= 128
        for msg in msgs:
            seen.append(int(msg.data))
            await msg.ack()
    assert seen == list(range(1000))
    with pytest.raises(TimeoutError):
        await fetcher.fetch(128, timeout=0.3)
    await fetcher.stop()
    info = await js.consumer_info(STREAM, "reader")
    assert info.num_pending == 0 and info.num_ack_pending == 0


async def test_fetcher_hands_out_a_message_without_waiting_for_a_full_batch(
    nc: NatsClient, js: JetStreamContext, stream: str
) -> None:
    fetcher = PullFetcher(STREAM, "reader", expires=60.0)
    await fetcher.start(nc)
    waiting = asyncio.create_task(fetcher.fetch(500, timeout=60))
    for _ in range(1000):  # until the pull request is out
        if fetcher.requested:
            break
        await asyncio.sleep(0.01)
    await js.publish("probe.a", b"alone")
    msgs = await waiting
    assert [m.data for m in msgs] == [b"alone"]
    # Returned with its pull request still open on the server (499 still due): it did not wait
    # for the batch to fill or for the request to expire.
    assert fetcher.requested == 499
    await msgs[0].ack()
    await fetcher.stop()


async def test_stopping_naks_what_was_delivered_but_not_handed_out(
    nc: NatsClient, js: JetStreamContext, stream: str
) -> None:
    for i in range(10):
        await js.publish("probe.a", str(i).encode())
    fetcher = PullFetcher(STREAM, "reader", expires=5.0)
    await fetcher.start(nc)
    first = await fetcher.fetch(1, timeout=10)
    await first[0].ack()
    for _ in range(1000):  # until the second one, requested ahead, has arrived
        if len(fetcher):
            break
        await asyncio.sleep(0.01)
    held = len(fetcher)
    await fetcher.stop()
    # The consumer's ack_wait is two minutes: only the naks make these come back now.
    again = PullFetcher(STREAM, "reader", expires=5.0)
    await again.start(nc)
    rest: list[int] = []
    while len(rest) < 9:
        for msg in await again.fetch(20, timeout=10):
            rest.append(int(msg.data))
            await msg.ack()
    assert sorted(rest) == list(range(1, 10))
    assert held >= 1
    await again.stop()


async def test_the_hot_paths_skip_nats_py_s_queue_and_the_connection_still_works_for_the_rest(
    nc: NatsClient, js: JetStreamContext, stream: str
) -> None:
    """Publisher acks and fetched messages take the direct path (veille.natsdirect); an ordinary subscription,
    flushes (PING/PONG) and requests on the same connection, between them, work as before and nothing is reordered."""
    publisher = StreamPublisher()
    await publisher.start(nc)
    fetcher = PullFetcher(STREAM, "reader", expires=2.0)
    await fetcher.start(nc)
    assert type(nc._ps) is natsdirect.DirectParser
    ordinary: list[bytes] = []

    async def on_ordinary(msg: Msg) -> None:
        ordinary.append(msg.data)

    sub = await nc.subscribe("side.channel", cb=on_ordinary)
    received_before = nc.stats["in_msgs"]
    futures = []
    for i in range(600):
        futures += await publisher.publish_many([("probe.a", str(i).encode(), {"Nats-Msg-Id": f"h-{i}"})])
        if i % 50 == 0:
            await nc.publish("side.channel", str(i).encode())
            await nc.flush()  # a PING answered by a PONG, parsed between acks and deliveries
    acks = [pub_ack(raw) for raw in await asyncio.gather(*futures)]
    assert [ack.seq for ack in acks] == list(range(1, 601))
    seen: list[int] = []
    while len(seen) < 600:
        for msg in await fetcher.fetch(100, timeout=10):
            assert msg.headers == {"Nats-Msg-Id": f"h-{int(msg.data)}"}
            assert msg.reply.startswith("$JS.ACK.")
            seen.append(int(msg.data))
            await msg.ack()
    assert seen == list(range(600))
    assert (await js.stream_info(STREAM)).state.messages == 600  # a request/reply on the same connection
    await nc.flush()
    assert ordinary == [str(i).encode() for i in range(0, 600, 50)]
    assert nc.stats["in_msgs"] - received_before >= 600 + 600 + 12  # still counted as nats-py counts them
    await sub.unsubscribe()
    await fetcher.stop()
    await publisher.stop()
    assert not nc._ps.direct  # type: ignore[attr-defined]


async def _delivered(nc: NatsClient) -> None:
    """Wait until the messages published so far on ``nc`` came back and were parsed, by publishing a marker after them.

    Not ``nc.flush()``: nats-py writes its PING at once, ahead of publishes still waiting for its flusher task, so
    the PONG can come before their messages (a rare failure of the test below on a loaded machine)."""
    marker = await nc.subscribe(nc.new_inbox(), max_msgs=1)
    await nc.publish(marker.subject, b"")
    await marker.next_msg(timeout=10)


async def test_a_direct_subscription_given_a_limit_later_is_counted_down_and_removed_as_nats_py_does(
    nc: NatsClient,
) -> None:
    """``sub.unsubscribe(limit=3)`` on a direct subscription after one message: two more reach its callback, then
    it is gone, as with nats-py's own path (the server stops at the same count)."""
    through_callback: list[bytes] = []
    direct: list[bytes] = []

    async def callback(msg: Msg) -> None:
        through_callback.append(msg.data)

    sub = await nc.subscribe("limited", cb=callback)
    assert natsdirect.register(nc, sub, lambda msg: direct.append(msg.data))
    await nc.publish("limited", b"first")
    await _delivered(nc)
    assert direct == [b"first"]
    await sub.unsubscribe(limit=3)
    for i in range(5):
        await nc.publish("limited", b"%d" % i)
    await nc.flush()
    for _ in range(200):
        if len(through_callback) == 2:
            break
        await asyncio.sleep(0.01)
    await nc.flush()
    assert direct == [b"first"]
    assert through_callback == [b"0", b"1"]
    assert sub._id not in nc._subs
