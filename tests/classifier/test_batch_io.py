"""The classifier's batch writes on a real nats-server: a batch's publishes and acks in one write each.

``StreamPublisher.publish_many`` must store exactly what one ``js.publish`` per message stores
(subject, payload, ``Nats-Msg-Id`` header, the stream's duplicate detection) and refuse a batch it
cannot send whole before sending any of it; ``ack_all`` must ack every message as ``Msg.ack`` does.
"""

from __future__ import annotations

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import BadSubjectError, MaxPayloadError, MsgAlreadyAckdError, NotJSMessageError
from nats.js import JetStreamContext

from veille import bus
from veille.jetstream import StreamPublisher, pub_ack
from veille.messaging import ack_all, ack_batch, gather_publishes
from veille.natsserver import NatsServerProcess


async def stored(js: JetStreamContext, stream: str) -> list[tuple[str, bytes, str | None]]:
    """(subject, payload, Nats-Msg-Id) of every message in ``stream``, in order."""
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(stream, seq)
        out.append((msg.subject, msg.data or b"", (msg.headers or {}).get("Nats-Msg-Id")))
    return out


async def test_publish_many_stores_each_message_with_its_id(nc: NatsClient, js: JetStreamContext) -> None:
    publisher = StreamPublisher()
    await publisher.start(nc)
    rss, bsky = bus.classified_subject("rss"), bus.classified_subject("bluesky")
    batch: list[tuple[str, bytes, dict[str, str] | None]] = [
        (rss, b'{"n": 1}', {"Nats-Msg-Id": "m1"}),
        (bsky, b'{"n": 2}', {"Nats-Msg-Id": " m2 "}),  # stripped, as nats-py does
        (rss, b'{"n": 3}', None),
    ]
    acks = [pub_ack(raw) for raw in await gather_publishes(await publisher.publish_many(batch))]
    assert [ack.seq for ack in acks] == [1, 2, 3]
    assert [ack.stream for ack in acks] == [bus.CLASSIFIED.name] * 3
    assert not any(ack.duplicate for ack in acks)

    # The same ids again: the stream recognises them; a new one is stored.
    again = await publisher.publish_many(
        [(rss, b'{"n": 1}', {"Nats-Msg-Id": "m1"}), (rss, b"{}", {"Nats-Msg-Id": "m4"})]
    )
    acks = [pub_ack(raw) for raw in await gather_publishes(again)]
    assert [bool(ack.duplicate) for ack in acks] == [True, False]
    assert await stored(js, bus.CLASSIFIED.name) == [
        (rss, b'{"n": 1}', "m1"),
        (bsky, b'{"n": 2}', "m2"),
        (rss, b'{"n": 3}', None),
        (rss, b"{}", "m4"),
    ]
    assert publisher.in_flight == 0
    await publisher.stop()


async def test_a_batch_that_cannot_be_sent_whole_sends_nothing(nc: NatsClient, js: JetStreamContext) -> None:
    publisher = StreamPublisher()
    await publisher.start(nc)
    rss = bus.classified_subject("rss")
    with pytest.raises(MaxPayloadError):
        await publisher.publish_many([(rss, b"{}", {"Nats-Msg-Id": "a"}), (rss, b"x" * (nc.max_payload + 1), None)])
    # Under max_payload alone, over it with its headers: nats-server would close the connection on it.
    with pytest.raises(MaxPayloadError):
        await publisher.publish_many([(rss, b"x" * (nc.max_payload - 10), {"Nats-Msg-Id": "a"})])
    with pytest.raises(BadSubjectError):
        await publisher.publish_many(
            [(rss, b"{}", {"Nats-Msg-Id": "b"}), ("veille.mentions.classified.a b", b"{}", None)]
        )
    assert publisher.in_flight == 0
    ack = pub_ack((await gather_publishes(await publisher.publish_many([(rss, b"{}", {"Nats-Msg-Id": "c"})])))[0])
    assert ack.seq == 1  # nothing of the refused batches reached the stream
    await publisher.stop()


async def test_ack_all_acks_every_message(nc: NatsClient, js: JetStreamContext) -> None:
    for i in range(5):
        await js.publish(bus.mention_subject("rss"), b"{}", headers={"Nats-Msg-Id": f"m{i}"})
    sub = await js.pull_subscribe(bus.mention_subject("rss"), durable="probe-acks", stream=bus.MENTIONS.name)
    msgs = await sub.fetch(5, timeout=5)
    assert len(msgs) == 5
    await ack_all(nc, msgs[:4])
    await nc.flush()
    info = await js.consumer_info(bus.MENTIONS.name, "probe-acks")
    assert info.num_ack_pending == 1  # the fifth, not in the call
    assert info.ack_floor.stream_seq == 4
    with pytest.raises(MsgAlreadyAckdError):
        await ack_all(nc, [msgs[4], msgs[0]])  # refused whole: the fifth is not acked either
    await nc.flush()
    assert (await js.consumer_info(bus.MENTIONS.name, "probe-acks")).num_ack_pending == 1
    plain = await nc.subscribe("probe.plain")
    await nc.publish("probe.plain", b"x")
    not_jetstream = await plain.next_msg(timeout=5)
    with pytest.raises(NotJSMessageError):
        await ack_all(nc, [msgs[4], not_jetstream])
    await ack_all(nc, [msgs[4]])
    await nc.flush()
    assert (await js.consumer_info(bus.MENTIONS.name, "probe-acks")).num_ack_pending == 0


class Tally:
    """Stands in for a metric's counter: what was added to it."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


async def test_ack_batch_acks_in_one_write_and_counts_what_a_lost_connection_left_unacked(
    nc: NatsClient, js: JetStreamContext, nats_server: NatsServerProcess
) -> None:
    for i in range(6):
        await js.publish(bus.mention_subject("rss"), b"{}", headers={"Nats-Msg-Id": f"m{i}"})
    sub = await js.pull_subscribe(bus.mention_subject("rss"), durable="probe-batch-acks", stream=bus.MENTIONS.name)
    msgs = await sub.fetch(3, timeout=5)
    failed = Tally()
    assert await ack_batch(nc, msgs, "probe", failed) == 0
    await nc.flush()
    assert (await js.consumer_info(bus.MENTIONS.name, "probe-batch-acks")).ack_floor.stream_seq == 3
    # A second service instance whose connection is gone by the time its batch is handled.
    other = await nats.connect(nats_server.url)
    lost = await (await other.jetstream().pull_subscribe_bind("probe-batch-acks", stream=bus.MENTIONS.name)).fetch(
        3, timeout=5
    )
    await other.close()
    assert await ack_batch(other, lost, "probe", failed) == 3
    assert failed.value == 3
    info = await js.consumer_info(bus.MENTIONS.name, "probe-batch-acks")
    assert info.num_ack_pending == 3 and info.ack_floor.stream_seq == 3  # left for redelivery, not lost
