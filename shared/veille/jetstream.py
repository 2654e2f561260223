"""Lean JetStream publishing and pulling for the hot paths, on a plain nats-py connection.

nats-py's ``JetStreamContext.publish_async`` and ``PullSubscription.fetch`` are correct but spend
more CPU per message than the classifier spends on some of its own work: ``fetch`` creates a task,
a timer and a UUID for every message it returns, ``publish_async`` a random token, a semaphore
round and a parsed ``PubAck`` for every stream ack. Measured on this project's 2-core machine
(``bench/classifier_bench.py`` and the notes in ``docs/benchmarks.md``): fetch + ack 23 µs of CPU
per message against 5 µs here; publish + stream ack 20 µs against 9 µs. At 5,000 mentions/s a
classifier has 200 µs per mention in all, so this is a sixth of its budget.

Both speak the documented JetStream protocol and nothing private of nats-py:

- :class:`StreamPublisher` publishes with a reply subject ``<inbox>.<n>`` under one wildcard
  subscription and resolves a future with the stream's raw ack (``{"stream": ..., "seq": ...}``);
  :func:`pub_ack` parses it when the caller needs it (an alert's ``duplicate`` flag). An error reply
  (``{"error": ...}``) or a ``503`` no-responders status (no stream for the subject) fails the future.
- :class:`PullFetcher` keeps pull requests (``$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>``,
  ``{"batch": n, "expires": t}``) outstanding for about one batch and buffers what the server
  delivers, the way the NATS clients' ``Consume`` does: a batch is usually in hand when the
  service asks for it (I/O overlaps CPU), and at a low rate a message is returned as soon as it
  arrives. Status messages (``404``, ``408``, ``409``) end their request; a request the server
  forgot (a restart) is dropped locally once past its expiry.

:func:`send_many` writes many already-built ``PUB``/``HPUB`` commands into the connection's outgoing
buffer at once (the NATS text protocol, the same bytes ``Client.publish`` writes one call at a time):
a batch's publishes (:meth:`StreamPublisher.publish_many`) and acks cost about a quarter of the CPU
of one ``publish`` each (``docs/benchmarks.md``, classifier). It is the one place that uses nats-py's
outgoing buffer directly (``_send_command``, ``_flush_pending``: what ``Client.publish`` calls).

Neither owns reconnection: the connection does (nats-py re-subscribes after a reconnect), and
what was in flight is covered by the callers' timeouts and JetStream's redelivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import deque
from collections.abc import Sequence

import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import (
    BadHeaderError,
    BadSubjectError,
    ConnectionClosedError,
    ConnectionDrainingError,
    MaxPayloadError,
    OutboundBufferLimitError,
)
from nats.js import api
from nats.js.errors import APIError, NoStreamResponseError

from veille import natsdirect

__all__ = ["PullFetcher", "StreamPublisher", "ack_command", "pub_ack", "publish_command", "send_many"]

log = structlog.get_logger("veille.jetstream")

_STATUS = "Status"


_SPACE = re.compile(r"\s")
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # as nats-py checks a header name
_HEADER_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


def _check_subject(subject: str) -> None:
    if not subject or _SPACE.search(subject):
        raise BadSubjectError


def publish_command(
    subject: str,
    payload: bytes,
    reply: str = "",
    headers: dict[str, str] | None = None,
    max_payload: int | None = None,
) -> bytes:
    """The protocol bytes of one publish (``PUB``, or ``HPUB`` with headers), as ``Client.publish`` writes them.

    Subject, reply and header names are checked as nats-py checks them (``BadSubjectError``,
    ``BadHeaderError``); header values are stripped and their line breaks made spaces. With ``max_payload``,
    a message over it raises ``MaxPayloadError``: the payload, then headers and payload together, as
    nats-server counts an ``HPUB`` (and closes a connection over it).
    """
    if max_payload is not None and len(payload) > max_payload:
        raise MaxPayloadError
    _check_subject(subject)
    if reply:
        _check_subject(reply)
    if headers is None:
        return b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(payload), payload)
    lines = ["NATS/1.0\r\n"]
    for name, value in headers.items():
        key = name.strip()
        if not key:
            continue
        if not _HEADER_KEY.fullmatch(key):
            raise BadHeaderError(key)
        lines.append(f"{key}: {value.strip().translate(_HEADER_NEWLINES)}\r\n")
    lines.append("\r\n")
    header = "".join(lines).encode()
    if max_payload is not None and len(header) + len(payload) > max_payload:
        raise MaxPayloadError
    return b"HPUB %s %s %d %d\r\n%s%s\r\n" % (
        subject.encode(),
        reply.encode(),
        len(header),
        len(header) + len(payload),
        header,
        payload,
    )


def ack_command(reply: str) -> bytes:
    """The protocol bytes of a JetStream ack (an empty publish to the message's reply subject)."""
    _check_subject(reply)
    return b"PUB %s 0\r\n\r\n" % reply.encode()


async def send_many(client: NatsClient, commands: Sequence[bytes], payload_bytes: int = 0) -> None:
    """Write built publish commands to the connection in one call, in order, and kick its flusher.

    Refused as ``Client.publish`` refuses one message (closed, draining, the reconnect buffer full);
    nothing is written then. ``payload_bytes`` only feeds the client's ``out_bytes`` statistic.
    """
    if not commands:
        return
    if client.is_closed:
        raise ConnectionClosedError
    if client.is_draining_pubs:
        raise ConnectionDrainingError
    data = b"".join(commands)
    if not client.is_connected:
        limit = client._max_pending_size
        if limit <= 0 or len(data) + client._pending_data_size > limit:
            raise OutboundBufferLimitError
    client.stats["out_msgs"] += len(commands)
    client.stats["out_bytes"] += payload_bytes
    await client._send_command(data)
    if client._flush_queue is not None and client._flush_queue.empty():
        await client._flush_pending()


def pub_ack(raw: bytes) -> api.PubAck:
    """Parse a stream ack as :class:`StreamPublisher` returns it."""
    return api.PubAck.from_response(json.loads(raw))


def _status(msg: Msg) -> str | None:
    """The status code of a JetStream status message (no reply subject, a ``Status`` header), else None."""
    headers = msg.headers
    if headers and not msg.reply:
        return headers.get(_STATUS)
    return None


class StreamPublisher:
    """Publish to JetStream with many messages in flight; each returns a future of its stream ack.

    Bind it to a connected client with :meth:`start`. The caller bounds how many publishes are in
    flight (a batch) and how long it waits for them (:func:`veille.messaging.gather_publishes`
    cancels the late ones); a cancelled or late future is forgotten here on the next sweep.
    """

    SWEEP_AT = 20_000
    """Sweep settled (cancelled) futures out of the table when it grows past this size."""

    def __init__(self) -> None:
        """Unbound: call :meth:`start`."""
        self._client: NatsClient | None = None
        self._sub: Subscription | None = None
        self._prefix = ""
        self._next = 0
        self._pending: dict[int, asyncio.Future[bytes]] = {}

    async def start(self, client: NatsClient) -> None:
        """Subscribe to this publisher's reply subjects on ``client``."""
        self._client = client
        self._prefix = client.new_inbox() + "."
        self._sub = await client.subscribe(self._prefix + "*", cb=self._on_reply)
        natsdirect.register(client, self._sub, self._reply, raw=True)

    async def stop(self) -> None:
        """Unsubscribe; futures still pending are cancelled."""
        if self._sub is not None:
            if self._client is not None:
                natsdirect.unregister(self._client, self._sub)
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # a closed connection: nothing left to undo
                log.debug("jetstream.publisher_unsubscribe_failed", error=str(exc) or type(exc).__name__)
            self._sub = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()

    @property
    def in_flight(self) -> int:
        """Publishes whose stream ack has not arrived."""
        return len(self._pending)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[bytes]:
        """Publish one message; the returned future resolves to the raw stream ack (see :func:`pub_ack`)."""
        client = self._client
        assert client is not None, "start() first"
        if len(self._pending) >= self.SWEEP_AT:
            self._pending = {token: f for token, f in self._pending.items() if not f.done()}
        self._next += 1
        token = self._next
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            await client.publish(subject, payload, reply=f"{self._prefix}{token}", headers=headers)
        except BaseException:
            self._pending.pop(token, None)
            future.cancel()
            raise
        return future

    async def publish_many(
        self, messages: Sequence[tuple[str, bytes, dict[str, str] | None]]
    ) -> list[asyncio.Future[bytes]]:
        """Publish ``(subject, payload, headers)`` messages with one write; a future of its stream ack each.

        All or nothing on this side: a bad subject or header, a payload over the server's
        ``max_payload`` (``MaxPayloadError``) or a closed connection raises before anything is sent.
        """
        client = self._client
        assert client is not None, "start() first"
        if len(self._pending) + len(messages) >= self.SWEEP_AT:
            self._pending = {token: f for token, f in self._pending.items() if not f.done()}
        limit = client.max_payload
        prefix = self._prefix
        first = self._next + 1
        commands = []
        size = 0
        for i, (subject, payload, headers) in enumerate(messages, first):
            commands.append(publish_command(subject, payload, f"{prefix}{i}", headers, limit))
            size += len(payload)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes]] = [loop.create_future() for _ in messages]
        pending = self._pending
        for i, future in enumerate(futures, first):
            pending[i] = future
        self._next = first + len(messages) - 1
        try:
            await send_many(client, commands, size)
        except BaseException:
            for i, future in enumerate(futures, first):
                pending.pop(i, None)
                future.cancel()
            raise
        return futures

    async def _on_reply(self, msg: Msg) -> None:
        self._reply(msg.subject.encode(), msg.data, msg.headers)

    def _reply(self, subject: bytes, data: bytes, headers: dict[str, str] | None) -> None:
        try:
            token = int(subject[len(self._prefix) :])
        except ValueError:  # not one of ours
            return
        future = self._pending.pop(token, None)
        if future is None or future.done():
            return
        if not data and headers and headers.get(_STATUS) == "503":
            future.set_exception(NoStreamResponseError())
            return
        if b'"error"' in data:
            try:
                reply = json.loads(data)
            except ValueError:
                reply = {}
            error = reply.get("error") if isinstance(reply, dict) else None
            if error is not None:
                future.set_exception(_api_error(error))
                return
        future.set_result(data)


def _api_error(error: object) -> APIError:
    """The stream's ``{"error": ...}`` as nats-py's class for its code (BadRequestError ...), whatever its shape."""
    if isinstance(error, dict):
        known = {key: error[key] for key in ("code", "err_code", "description") if key in error}
        for fields in (error, known) if "code" in error else ():  # an extra key: the known ones keep the class
            with contextlib.suppress(TypeError):  # a key APIError does not take
                try:
                    APIError.from_error(fields)
                except APIError as exc:
                    return exc
        return APIError(code=error.get("code"), err_code=error.get("err_code"), description=str(error))
    return APIError(description=str(error))


class PullFetcher:
    """Fetch batches from a durable pull consumer, with the next batch requested ahead.

    One pull request at a time is outstanding (messages delivered for a pull request carry their
    own subject, not the request's, so only a status message says which request ended). It asks
    for what the buffer lacks of a batch, once the buffer holds half a batch or less (a lingering
    fetch, below, asks for whatever it lacks).
    :meth:`fetch` returns at once with up to ``n`` buffered messages, or waits for the first to
    arrive (at most ``timeout``) and returns what is there; with a ``linger``, a fetch that found
    nothing waiting then waits up to that long for more (a steady trickle is handed over in batches,
    not a few messages at a time). Messages keep stream order. The
    consumer's ``max_ack_pending`` should leave room for what is being processed (or waits to be
    acked) plus one batch requested ahead; past it the server holds the rest back.
    :meth:`stop` naks what was delivered but not handed out, so another replica
    (or this one after a restart) gets it at once instead of after ``ack_wait``.
    """

    def __init__(self, stream: str, durable: str, *, expires: float = 1.0) -> None:
        """Describe the consumer; ``expires`` is how long each pull request waits on the server."""
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.expires = expires
        self._client: NatsClient | None = None
        self._sub: Subscription | None = None
        self._prefix = ""
        self._next = 0
        self._buffer: deque[Msg] = deque()
        self._live: str | None = None  # reply subject of the outstanding pull request
        self._due = 0  # messages it may still deliver
        self._until = 0.0  # when it is forgotten locally if the server never ends it (a restart)
        self._arrived = asyncio.Event()
        self._want = 1  # buffered messages that wake a waiting fetch (a lingering one wants a whole batch)
        self._stopping = False

    async def start(self, client: NatsClient) -> None:
        """Subscribe to this fetcher's delivery subjects on ``client``."""
        self._client = client
        self._stopping = False
        self._prefix = client.new_inbox() + "."
        self._sub = await client.subscribe(self._prefix + "*", cb=self._on_message)
        natsdirect.register(client, self._sub, self._message)

    @property
    def requested(self) -> int:
        """Messages asked for and not delivered yet."""
        return self._due if self._live is not None else 0

    async def fetch(self, n: int, timeout: float, linger: float = 0.0) -> list[Msg]:
        """Return up to ``n`` messages, waiting up to ``timeout`` seconds for the first; raise TimeoutError.

        ``linger``: when nothing was waiting as the fetch began (the consumer has caught up), wait up to that
        many seconds more after the first message while the batch is short of ``n`` (it is handed over as soon
        as it is whole). At a steady rate every batch has a cost of its own (a wake-up, a handler call, its
        writes to the server), and a batch of a few messages paid it for each few: at 1,000 mentions/s the
        classifier used 0.72-0.76 of a core with batches of about 7, 0.44-0.51 with a 20 ms linger
        (``docs/benchmarks.md``). Messages that were already waiting are handed over at once: they came while
        the previous batches were handled, so the consumer is behind, and waiting would only leave it idle.
        """
        deadline = time.monotonic() + timeout
        caught_up = not self._buffer
        while True:
            if self._buffer:
                if caught_up and linger > 0 and len(self._buffer) < n:
                    await self._fill(n, linger)
                batch = [self._buffer.popleft() for _ in range(min(n, len(self._buffer)))]
                await self._request(n)
                return batch
            self._arrived.clear()
            await self._request(n)
            if self._buffer:  # arrived while the request was being sent
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no message within {timeout} s")
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                if not self._buffer:
                    raise TimeoutError(f"no message within {timeout} s") from None

    def end_linger(self) -> None:
        """Ask for nothing more, and have a lingering fetch hand its batch over now (its consumer is stopping)."""
        self._stopping = True
        self._arrived.set()

    async def _fill(self, n: int, linger: float) -> None:
        """Wait up to ``linger`` s for the buffer to hold ``n`` messages (woken only when it does, or on a status)."""
        end = time.monotonic() + linger
        self._want = n
        try:
            while len(self._buffer) < n and not self._stopping:
                self._arrived.clear()
                await self._request(n, eager=True)  # the request may have ended (expired, or all delivered)
                left = end - time.monotonic()
                if left <= 0 or len(self._buffer) >= n:
                    return
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    return
        finally:
            self._want = 1

    async def _request(self, n: int, eager: bool = False) -> None:
        """Ask for what the buffer lacks of ``n`` when no request is outstanding and it holds half or less
        (``eager``: whatever it lacks)."""
        assert self._client is not None, "start() first"
        now = time.monotonic()
        if self._live is not None and self._until < now:
            self._live = None  # past its expiry with no status: the server forgot it
        if self._live is not None or self._stopping:
            return
        ask = n - len(self._buffer)
        if ask <= 0 or (ask < n - n // 2 and not eager):
            return
        self._next += 1
        self._live = self._prefix + str(self._next)
        self._due = ask
        self._until = now + self.expires + 1.0
        request = json.dumps({"batch": ask, "expires": int(self.expires * 1e9)}).encode()
        await self._client.publish(self.subject, request, reply=self._live)

    async def _on_message(self, msg: Msg) -> None:
        self._message(msg)

    def _message(self, msg: Msg) -> None:
        status = _status(msg)
        if status is None:
            self._buffer.append(msg)
            if self._live is not None:
                self._due -= 1
                if self._due <= 0:
                    self._live = None
            if len(self._buffer) < self._want and self._live is not None:
                return  # a lingering fetch waits for a whole batch (or for its request to end)
        elif status != "100":  # 404 no messages, 408 expired, 409 leadership change, deleted ...
            if msg.subject == self._live:
                self._live = None
            if status == "409":
                log.info("jetstream.pull_ended", status=status, description=(msg.headers or {}).get("Description"))
        self._arrived.set()

    async def stop(self) -> None:
        """Let the outstanding request end, stop receiving, and nak what was not handed out.

        A pull request cannot be withdrawn: what the server sends for it after an unsubscribe would
        sit unacknowledged until ``ack_wait``. So no new request is made, and the one outstanding is
        waited for (all its messages delivered, or its expiry status) before unsubscribing.
        """
        self._stopping = True
        while self._live is not None and time.monotonic() < self._until:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), max(0.0, self._until - time.monotonic()))
        if self._sub is not None:
            if self._client is not None:
                natsdirect.unregister(self._client, self._sub)
            try:
                await self._sub.unsubscribe()
            except Exception as exc:
                log.debug("jetstream.fetcher_unsubscribe_failed", error=str(exc) or type(exc).__name__)
            self._sub = None
        self._live = None
        while self._buffer:
            msg = self._buffer.popleft()
            try:
                await msg.nak()
            except Exception as exc:  # redelivered after ack_wait anyway
                log.debug("jetstream.nak_failed", error=str(exc) or type(exc).__name__)

    def __len__(self) -> int:
        """Messages delivered and not handed out yet."""
        return len(self._buffer)
