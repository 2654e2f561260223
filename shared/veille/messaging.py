"""NATS plumbing shared by every service: the broker, dead letters and the consume middleware.

Subscribers use FastStream with manual acknowledgement; :func:`dead_letter_middleware` owns the
acknowledgement of every message so the rule is written once:
- the handler returned: ack;
- the payload is not a valid message (bad JSON, wrong schema, bad UTF-8): a dead letter with the
  reason, a metric, a log line, then ack — the message is kept, the service goes on;
- the handler raised anything else: nak with a growing delay, and after ``max_attempts`` a dead
  letter — a poison message never blocks the stream and is never silently dropped.

:class:`BatchConsumer` applies the same rule to a whole fetched batch with nats-py directly (no
per-message FastStream pipeline): bad payloads are dead-lettered, the valid ones go to one batch
handler and are acked together once it is done (returned, or the awaitable it returned finished); if
it raised, each message is handled on its own
so only the failing one is retried or dead-lettered. It is for hot paths where the per-message
overhead, not the work, bounds the rate (the classifier).

Sizes. A dead letter embeds the original payload (base64) only up to :data:`MAX_KEPT_PAYLOAD` bytes;
past that it keeps the first bytes and says in its reason how big the original was, its SHA-256, and
the stream and sequence it still sits at (also as fields: ``truncated``, ``origin_stream``,
``origin_seq``), from where ``veille dlq replay`` fetches it. Without that cap a payload over ~750 kB could not be
dead-lettered at all (the letter itself would be too big), and would be redelivered until
``max_deliver`` and then stranded. ``max_bytes`` (1 MiB) equals NATS's default ``max_payload``, so
with ``veille up``'s embedded server an oversized message is refused at publish time and never
reaches a service; ``deploy/nats/*.conf`` raise ``max_payload`` to 4MB, so there a 1-4 MB message
reaches the service and becomes a ``too_large`` dead letter.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import structlog
from faststream import BaseMiddleware
from faststream.nats import NatsBroker
from faststream.nats.security import NatsToken, NatsUserPassword
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import MsgAlreadyAckdError, NotJSMessageError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError

from veille import bus
from veille.jetstream import PullFetcher, ack_command, send_many
from veille.metrics import ServiceMetrics, observe_many
from veille.models import DeadLettered
from veille.settings import ServiceSettings

__all__ = [
    "MAX_KEPT_PAYLOAD",
    "BatchConsumer",
    "BatchHandler",
    "DeadLetterSink",
    "ack_all",
    "ack_batch",
    "dead_letter_middleware",
    "gather_publishes",
    "make_broker",
    "publish_model",
]

MAX_KEPT_PAYLOAD = 640 * 1024
"""Most bytes of the original payload a dead letter embeds (the rest stays in the source stream).

640 KiB is 853 KiB in base64: with :data:`MAX_KEPT_HEADERS` and the 2,000-character reason the
letter stays under NATS's default 1 MiB ``max_payload``, and a notification of 100 alerts (which
quote short excerpts, see :mod:`veille.models`) is kept whole, so it can be replayed."""
MAX_KEPT_HEADERS = 16 * 1024
"""Most bytes of the original's headers a dead letter keeps (``Nats-Msg-Id`` first, then in order)."""

log = structlog.get_logger("veille.messaging")


def dead_letter_retry_delay(attempts: int) -> float:
    """How long a message waits for another try when its dead letter could not be stored.

    The dead-letter stream refuses new letters when it is full (``bus.DEADLETTER``, /readyz says 503):
    5 s, doubling up to 5 minutes, so the consumer's ``max_deliver`` (10) spans about 20 minutes for
    ops to make room before JetStream stops redelivering the message (it stays in its stream).
    """
    return min(5.0 * 2.0 ** max(attempts - 1, 0), 300.0)


class _Broker(NatsBroker):
    """A NatsBroker whose pull subscribers take their reply inboxes under the connection's inbox prefix.

    FastStream's subscribers default to ``_INBOX.`` whatever the connection's ``inbox_prefix``; a
    service's NATS user may only subscribe to its own ``_INBOX_<user>.>`` (``veille.natsauth``).
    """

    inbox: bytes = b"_INBOX."

    def subscriber(self, *args: Any, **kwargs: Any) -> Any:
        """``NatsBroker.subscriber`` with ``inbox_prefix`` defaulting to the connection's."""
        kwargs.setdefault("inbox_prefix", self.inbox)
        return super().subscriber(*args, **kwargs)


def make_broker(
    settings: ServiceSettings,
    service: str,
    metrics: ServiceMetrics,
    *,
    middlewares: tuple[Any, ...] = (),
) -> NatsBroker:
    """Create the service's NATS broker: reconnects forever, reports its state in metrics.

    Servers, credentials (user and password, or token) and inbox prefix come from
    ``settings.nats_connect_options()``, as for every other NATS connection of veille.
    """
    connected = metrics.nats_connected.labels(service)
    reconnects = metrics.nats_reconnects.labels(service)

    async def on_disconnect() -> None:
        connected.set(0)
        client = getattr(broker, "_connection", None)  # FastStream keeps it until its drain() returns
        if client is not None and client.is_closed:  # closed on purpose (a clean stop): nothing to warn about
            log.debug("nats.closed")
            return
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        connected.set(1)
        reconnects.inc()
        log.info("nats.reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc) or type(exc).__name__)

    options = settings.nats_connect_options()
    servers = options.pop("servers")
    if "user" in options:
        options["security"] = NatsUserPassword(options.pop("user"), options.pop("password"))
    elif "token" in options:
        options["security"] = NatsToken(options.pop("token"))
    broker = _Broker(
        servers,
        name=f"veille-{service}",
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        ping_interval=20,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        error_cb=on_error,
        middlewares=middlewares,
        graceful_timeout=15.0,
        logger=None,
        **options,
    )
    broker.inbox = (options.get("inbox_prefix") or "_INBOX").encode() + b"."
    return broker


async def publish_model(js: JetStreamContext, subject: str, model: Any, *, msg_id: str) -> None:
    """Publish a pydantic model as JSON with ``Nats-Msg-Id`` and wait for the stream's ack."""
    await js.publish(subject, model.model_dump_json().encode(), headers={"Nats-Msg-Id": msg_id}, timeout=10.0)


class DeadLetterSink:
    """Publishes dead letters to the dead-letter stream and counts them."""

    def __init__(self, service: str, metrics: ServiceMetrics) -> None:
        self.service = service
        self.metrics = metrics
        self.js: JetStreamContext | None = None

    def bind(self, client: NatsClient) -> None:
        """Use this NATS connection's JetStream context."""
        self.js = client.jetstream()

    async def send(
        self,
        *,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        kind: str,
        reason: str,
        attempts: int = 1,
        receiver: str | None = None,
        origin: str | None = None,
    ) -> None:
        """Keep an unprocessable message with its reason; raise if the stream cannot take it.

        ``origin`` says where the original still is (``VEILLE_MENTIONS#1234``), quoted when the
        payload is too big to embed whole.
        """
        assert self.js is not None, "DeadLetterSink.bind() first"
        reason = reason[:2000]
        kept = payload
        truncated: dict[str, Any] = {}
        if len(payload) > MAX_KEPT_PAYLOAD:
            kept = payload[:MAX_KEPT_PAYLOAD]
            digest = hashlib.sha256(payload).hexdigest()
            reason += (
                f" [payload truncated to its first {MAX_KEPT_PAYLOAD} of {len(payload)} bytes, "
                f"sha256 {digest}"
                + (f"; the original is at {origin}" if origin else "; the original is not kept anywhere else")
                + "]"
            )
            stream, _, seq = (origin or "").rpartition("#")
            truncated = {
                "truncated": True,
                "original_size": len(payload),
                "original_sha256": digest,
                "origin_stream": stream or None,
                "origin_seq": int(seq) if stream and seq.isdigit() else None,
            }
        letter = DeadLettered(
            **truncated,
            service=self.service,
            subject=subject,
            reason=reason,
            error_kind=kind,
            payload=base64.b64encode(kept).decode(),
            headers=_kept_headers(headers),
            attempts=attempts,
            receiver=receiver,
        )
        msg_id = (headers or {}).get("Nats-Msg-Id")
        dlq_headers = {"Nats-Msg-Id": f"dlq:{self.service}:{msg_id}"} if msg_id else None
        await self.js.publish(
            bus.deadletter_subject(self.service, kind),
            letter.model_dump_json().encode(),
            headers=dlq_headers,
            timeout=10.0,
        )
        self.metrics.dead_letters.labels(self.service, kind).inc()
        log.warning(
            f"{self.service}.message_dead_lettered",
            subject=subject,
            kind=kind,
            reason=reason[:300],
            msg_id=msg_id,
            attempts=attempts,
        )


def _kept_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """The original's string headers, ``Nats-Msg-Id`` first, up to :data:`MAX_KEPT_HEADERS` bytes."""
    items = sorted(
        ((k, v) for k, v in (headers or {}).items() if isinstance(k, str) and isinstance(v, str)),
        key=lambda kv: kv[0] != "Nats-Msg-Id",
    )
    kept: dict[str, str] = {}
    size = 0
    for key, value in items:
        size += len(key.encode()) + len(value.encode()) + 4
        if size > MAX_KEPT_HEADERS:
            break
        kept[key] = value
    return kept


def _classify_error(exc: BaseException) -> tuple[str, str] | None:
    """Return (kind, reason) when ``exc`` says the payload itself is bad, else None."""
    if isinstance(exc, ValidationError):
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or '(body)'}: {e.get('msg')}" for e in exc.errors()[:5]
        )
        return "invalid_schema", f"not a valid message: {details}"
    return None


def _bad_payload_kind(body: bytes) -> tuple[str, str] | None:
    """Check the raw bytes before FastStream decodes them, to name the fault precisely."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "invalid_utf8", f"payload is not UTF-8 ({exc.reason} at byte {exc.start})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return "invalid_json", f"payload is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return "invalid_json", "payload is JSON nested too deeply to read"
    if not isinstance(value, dict):
        return "invalid_schema", f"payload is a JSON {type(value).__name__}, not an object"
    return None


def dead_letter_middleware(
    service: str,
    stream: str,
    metrics: ServiceMetrics,
    sink: DeadLetterSink,
    *,
    max_attempts: int = 5,
    max_bytes: int = 1024 * 1024,
) -> type[BaseMiddleware]:
    """Build the middleware class that acks, naks or dead-letters every consumed message."""
    outcomes = metrics.messages
    timing = metrics.processing.labels(service)

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
            started = time.perf_counter()
            raw = msg.raw_message
            subject = getattr(raw, "subject", "")
            headers = dict(getattr(raw, "headers", None) or {})
            body: bytes = msg.body if isinstance(msg.body, bytes) else bytes(msg.body)
            metadata = getattr(raw, "metadata", None)
            attempts = int(getattr(metadata, "num_delivered", 1) or 1)
            sequence = getattr(getattr(metadata, "sequence", None), "stream", None)
            origin = f"{getattr(metadata, 'stream', None) or stream}#{sequence}" if sequence else None
            bound = structlog.contextvars.bound_contextvars(subject=subject, msg_id=headers.get("Nats-Msg-Id"))
            with bound:
                bad = (
                    ("too_large", f"payload is {len(body)} bytes, over the {max_bytes}-byte limit")
                    if len(body) > max_bytes
                    else _bad_payload_kind(body)
                )
                if bad is None:
                    try:
                        result = await call_next(msg)
                    except Exception as exc:
                        bad = _classify_error(exc)
                        if bad is None:
                            if attempts < max_attempts:
                                delay = min(2.0**attempts, 60.0)
                                log.warning(
                                    f"{service}.message_failed",
                                    error=f"{type(exc).__name__}: {exc}",
                                    attempts=attempts,
                                    retry_in=delay,
                                )
                                outcomes.labels(service, stream, "retried").inc()
                                await raw.nak(delay=delay)
                                return None
                            bad = ("processing_failed", f"failed {attempts} times: {type(exc).__name__}: {exc}")
                    else:
                        await raw.ack()
                        outcomes.labels(service, stream, "ok").inc()
                        timing.observe(time.perf_counter() - started)
                        return result
                kind, reason = bad
                try:
                    await sink.send(
                        subject=subject,
                        payload=body,
                        headers=headers,
                        kind=kind,
                        reason=reason,
                        attempts=attempts,
                        origin=origin,
                    )
                except Exception as exc:
                    log.error(f"{service}.dead_letter_failed", error=str(exc))
                    await raw.nak(delay=dead_letter_retry_delay(attempts))
                    return None
                await raw.ack()
                outcomes.labels(service, stream, "dead_lettered").inc()
                return None

    return DeadLetterMiddleware


M = TypeVar("M", bound=BaseModel)

BatchHandler = Callable[[list[M]], Awaitable[Awaitable[None] | None]]
"""An async function that processes valid messages together and returns once their effects are stored, or
returns an awaitable done once they are (the batch is acked after it; see :class:`BatchConsumer`)."""


async def gather_publishes(futures: Sequence[Awaitable[Any]], *, timeout: float = 10.0) -> list[Any]:
    """Wait for every publish acknowledgement (``js.publish_async`` futures); raise the first failure.

    ``publish_async`` futures never time out by themselves (a reply lost in a NATS outage would
    leave them pending forever): after ``timeout`` seconds the pending ones are cancelled and
    :class:`TimeoutError` is raised. Every future is settled before this returns or raises, so none
    keeps a slot of the context's pending-publish semaphore.
    """
    if not futures:
        return []
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def ack_all(client: NatsClient, msgs: Sequence[Msg]) -> None:
    """Ack JetStream messages with one write to the connection (``Msg.ack`` of each, a quarter of the CPU).

    Raises as ``Msg.ack`` would (``NotJSMessageError``, ``MsgAlreadyAckdError``, a closed connection)
    before anything is written.
    """
    commands = []
    for msg in msgs:
        if not msg.reply:
            raise NotJSMessageError
        if msg._ackd:
            raise MsgAlreadyAckdError(msg)
        commands.append(ack_command(msg.reply))
    await send_many(client, commands)
    for msg in msgs:
        msg._ackd = True


class _Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


async def ack_batch(client: NatsClient, msgs: Sequence[Msg], service: str, failed: _Count | None = None) -> int:
    """Ack a handled batch with one write (:func:`ack_all`); when that write is refused (reconnecting with a
    full buffer, closed), ack each message as nats-py would take it; log and count (``failed``) what still
    fails. Returns how many stay unacked: handled, and redelivered after the consumer's ``ack_wait``.
    """
    try:
        await ack_all(client, msgs)
        return 0
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    unacked = 0
    for msg in msgs:
        if msg._ackd:
            continue
        try:
            await msg.ack()
        except Exception as one:
            unacked += 1
            error = f"{type(one).__name__}: {one}"
    log.warning(f"{service}.batch_ack_failed", error=error, size=len(msgs), unacked=unacked)
    if unacked and failed is not None:
        failed.inc(unacked)
    return unacked


class BatchConsumer(Generic[M]):
    """Consume a durable pull consumer in batches and own every acknowledgement.

    Messages come from a :class:`veille.jetstream.PullFetcher`, which keeps about one batch
    requested ahead (so ``max_ack_pending`` should cover ``concurrency + 1`` batches and
    ``max_waiting`` messages; the bus's consumers allow 2,000, and beyond it the server holds the
    rest back) and naks what it holds when the consumer stops.

    Each fetched batch (up to ``batch_size`` messages, whatever is available right away, or, with a
    ``linger``, whatever arrived within that many seconds of the first when fewer were there; see
    :meth:`veille.jetstream.PullFetcher.fetch`):

    - every payload is checked as :func:`dead_letter_middleware` checks it (size, UTF-8, JSON,
      schema into ``model``); the bad ones become dead letters with the same kinds, reasons,
      metrics and log lines, then are acked;
    - ``handler`` is called once with the valid models; when it is done, they are all acked
      (``veille_messages_processed_total{outcome="ok"}``);
    - when it raises, each valid message is handled on its own (``handler([model])``, concurrently)
      so a poison message only fails itself: a nak with a growing delay, and after
      ``max_attempts`` deliveries a ``processing_failed`` dead letter, as the middleware does.

    The acks of a batch are written to the connection at once (:func:`ack_all`).

    The handler must be idempotent over re-runs of the same messages (a failed batch is processed
    again one by one, and JetStream redelivers what was not acked); publishing with ``Nats-Msg-Id``
    makes the outputs so.

    With ``concurrency`` > 1 the next batch is fetched and handled while the previous one waits for
    its stream acks (I/O overlaps CPU); each batch is acked on its own when its handler is done.

    A handler may return an awaitable (the classifier: its counts written to KV by a flusher that
    writes many batches' counts at once): the batch is acked only once that is done. While it waits
    it gives its ``concurrency`` slot back, so fetching goes on, as long as the messages waiting so
    stay within ``max_waiting`` and none has waited longer than ``max_waiting_seconds``; otherwise a
    waiting batch keeps its slot, and fetching stops once every slot waits. A stalled write so holds
    up the consumer within a second, as a handler that does not return does, instead of pulling the
    stream into memory and handling again the messages JetStream redelivers after ``ack_wait``. If
    the awaitable fails, the batch fails as if the handler had raised.

    :meth:`stop` lets the batches in hand finish (handled, acked, the acks flushed to the server), then
    stops fetching. Fetch errors (a NATS outage, a reconnect) are logged and retried after
    ``retry_delay``; they never end the loop.
    """

    def __init__(
        self,
        *,
        service: str,
        consumer: bus.Consumer,
        model: type[M],
        handler: BatchHandler[M],
        metrics: ServiceMetrics,
        sink: DeadLetterSink,
        batch_size: int = 500,
        fetch_timeout: float = 1.0,
        max_attempts: int = 5,
        max_bytes: int = 1024 * 1024,
        retry_delay: float = 0.5,
        concurrency: int = 2,
        max_waiting: int = 1000,
        max_waiting_seconds: float = 1.0,
        linger: float = 0.0,
    ) -> None:
        """Describe the consumer; nothing happens before :meth:`start`."""
        self.service = service
        self.consumer = consumer
        self.model = model
        self.handler = handler
        self.sink = sink
        self.batch_size = batch_size
        self.fetch_timeout = fetch_timeout
        self.max_attempts = max_attempts
        self.max_bytes = max_bytes
        self.retry_delay = retry_delay
        self.concurrency = max(1, concurrency)
        self.max_waiting = max_waiting
        self.max_waiting_seconds = max_waiting_seconds
        self.linger = linger
        self._waiting = 0  # messages of batches waiting for their handler's awaitable without a slot
        self._waiting_since: dict[object, float] = {}  # each such batch -> loop time it began waiting, oldest first
        self._outcomes = metrics.messages
        self._ok = metrics.messages.labels(service, consumer.stream, "ok")
        self._ack_failed = metrics.messages.labels(service, consumer.stream, "ack_failed")
        self._timing = metrics.processing.labels(service)
        self._client: NatsClient | None = None
        self._fetcher: PullFetcher | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    @property
    def running(self) -> bool:
        """Whether the fetch loop is running."""
        return self._task is not None and not self._task.done()

    async def start(self, client: NatsClient) -> None:
        """Bind to the durable consumer (created with its declared config if missing) and start fetching."""
        self._client = client
        self._stopping.clear()
        js = client.jetstream()
        try:
            await js.consumer_info(self.consumer.stream, self.consumer.durable)
        except NotFoundError:
            await js.add_consumer(self.consumer.stream, config=self.consumer.config())
        self._fetcher = PullFetcher(self.consumer.stream, self.consumer.durable, expires=self.fetch_timeout)
        await self._fetcher.start(client)
        self._task = asyncio.create_task(self._run(), name=f"{self.service}-batch-consumer")

    async def stop(self) -> None:
        """Finish and ack the batches in hand, stop fetching, flush the acks to the server."""
        self._stopping.set()
        if self._fetcher is not None:
            self._fetcher.end_linger()  # a lingering fetch would hold the stop up to ``linger``
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._fetcher is not None:
            await self._fetcher.stop()
            self._fetcher = None
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.flush(timeout=5)
            except Exception as exc:
                log.warning(f"{self.service}.ack_flush_failed", error=str(exc) or type(exc).__name__)

    async def _run(self) -> None:
        assert self._fetcher is not None
        fetcher = self._fetcher
        slots = asyncio.Semaphore(self.concurrency)
        while not self._stopping.is_set():
            await slots.acquire()
            if self._stopping.is_set():
                slots.release()
                break
            try:
                msgs = await fetcher.fetch(self.batch_size, self.fetch_timeout, self.linger)
            except TimeoutError:
                slots.release()
                continue
            except Exception as exc:
                slots.release()
                log.warning(f"{self.service}.fetch_failed", error=str(exc) or type(exc).__name__)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.retry_delay)
                continue
            task = asyncio.create_task(self._settle(msgs, slots))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _settle(self, msgs: Sequence[Msg], slots: asyncio.Semaphore) -> None:
        held = True
        waiting = 0
        token = object()

        def handled() -> None:  # the handler returned an awaitable: give the slot back if there is room
            nonlocal held, waiting
            since = self._waiting_since
            now = asyncio.get_running_loop().time()
            if not held or self._waiting + len(msgs) > self.max_waiting:
                return
            if since and now - next(iter(since.values())) > self.max_waiting_seconds:
                return  # the oldest has waited too long: a stalled write; hold the slot
            waiting = len(msgs)
            self._waiting += waiting
            since[token] = now
            held = False
            slots.release()

        try:
            await self.process(msgs, handled=handled)
        except Exception as exc:  # pragma: no cover - process settles every message itself
            log.error(f"{self.service}.batch_crashed", error=f"{type(exc).__name__}: {exc}", size=len(msgs))
        finally:
            self._waiting -= waiting
            self._waiting_since.pop(token, None)
            if held:
                slots.release()

    def _decode(self, msg: Msg) -> M | tuple[str, str]:
        """The message's model, or (kind, reason) when its payload is not a valid message."""
        body = msg.data
        if len(body) > self.max_bytes:
            return "too_large", f"payload is {len(body)} bytes, over the {self.max_bytes}-byte limit"
        try:
            return self.model.model_validate_json(body)
        except ValidationError as exc:
            return _bad_payload_kind(body) or _classify_error(exc) or ("invalid_schema", str(exc))

    async def process(self, msgs: Sequence[Msg], handled: Callable[[], None] | None = None) -> None:
        """Check, handle and settle (ack, nak or dead-letter) one fetched batch.

        ``handled`` is called when the handler returned an awaitable, before waiting for it (the
        consumer's loop then gives the batch's fetch slot back, when ``max_waiting`` allows).
        """
        started = time.perf_counter()
        valid: list[tuple[Msg, M]] = []
        bad: list[tuple[Msg, tuple[str, str]]] = []
        for msg in msgs:
            decoded = self._decode(msg)
            if isinstance(decoded, tuple):
                bad.append((msg, decoded))
            else:
                valid.append((msg, decoded))
        if bad:
            await asyncio.gather(*(self._dead_letter(msg, kind, reason) for msg, (kind, reason) in bad))
        if not valid:
            return
        try:
            after = await self.handler([model for _, model in valid])
            if after is not None:
                if handled is not None:
                    handled()
                await after
        except Exception as exc:
            if len(valid) == 1:
                await self._failed(valid[0][0], exc)
                return
            log.warning(
                f"{self.service}.batch_failed",
                error=f"{type(exc).__name__}: {exc}",
                size=len(valid),
                fallback="one by one",
            )
            await asyncio.gather(*(self._one(msg, model) for msg, model in valid))
            return
        assert self._client is not None, "start() first"
        await ack_batch(self._client, [msg for msg, _ in valid], self.service, self._ack_failed)
        elapsed = time.perf_counter() - started
        self._ok.inc(len(valid))
        observe_many(self._timing, elapsed, len(valid))

    async def _one(self, msg: Msg, model: M) -> None:
        """Handle one message of a failed batch on its own and settle it."""
        started = time.perf_counter()
        try:
            after = await self.handler([model])
            if after is not None:
                await after
        except Exception as exc:
            await self._failed(msg, exc)
            return
        await msg.ack()
        self._ok.inc()
        self._timing.observe(time.perf_counter() - started)

    def _attempts(self, msg: Msg) -> int:
        try:
            return int(msg.metadata.num_delivered or 1)
        except Exception:
            return 1

    async def _failed(self, msg: Msg, exc: Exception) -> None:
        """Nak a message whose handling failed, or dead-letter it once it failed ``max_attempts`` times."""
        bad = _classify_error(exc)
        if bad is None:
            attempts = self._attempts(msg)
            if attempts < self.max_attempts:
                delay = min(2.0**attempts, 60.0)
                with structlog.contextvars.bound_contextvars(subject=msg.subject, msg_id=_msg_id(msg)):
                    log.warning(
                        f"{self.service}.message_failed",
                        error=f"{type(exc).__name__}: {exc}",
                        attempts=attempts,
                        retry_in=delay,
                    )
                self._outcomes.labels(self.service, self.consumer.stream, "retried").inc()
                await msg.nak(delay=delay)
                return
            bad = ("processing_failed", f"failed {attempts} times: {type(exc).__name__}: {exc}")
        await self._dead_letter(msg, *bad)

    async def _dead_letter(self, msg: Msg, kind: str, reason: str) -> None:
        """Keep a message as a dead letter and ack it (nak it for later if the letter cannot be stored)."""
        headers = dict(msg.headers or {})
        attempts = self._attempts(msg)
        try:
            metadata = msg.metadata
            origin = f"{metadata.stream or self.consumer.stream}#{metadata.sequence.stream}"
        except Exception:
            origin = None
        with structlog.contextvars.bound_contextvars(subject=msg.subject, msg_id=headers.get("Nats-Msg-Id")):
            try:
                await self.sink.send(
                    subject=msg.subject,
                    payload=msg.data,
                    headers=headers,
                    kind=kind,
                    reason=reason,
                    attempts=attempts,
                    origin=origin,
                )
            except Exception as exc:
                log.error(f"{self.service}.dead_letter_failed", error=str(exc))
                await msg.nak(delay=dead_letter_retry_delay(attempts))
                return
        await msg.ack()
        self._outcomes.labels(self.service, self.consumer.stream, "dead_lettered").inc()


def _msg_id(msg: Msg) -> str | None:
    return (msg.headers or {}).get("Nats-Msg-Id")
