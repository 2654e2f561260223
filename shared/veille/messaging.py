"""NATS plumbing shared by every service: the broker, dead letters and the consume middleware.

Subscribers use FastStream with manual acknowledgement; :func:`dead_letter_middleware` owns the
acknowledgement of every message so the rule is written once:
- the handler returned: ack;
- the payload is not a valid message (bad JSON, wrong schema, bad UTF-8): a dead letter with the
  reason, a metric, a log line, then ack — the message is kept, the service goes on;
- the handler raised anything else: nak with a growing delay, and after ``max_attempts`` a dead
  letter — a poison message never blocks the stream and is never silently dropped.

Sizes. A dead letter embeds the original payload (base64) only up to :data:`MAX_KEPT_PAYLOAD` bytes;
past that it keeps the first bytes and says in its reason how big the original was, its SHA-256, and
the stream and sequence it still sits at. Without that cap a payload over ~750 kB could not be
dead-lettered at all (the letter itself would be too big), and would be redelivered until
``max_deliver`` and then stranded. ``max_bytes`` (1 MiB) equals NATS's default ``max_payload``, so
with ``veille up``'s embedded server an oversized message is refused at publish time and never
reaches a service; ``deploy/nats/*.conf`` raise ``max_payload`` to 4MB, so there a 1-4 MB message
reaches the service and becomes a ``too_large`` dead letter.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from faststream import BaseMiddleware
from faststream.nats import NatsBroker
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from pydantic import ValidationError

from veille import bus
from veille.metrics import ServiceMetrics
from veille.models import DeadLettered
from veille.settings import ServiceSettings

__all__ = ["MAX_KEPT_PAYLOAD", "DeadLetterSink", "dead_letter_middleware", "make_broker", "publish_model"]

MAX_KEPT_PAYLOAD = 256 * 1024
"""Most bytes of the original payload a dead letter embeds (the rest stays in the source stream)."""

log = structlog.get_logger("veille.messaging")


def make_broker(
    settings: ServiceSettings,
    service: str,
    metrics: ServiceMetrics,
    *,
    middlewares: tuple[Any, ...] = (),
) -> NatsBroker:
    """Create the service's NATS broker: reconnects forever, reports its state in metrics."""
    connected = metrics.nats_connected.labels(service)
    reconnects = metrics.nats_reconnects.labels(service)

    async def on_disconnect() -> None:
        connected.set(0)
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        connected.set(1)
        reconnects.inc()
        log.info("nats.reconnected")

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc) or type(exc).__name__)

    options: dict[str, Any] = {}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password.get_secret_value() if settings.nats_password else ""
    if settings.nats_token:
        options["token"] = settings.nats_token.get_secret_value()
    return NatsBroker(
        settings.nats_servers(),
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
        if len(payload) > MAX_KEPT_PAYLOAD:
            kept = payload[:MAX_KEPT_PAYLOAD]
            reason += (
                f" [payload truncated to its first {MAX_KEPT_PAYLOAD} of {len(payload)} bytes, "
                f"sha256 {hashlib.sha256(payload).hexdigest()}"
                + (f"; the original is at {origin}" if origin else "")
                + "]"
            )
        letter = DeadLettered(
            service=self.service,
            subject=subject,
            reason=reason,
            error_kind=kind,
            payload=base64.b64encode(kept).decode(),
            headers={k: v for k, v in (headers or {}).items() if isinstance(v, str)},
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
                    await raw.nak(delay=5.0)
                    return None
                await raw.ack()
                outcomes.labels(service, stream, "dead_lettered").inc()
                return None

    return DeadLetterMiddleware
