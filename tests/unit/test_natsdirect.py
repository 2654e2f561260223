"""The direct path for hot subscriptions parses the NATS protocol exactly as nats-py does.

The same protocol bytes, cut into chunks at every place a socket read could cut them, go through nats-py's own
parser and through :class:`veille.natsdirect.DirectParser`: the messages (with their parsed headers) and the
other protocol lines must come out the same, in the same order, whichever path a subscription takes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.js.errors import APIError, BadRequestError, ServiceUnavailableError
from nats.protocol.parser import Parser

from veille import natsdirect
from veille.jetstream import StreamPublisher

DIRECT_SID = 7  # a Msg handler
RAW_SID = 8  # a raw (subject, payload, headers) handler
QUEUED_SID = 9  # an ordinary nats-py subscription: through Client._process_msg
ACK = "$JS.ACK.S.C.1.1.1.0.0"


def _msg(subject: str, sid: int, payload: bytes, reply: str = "") -> bytes:
    middle = f" {reply}" if reply else ""
    return f"MSG {subject} {sid}{middle} {len(payload)}\r\n".encode() + payload + b"\r\n"


def _hmsg(subject: str, sid: int, headers: bytes, payload: bytes, reply: str = "") -> bytes:
    middle = f" {reply}" if reply else ""
    size = len(headers) + len(payload)
    return f"HMSG {subject} {sid}{middle} {len(headers)} {size}\r\n".encode() + headers + payload + b"\r\n"


WIRE = b"".join(
    [
        b"INFO " + json.dumps({"server_id": "x", "max_payload": 1048576}).encode() + b"\r\n",
        _msg("_INBOX.a.1", RAW_SID, b'{"stream":"S","seq":1}'),
        _hmsg(
            "veille.alerts.w",
            DIRECT_SID,
            b"NATS/1.0\r\nNats-Msg-Id: a-1\r\n\r\n",
            b'{"id":"a-1"}',
            "$JS.ACK.S.C.1.1.1.0.0",
        ),
        b"PING\r\n",
        _msg("x.y", QUEUED_SID, b"payload with \r\nMSG x 1 3\r\n inside"),
        _hmsg("veille.alerts.w", DIRECT_SID, b"NATS/1.0\r\nA: 1\r\nB:2\r\nBad Name: 3\r\nno colon\r\n\r\n", b""),
        b"+OK\r\n",
        _hmsg("_INBOX.f.2", DIRECT_SID, b"NATS/1.0 404 No Messages\r\n\r\n", b""),
        _hmsg("_INBOX.f.2", DIRECT_SID, b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\n\r\n", b""),
        _hmsg("_INBOX.a.2", RAW_SID, b"NATS/1.0 503\r\n\r\n", b""),
        b"PONG\r\n",
        _msg("_INBOX.a.3", RAW_SID, b""),
        _hmsg("h", QUEUED_SID, b"NATS/1.0\r\nK: v\xff\r\n\r\n", b"\x00\x01"),
        b"-ERR 'Permissions Violation for Subscription to x'\r\n",
        _hmsg("veille.alerts.w", DIRECT_SID, b"NATS/1.0\r\n\r\n", b"x" * 300),
        _msg("gone", 99, b"no subscription"),
    ]
)


class Recorder(Client):
    """A real nats-py client, never connected, recording what its parser hands it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[Any, ...]] = []
        for sid in (DIRECT_SID, RAW_SID, QUEUED_SID):
            self._subs[sid] = Subscription(self, sid, "s")

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        if sid not in self._subs:
            return
        parsed = await self._process_headers(headers)
        self.events.append(("msg", sid, subject.decode(), reply.decode(), data, parsed))

    async def _process_ping(self) -> None:
        self.events.append(("ping",))

    async def _process_pong(self) -> None:
        self.events.append(("pong",))

    async def _process_info(self, info: dict[str, Any], initial_connection: bool = False) -> None:
        self.events.append(("info", info))

    async def _process_err(self, err_msg: str) -> None:
        self.events.append(("err", err_msg))


def _direct_client() -> Recorder:
    client = Recorder()

    def on_msg(msg: Msg) -> None:
        client.events.append(("msg", msg._sid, msg.subject, msg.reply, msg.data, msg.headers))

    def on_raw(subject: bytes, payload: bytes, headers: dict[str, str] | None) -> None:
        client.events.append(("msg", RAW_SID, subject.decode(), "", payload, headers))

    assert natsdirect.register(client, client._subs[DIRECT_SID], on_msg)
    assert natsdirect.register(client, client._subs[RAW_SID], on_raw, raw=True)
    assert type(client._ps) is natsdirect.DirectParser
    return client


async def _feed(client: Recorder, chunks: list[bytes]) -> list[tuple[Any, ...]]:
    for chunk in chunks:
        await client._ps.parse(chunk)
    return client.events


def _cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def test_every_message_and_line_comes_out_as_nats_py_gives_it_in_order() -> None:
    async def run() -> None:
        stock = Recorder()
        expected = await _feed(stock, [WIRE])
        assert type(stock._ps) is Parser
        kinds = [e[0] for e in expected]
        assert kinds.count("msg") == 10  # the message to sid 99 has no subscription: dropped by both
        assert {"ping", "pong", "info", "err"} <= set(kinds)
        assert ("msg", RAW_SID, "_INBOX.a.2", "", b"", {"Status": "503"}) in expected
        direct = _direct_client()
        assert await _feed(direct, [WIRE]) == expected
        assert direct.stats["in_msgs"] == stock.stats["in_msgs"] == 11
        assert direct.stats["in_bytes"] == stock.stats["in_bytes"]
        assert direct._subs[DIRECT_SID]._received == 5  # counted as nats-py counts it
        for cut in range(1, len(WIRE)):  # a socket read may end anywhere
            assert await _feed(_direct_client(), _cut(WIRE, [cut])) == expected, cut
        rng = random.Random(17)
        for _ in range(200):
            points = rng.sample(range(1, len(WIRE)), rng.randint(2, 40))
            assert await _feed(_direct_client(), _cut(WIRE, points)) == expected

    asyncio.run(run())


def test_a_handler_that_fails_is_reported_outside_the_read_loop_and_the_next_messages_still_arrive() -> None:
    async def run() -> None:
        client = Recorder()
        errors: list[BaseException] = []

        async def on_error(exc: BaseException) -> None:
            errors.append(exc)
            await asyncio.sleep(0.05)  # an error callback that waits (a flush, a request) must not hold the parser
            raise RuntimeError("the error callback fails too")

        client._error_cb = on_error
        seen: list[bytes] = []

        def handler(msg: Msg) -> None:
            if msg.data == b"bad":
                raise ValueError("bad message")
            seen.append(msg.data)

        natsdirect.register(client, client._subs[DIRECT_SID], handler)
        await client._ps.parse(b"".join(_msg("s", DIRECT_SID, data) for data in (b"one", b"bad", b"two")))
        assert seen == [b"one", b"two"]  # parsed to the end before the report ran
        await client._ps.parse(b"PING\r\n")
        assert client.events == [("ping",)]
        await asyncio.sleep(0.2)
        assert [str(e) for e in errors] == ["bad message"]
        assert not natsdirect._REPORTS

    asyncio.run(run())


def test_subscriptions_nats_py_must_see_each_message_of_are_not_made_direct() -> None:
    async def run() -> None:
        client = Recorder()
        counted = Subscription(client, 20, "s", max_msgs=3)
        answered = Subscription(client, 21, "s", future=asyncio.get_running_loop().create_future())
        for sub in (counted, answered):
            client._subs[sub._id] = sub
            assert not natsdirect.register(client, sub, lambda msg: None)
        assert natsdirect.register(client, client._subs[DIRECT_SID], lambda msg: None)
        del client._subs[DIRECT_SID]  # unsubscribed (a drain, a close) without unregister
        assert natsdirect.register(client, client._subs[RAW_SID], lambda *_: None, raw=True)
        assert set(client._ps.direct) == {RAW_SID}  # type: ignore[attr-defined]

    asyncio.run(run())


def test_unregistered_and_unsubscribed_subscriptions_take_nats_py_s_path_or_are_dropped() -> None:
    async def run() -> None:
        client = Recorder()
        seen: list[bytes] = []
        sub = client._subs[DIRECT_SID]
        natsdirect.register(client, sub, lambda msg: seen.append(msg.data))
        natsdirect.unregister(client, sub)
        await client._ps.parse(_msg("s", DIRECT_SID, b"queued"))
        assert seen == []
        assert client.events == [("msg", DIRECT_SID, "s", "", b"queued", None)]
        natsdirect.register(client, sub, lambda msg: seen.append(msg.data))
        del client._subs[DIRECT_SID]  # unsubscribed by nats-py: what still arrives is dropped
        await client._ps.parse(_msg("s", DIRECT_SID, b"late"))
        assert seen == []
        assert DIRECT_SID not in client._ps.direct  # type: ignore[attr-defined]

    asyncio.run(run())


def test_garbage_on_the_wire_is_the_same_protocol_error() -> None:
    async def run() -> None:
        for wire in (b"WHAT is this\r\n", b"MSG subject notanumber 3\r\nabc\r\n", b"HMSG s 7 x y\r\n"):
            with pytest.raises(ProtocolError):
                await Recorder()._ps.parse(wire)
            with pytest.raises(ProtocolError):
                await _direct_client()._ps.parse(wire)

    asyncio.run(run())


def test_a_client_whose_parser_is_not_nats_py_s_keeps_its_callbacks() -> None:
    client = Recorder()
    client._ps = object()  # type: ignore[assignment]
    assert not natsdirect.register(client, client._subs[DIRECT_SID], lambda msg: None)


def test_a_nats_py_release_it_was_not_compared_with_keeps_nats_py_s_own_path(monkeypatch: pytest.MonkeyPatch) -> None:
    assert natsdirect._SUPPORTED, "the installed nats-py is one this module was compared with"
    monkeypatch.setattr(natsdirect, "_SUPPORTED", False)
    client = Recorder()
    assert not natsdirect.register(client, client._subs[DIRECT_SID], lambda msg: None)
    assert type(client._ps) is Parser


_HEADER_BYTES = st.lists(
    st.one_of(
        st.sampled_from(
            [b"Nats-Msg-Id", b"A", b" Padded ", b"Bad Name", b"Tab\tName", b"Sep\x1cName", b"\xc3\xa9t\xc3\xa9"]
        ),
        st.binary(max_size=12),
    ).flatmap(
        lambda name: st.tuples(st.just(name), st.sampled_from([b": ", b":", b"", b" : "]), st.binary(max_size=16))
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None)
@given(_HEADER_BYTES)
def test_plain_header_blocks_parse_as_nats_py_parses_them(lines: list[tuple[bytes, bytes, bytes]]) -> None:
    body = b"".join(name + sep + value.replace(b"\r\n", b" ") + b"\r\n" for name, sep, value in lines)
    raw = b"NATS/1.0\r\n" + body + b"\r\n"
    expected = asyncio.run(Client()._process_headers(raw))
    assert natsdirect.parse_headers(raw) == expected


def test_a_stream_error_of_an_unknown_shape_still_fails_its_publish() -> None:
    async def run() -> None:
        publisher = StreamPublisher()
        publisher._prefix = "_INBOX.p."
        loop = asyncio.get_running_loop()
        replies = {
            1: b'{"error":{"description":"no code"}}',
            2: b'{"error":{"code":400,"description":"bad","extra":1}}',
            3: b'{"error":{"code":503,"err_code":10039,"description":"unavailable","extra":1}}',
            4: b'{"error":"just text"}',
            5: b'{"stream":"S","seq":5}',
        }
        futures = {i: loop.create_future() for i in replies}
        publisher._pending.update(futures)
        for i, data in replies.items():
            publisher._reply(f"_INBOX.p.{i}".encode(), data, None)
        publisher._reply(b"_INBOX.p.x", b"not ours", None)
        for i in (1, 4):
            with pytest.raises(APIError):
                futures[i].result()
        with pytest.raises(BadRequestError):
            futures[2].result()
        with pytest.raises(ServiceUnavailableError) as unavailable:
            futures[3].result()
        assert unavailable.value.err_code == 10039
        assert futures[5].result() == replies[5]
        assert publisher.in_flight == 0

    asyncio.run(run())


def test_handler_errors_are_reported_even_when_the_error_callback_is_not_a_coroutine_or_is_swamped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        client = Recorder()
        client._error_cb = lambda exc: None  # type: ignore[assignment,return-value]
        seen: list[bytes] = []

        def handler(msg: Msg) -> None:
            seen.append(msg.data)
            raise ValueError("always")

        natsdirect.register(client, client._subs[DIRECT_SID], handler)
        await client._ps.parse(b"".join(_msg("s", DIRECT_SID, data) for data in (b"one", b"two")))
        assert seen == [b"one", b"two"]

        slow = Recorder()
        release = asyncio.Event()

        async def waits(exc: BaseException) -> None:
            await release.wait()

        slow._error_cb = waits
        monkeypatch.setattr(natsdirect, "MAX_REPORTS", 5)
        natsdirect.register(slow, slow._subs[DIRECT_SID], handler)
        await slow._ps.parse(b"".join(_msg("s", DIRECT_SID, b"%d" % i) for i in range(50)))
        assert len(natsdirect._REPORTS) == 5  # the rest only logged: nothing piles up
        release.set()
        await asyncio.sleep(0.05)
        assert not natsdirect._REPORTS

    asyncio.run(run())
