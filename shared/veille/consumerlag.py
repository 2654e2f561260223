"""Consumer lag as metrics: how many messages wait for each durable consumer a service reads.

JetStream knows, for every durable consumer, how many messages of its stream it has not delivered
yet (``num_pending``) and how many it delivered without an acknowledgement (``num_ack_pending``).
:class:`ConsumerLagMonitor` reads them with ``consumer_info`` every ``interval`` seconds and exports
them on the service's registry, so Prometheus sees lag without a NATS exporter (``veille up``
included). Wiring, in a service's composition root::

    self.lag = ConsumerLagMonitor(NAME, self.metrics.registry, [bus.CLASSIFIER_CONSUMER])
    # in start(), once connected:
    self.lag.start(self.broker.connection.jetstream())
    # in stop():
    await self.lag.stop()

Every replica reports the same numbers; alert rules aggregate with ``max by (stream, consumer)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Gauge

from veille.bus import Consumer
from veille.metrics import PREFIX
from veille.tasks import cancel_and_wait

__all__ = ["ConsumerLagMonitor"]

log = structlog.get_logger("veille.consumerlag")


class ConsumerLagMonitor:
    """Exports ``veille_consumer_pending_messages`` and friends for the given durable consumers."""

    def __init__(
        self,
        service: str,
        registry: CollectorRegistry,
        consumers: Iterable[Consumer],
        *,
        interval: float = 15.0,
    ) -> None:
        self.service = service
        self.consumers = tuple(consumers)
        self.interval = interval
        labels = ["service", "stream", "consumer"]
        self.pending = Gauge(
            f"{PREFIX}_consumer_pending_messages",
            "Messages of the stream not yet delivered to the durable consumer (JetStream num_pending).",
            labels,
            registry=registry,
        )
        self.ack_pending = Gauge(
            f"{PREFIX}_consumer_ack_pending_messages",
            "Messages delivered to the durable consumer and not acknowledged yet (JetStream num_ack_pending).",
            labels,
            registry=registry,
        )
        self.redelivered = Gauge(
            f"{PREFIX}_consumer_redelivered_messages",
            "Unacknowledged messages delivered more than once (JetStream num_redelivered).",
            labels,
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, js: JetStreamContext) -> None:
        """Read every consumer's state once and update the gauges; a consumer that fails is skipped."""
        for consumer in self.consumers:
            try:
                info = await js.consumer_info(consumer.stream, consumer.durable, timeout=5.0)
            except Exception as exc:
                log.debug(
                    "consumerlag.read_failed",
                    stream=consumer.stream,
                    consumer=consumer.durable,
                    error=str(exc) or type(exc).__name__,
                )
                continue
            labels = (self.service, consumer.stream, consumer.durable)
            self.pending.labels(*labels).set(info.num_pending or 0)
            self.ack_pending.labels(*labels).set(info.num_ack_pending or 0)
            self.redelivered.labels(*labels).set(info.num_redelivered or 0)

    async def _run(self, js: JetStreamContext) -> None:
        while True:
            await self.refresh(js)
            await asyncio.sleep(self.interval)

    def start(self, js: JetStreamContext) -> None:
        """Refresh now and every ``interval`` seconds in a background task, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(js), name=f"{self.service}-consumer-lag")

    async def stop(self) -> None:
        """Stop refreshing."""
        await cancel_and_wait([self._task])
        self._task = None
