"""Composition root of the notifier: broker, subscribers, KV stores, integrations, ticker, metrics.

``create_app(settings, config=..., http_client=..., clock=..., metrics=..., sleep=...)`` builds it;
tests pass their own clock (grouping, silences and quiet hours without waiting), their own sleep
(backoff without waiting) and their own HTTP client. ``__main__`` only calls :func:`main`.
"""

from __future__ import annotations

import asyncio
import functools
import platform
from datetime import timedelta
from pathlib import Path

import httpx
import structlog
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from faststream.nats.annotations import NatsMessage
from pydantic import Field

from services.notifier.delivery import Integration, RetryPolicy
from services.notifier.dispatcher import Dispatcher, Sleep, targets_of
from services.notifier.http import WebhookSession
from services.notifier.integrations.webhook import WebhookIntegration
from services.notifier.metrics import NotifierMetrics
from services.notifier.model import Clock, Notification
from services.notifier.nflog import NotificationLog
from services.notifier.partitions import LEGACY, PartitionLeases
from services.notifier.signing import decode_secret
from services.notifier.silences import SilenceStore
from veille import bus
from veille.config import Receiver, VeilleConfig, load_config
from veille.consumerlag import ConsumerLagMonitor
from veille.health import Health
from veille.httpclient import make_http_client
from veille.messaging import BatchConsumer, DeadLetterSink, dead_letter_middleware, make_broker
from veille.metrics import ServiceMetrics
from veille.models import AlertRaised, utcnow
from veille.settings import ServiceSettings, read_secret_file
from veille.tasks import cancel_and_wait

__all__ = ["NotifierApp", "NotifierSettings", "build_integrations", "create_app", "main"]

NAME = "notifier"
log = structlog.get_logger("notifier")


class NotifierSettings(ServiceSettings):
    """The shared settings plus the notifier's own (``VEILLE_NOTIFIER_*``)."""

    notifier_tick: float = Field(
        default=1.0, ge=0, description="Seconds between plans of the groups whose time has come; 0 disables."
    )
    notifier_rescan: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between reads of every group in KV (groups another replica wrote, one that died).",
    )
    notifier_batch: int = Field(default=500, ge=1, le=2000, description="Alerts fetched and recorded together.")
    notifier_lease: float = Field(default=60.0, gt=0, description="Seconds a claim on a notification is held.")
    notifier_partition_lease: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a replica holds a partition of the alerts stream without renewing it (renewed every "
        "third): how long the partitions of a replica killed -9 wait before the others take them.",
    )
    notifier_max_attempts: int = Field(default=6, ge=1, le=50)
    notifier_retry_base: float = Field(default=1.0, gt=0)
    notifier_retry_cap: float = Field(default=60.0, gt=0)


def _read_secret(value: str | None, path: Path | None) -> str | None:
    if value is not None:
        return value
    if path is not None:
        return read_secret_file(path)
    return None


def build_integrations(
    config: VeilleConfig, *, http_client: httpx.AsyncClient, clock: Clock, webhooks: WebhookSession | None = None
) -> dict[str, Integration]:
    """One integration per target of every receiver, keyed by target id (webhooks through ``webhooks`` if given)."""
    out: dict[str, Integration] = {}
    url = str(config.external_url) if config.external_url is not None else ""
    for receiver in config.receivers:
        for target in targets_of(receiver):
            out[target.id] = _integration(
                receiver,
                target.kind,
                target.index,
                http_client=http_client,
                clock=clock,
                external_url=url,
                webhooks=webhooks,
            )
    return out


def _integration(
    receiver: Receiver,
    kind: str,
    index: int,
    *,
    http_client: httpx.AsyncClient,
    clock: Clock,
    external_url: str = "",
    webhooks: WebhookSession | None = None,
) -> Integration:
    if kind == "webhook":
        hook = receiver.webhook[index]
        secret = _read_secret(hook.secret, hook.secret_file)
        key = decode_secret(secret) if secret else None
        return WebhookIntegration(hook, webhooks or http_client, key=key, clock=clock, external_url=external_url)
    if kind == "email":
        from services.notifier.integrations.email import EmailIntegration

        email = receiver.email[index]
        password = _read_secret(email.password, email.password_file)
        return EmailIntegration(email, password=password, clock=clock, external_url=external_url)
    if kind == "slack":
        from services.notifier.integrations.slack import SlackIntegration

        return SlackIntegration(receiver.slack[index], http_client, external_url=external_url)
    if kind == "teams":
        from services.notifier.integrations.teams import TeamsIntegration

        return TeamsIntegration(receiver.teams[index], http_client, external_url=external_url)
    if kind == "alertmanager":
        from services.notifier.integrations.alertmanager import AlertmanagerIntegration

        return AlertmanagerIntegration(
            receiver.alertmanager[index], http_client, clock=clock, external_url=external_url
        )
    raise ValueError(f"unknown integration kind {kind!r}")


class NotifierApp:
    """The running notifier."""

    name = NAME

    def __init__(
        self,
        settings: NotifierSettings,
        config: VeilleConfig,
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        metrics: ServiceMetrics | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.metrics = metrics or ServiceMetrics(NAME)
        self.notifier_metrics = NotifierMetrics(self.metrics)
        self.health = Health()
        self.clock: Clock = clock or utcnow
        self.sleep: Sleep = sleep or asyncio.sleep
        self._own_client = http_client is None
        # Deliveries never follow redirects (delivery.post also says so per request, whatever the client).
        self.http_client = http_client or make_http_client(
            user_agent=settings.user_agent, timeout=30.0, follow_redirects=False
        )
        # Webhooks (a POST per notification, the most frequent integration) go through a lighter aiohttp
        # session with the same guarantees (services/notifier/http.py); a client a test passes is used as is.
        self.webhooks = WebhookSession(user_agent=settings.user_agent) if self._own_client else None
        self.integrations = build_integrations(
            config, http_client=self.http_client, clock=self.clock, webhooks=self.webhooks
        )
        self._report_python()
        self.policy = RetryPolicy(
            max_attempts=settings.notifier_max_attempts,
            base=settings.notifier_retry_base,
            cap=settings.notifier_retry_cap,
        )
        self.sink = DeadLetterSink(NAME, self.metrics)
        self._dispatcher: Dispatcher | None = None
        self._ticker: asyncio.Task[None] | None = None
        middleware = dead_letter_middleware(NAME, bus.ALERTS.name, self.metrics, self.sink)
        self.broker: NatsBroker = make_broker(settings, NAME, self.metrics, middlewares=(middleware,))
        # One consumer per partition of the alerts stream this replica holds (services/notifier/
        # partitions.py), started and stopped as leases come and go. Alerts come in batches (whatever
        # is available, up to notifier_batch), handled one batch at a time in stream order: each group
        # touched is written once per batch, then the batch is acked. A bad payload is dead-lettered as
        # the middleware does; a batch that fails is retried alert by alert, still in order
        # (Dispatcher.record_batch holds a lock).
        self.consumers: dict[int, BatchConsumer[AlertRaised]] = {}
        self.leases: PartitionLeases | None = None
        self._next_rescan = 0.0
        replays = bus.NOTIFIER_REPLAY_CONSUMER
        self.broker.subscriber(
            replays.filter_subject,
            stream=JStream(replays.stream, declare=False),
            durable=replays.durable,
            pull_sub=PullSub(batch_size=10, timeout=1.0),
            ack_policy=AckPolicy.MANUAL,
            title="replay_notification",
            description="Deliver a dead-lettered notification sent back by `veille dlq replay`.",
        )(self.replay_notification)
        self.health.add("nats", self._nats_problem)
        self.lag = ConsumerLagMonitor(
            NAME, self.metrics.registry, [*bus.NOTIFIER_ALERT_CONSUMERS, bus.NOTIFIER_REPLAY_CONSUMER]
        )

    def _report_python(self) -> None:
        """Export (and, with an email receiver, warn) whether this Python lacks an email-header CVE fix."""
        from services.notifier.integrations.email import HEADER_CVES, python_header_gaps

        gaps = python_header_gaps()
        for cve in HEADER_CVES:
            self.notifier_metrics.python_vulnerable.labels(cve).set(1 if cve in gaps else 0)
        if gaps and any(i.kind == "email" for i in self.integrations.values()):
            log.warning(
                "notifier.python_vulnerable",
                cves=gaps,
                python=platform.python_version(),
                detail="email headers are neutralised by veille; upgrade Python (3.11.10+, 3.12.5+)",
            )

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher (available once started)."""
        assert self._dispatcher is not None, "NotifierApp.start() first"
        return self._dispatcher

    def _nats_problem(self) -> str | None:
        try:
            connection = self.broker.connection
        except Exception:
            connection = None
        if connection is None or not connection.is_connected:
            return "not connected to NATS"
        return None

    async def route_alerts(self, alerts: list[AlertRaised], lane: int | None = None) -> None:
        """Record a batch of alerts in their groups (acked by the consumer once recorded), then flush due groups.

        While thousands of due groups wait for their turn to be planned, the batch waits a little first
        (:meth:`Dispatcher.backpressure`, bounded well below the consumer's ``ack_wait``).
        """
        await self.dispatcher.backpressure()
        keys = await self.dispatcher.record_batch(alerts, lane)
        if keys:  # planned against the silences held in memory (SilenceStore.watch): no read per batch
            self.dispatcher.flush_soon(keys)  # not awaited: the batch is acked, the next one fetched

    async def replay_notification(self, notification: Notification, msg: NatsMessage) -> None:
        """Deliver a replayed notification once (the log's claim makes a redelivery a no-op)."""
        metadata = getattr(msg.raw_message, "metadata", None)
        sequence = int(getattr(getattr(metadata, "sequence", None), "stream", 0) or 0) or 1
        outcome = await self.dispatcher.replay(notification, sequence)
        log.info("notifier.notification_replayed", notification_id=notification.id, outcome=outcome)

    async def flush_due(self, *, wait: bool = True) -> None:
        """Plan every group now (tests call this after moving their clock)."""
        await self.dispatcher.flush_due(wait=wait)

    async def start(self) -> None:
        """Connect, declare the topology, open the KV buckets, start consuming and ticking."""
        await self.broker.connect()
        self.metrics.nats_connected.labels(NAME).set(1)
        js = self.broker.connection.jetstream()
        await bus.ensure_topology(js, replicas=self.settings.stream_replicas)
        self.sink.bind(self.broker.connection)
        silences = SilenceStore(await js.key_value(bus.SILENCES.name), js)
        await silences.watch(self.clock)  # every stored silence held before the first alert is planned
        self._dispatcher = Dispatcher(
            config=self.config,
            integrations=self.integrations,
            js=js,
            groups=await js.key_value(bus.NOTIFY_GROUPS.name),
            nflog=NotificationLog(await js.key_value(bus.NOTIFY_LOG.name), owner=self.settings.instance),
            silences=silences,
            sink=self.sink,
            metrics=self.notifier_metrics,
            clock=self.clock,
            sleep=self.sleep,
            policy=self.policy,
            lease=timedelta(seconds=self.settings.notifier_lease),
            seen=await js.key_value(bus.NOTIFY_SEEN.name),
            owns=self._owns,
        )
        await self.broker.start()
        self.leases = PartitionLeases(
            await js.key_value(bus.NOTIFY_LEASES.name),
            js,
            self.settings.instance,
            lease=self.settings.notifier_partition_lease,
            on_gain=self._gained,
            on_loss=self._lost,
        )
        await self.leases.start()
        self.lag.start(js)
        if self.settings.notifier_tick > 0:
            self._ticker = asyncio.create_task(self._tick(), name="notifier-ticker")

    def _owns(self, partition: int | None) -> bool:
        return self.leases is not None and self.leases.owns(partition)

    async def _gained(self, partition: int) -> None:
        """Consume the partition's alerts; plan its groups now (read from KV: another replica may have written them)."""
        consumer: BatchConsumer[AlertRaised] = BatchConsumer(
            service=NAME,
            consumer=bus.NOTIFIER_ALERT_CONSUMERS[partition],
            model=AlertRaised,
            handler=functools.partial(self.route_alerts, lane=partition),
            metrics=self.metrics,
            sink=self.sink,
            batch_size=self.settings.notifier_batch,
            concurrency=1,
        )
        await consumer.start(self.broker.connection)
        self.consumers[partition] = consumer
        self.notifier_metrics.partitions.set(len(self.consumers))
        self._next_rescan = 0.0  # the ticker plans every group of the bucket at its next tick

    async def _lost(self, partition: int) -> None:
        """Stop consuming the partition (the batch in hand recorded and acked) and forget its groups."""
        consumer = self.consumers.pop(partition, None)
        if consumer is not None:
            await consumer.stop()
        self.notifier_metrics.partitions.set(len(self.consumers))
        if self._dispatcher is not None:
            self._dispatcher.forget_partition(None if partition == LEGACY else partition)

    async def _tick(self) -> None:
        """Plan the groups whose time has come (from memory); every ``notifier_rescan`` s (and once a partition
        was gained), read every group of the partitions held."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                if loop.time() >= self._next_rescan:
                    self._next_rescan = loop.time() + self.settings.notifier_rescan
                    await self.dispatcher.flush_due(rescan=True)
                else:
                    await self.dispatcher.flush_due(self.dispatcher.due_keys())
            except Exception as exc:
                log.warning("notifier.scan_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.notifier_tick)

    async def stop(self) -> None:
        """Stop ticking and consuming, let deliveries in flight finish, disconnect."""
        await self.lag.stop()
        if self.leases is not None:
            await self.leases.stop()  # every consumer stopped, every partition given up
        await cancel_and_wait([self._ticker])
        if self._dispatcher is not None:
            try:
                await asyncio.wait_for(self._dispatcher.drain(), timeout=20)
            except TimeoutError:  # the drain cancelled them once; one that swallowed it would go on retrying
                await cancel_and_wait(self._dispatcher.flushes())
        if self._dispatcher is not None:
            await self._dispatcher.silences.stop_watch()
        await self.broker.stop()
        if self._own_client:
            await self.http_client.aclose()
        if self.webhooks is not None:
            await self.webhooks.aclose()


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
    sleep: Sleep | None = None,
) -> NotifierApp:
    """Build the notifier from settings (and optional parts a test provides)."""
    if not isinstance(settings, NotifierSettings):
        settings = NotifierSettings(**settings.model_dump())  # the VEILLE_NOTIFIER_* variables are read here
    return NotifierApp(
        settings,
        config or load_config(settings.config),
        http_client=http_client,
        clock=clock,
        metrics=metrics,
        sleep=sleep,
    )


def main() -> None:
    """Run the notifier with settings from the environment until SIGTERM."""
    from veille.logging import configure_logging
    from veille.service import run_service

    settings = NotifierSettings()
    configure_logging(NAME, level=settings.log_level, fmt=settings.log_format)
    run_service(create_app(settings), settings)
