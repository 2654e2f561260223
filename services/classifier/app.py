"""Composition root of the classifier: broker, subscriber, spike detection, metrics, health.

Throughput. FastStream's pull subscriber fetches ``batch_size`` mentions and handles them as
concurrent tasks (then fetches the next batch), so the waits of one mention (the stream's ack of the
classified mention, the flush of its counts to the detector KV bucket every ``flush_interval``)
overlap with the others'; the CPU work (language, sentiment, matching, story) is sequential in one
process. ``max_workers > 1`` switches to FastStream's concurrent subscriber, which measured slower
here (two task hand-offs per message). Where the time goes and the numbers: ``bench/classifier_bench.py``.
The dead-letter middleware acks a mention only when its handler returned, i.e. once the classified
mention and its alerts are stored and its counts flushed (see :mod:`services.classifier.detection`).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from prometheus_client import Counter

from services.classifier.detection import Clock, DetectionMetrics, SurgeDetection
from services.classifier.logic import Classifier
from services.classifier.surges import mention_terms
from veille import bus
from veille.config import VeilleConfig, load_config
from veille.health import Health
from veille.language import detect_language, preload
from veille.messaging import DeadLetterSink, dead_letter_middleware, make_broker, publish_model
from veille.metrics import PREFIX, ServiceMetrics
from veille.models import AlertRaised, MentionIngested, Sentiment, utcnow
from veille.sentiment import SentimentBackend, make_backend
from veille.settings import ServiceSettings

__all__ = ["ClassifierApp", "create_app"]

NAME = "classifier"
log = structlog.get_logger("classifier")


class ClassifierApp:
    """The running classifier."""

    name = NAME

    def __init__(
        self,
        settings: ServiceSettings,
        config: VeilleConfig,
        *,
        sentiment: SentimentBackend | None = None,
        metrics: ServiceMetrics | None = None,
        clock: Clock | None = None,
        tick_interval: float | None = 1.0,
        flush_interval: float = 0.02,
        grace: timedelta = timedelta(seconds=15),
        max_workers: int = 1,
        batch_size: int = 500,
    ) -> None:
        """Build the classifier; ``tick_interval=None`` leaves stepping the detectors to :meth:`tick`."""
        self.settings = settings
        self.config = config
        self.clock: Clock = clock or utcnow
        self.tick_interval = tick_interval
        self.flush_interval = flush_interval
        self.grace = grace
        self.detection: SurgeDetection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = metrics or ServiceMetrics(NAME)
        self.health = Health()
        self.mentions = Counter(
            f"{PREFIX}_mentions_classified_total",
            "Mentions classified, by source, detected language and sentiment.",
            ["source", "lang", "sentiment"],
            registry=self.metrics.registry,
        )
        self.matched = Counter(
            f"{PREFIX}_watch_mentions_total",
            "Mentions matching a watch, by watch and sentiment.",
            ["watch", "sentiment"],
            registry=self.metrics.registry,
        )
        self.alerts = Counter(
            f"{PREFIX}_alerts_raised_total",
            "Alerts published, by watch and kind.",
            ["watch", "kind"],
            registry=self.metrics.registry,
        )
        self.detection_metrics = DetectionMetrics(self.metrics.registry)
        backend = sentiment or make_backend("lexicon")

        def score(text: str, lang: str | None) -> tuple[Sentiment, float]:
            result = backend.analyze(text, lang)
            return result.label, result.score

        self.classifier = Classifier(config, score, detect_language)
        self.sink = DeadLetterSink(NAME, self.metrics)
        middleware = dead_letter_middleware(NAME, bus.MENTIONS.name, self.metrics, self.sink)
        self.broker: NatsBroker = make_broker(settings, NAME, self.metrics, middlewares=(middleware,))
        consumer = bus.CLASSIFIER_CONSUMER
        subscriber = self.broker.subscriber(
            consumer.filter_subject,
            stream=JStream(consumer.stream, declare=False),
            durable=consumer.durable,
            pull_sub=PullSub(batch_size=batch_size, timeout=1.0),
            max_workers=max_workers,
            ack_policy=AckPolicy.MANUAL,
            title="classify_mention",
            description="Classify each raw mention; publish it classified, and alerts for its watches.",
        )
        subscriber(self.classify_mention)
        self.health.add("nats", self._nats_problem)

    def _nats_problem(self) -> str | None:
        connection = self._connection()
        if connection is None or not connection.is_connected:
            return "not connected to NATS"
        return None

    def _connection(self) -> Any:
        try:
            return self.broker.connection
        except Exception:
            return None

    async def classify_mention(self, mention: MentionIngested) -> None:
        """Classify one mention, publish it and its alerts, count it for spikes (acked by the middleware)."""
        result = self.classifier.classify(mention)
        classified = result.mention
        js = self.broker.connection.jetstream()
        waits: list[Any] = [publish_model(js, bus.classified_subject(mention.source), classified, msg_id=mention.id)]
        waits.extend(self.publish_alert(alert) for alert in result.alerts)
        if classified.watches and self.detection is not None:
            counted = self.detection.record(classified, mention_terms(result.body))
            if counted is not None:
                waits.append(counted)
        await asyncio.gather(*waits)
        self.mentions.labels(mention.source, classified.lang or "und", classified.sentiment).inc()
        for watch in classified.watches:
            self.matched.labels(watch, classified.sentiment).inc()

    async def publish_alert(self, alert: AlertRaised) -> None:
        """Publish an alert with its deterministic ``Nats-Msg-Id`` (``<id>:resolved`` for a resolution)."""
        js = self.broker.connection.jetstream()
        msg_id = alert.id if alert.status == "firing" else f"{alert.id}:{alert.status}"
        ack = await js.publish(
            bus.alert_subject(alert.watch),
            alert.model_dump_json().encode(),
            headers={"Nats-Msg-Id": msg_id},
            timeout=10.0,
        )
        if ack.duplicate:
            log.info("classifier.alert_deduplicated", alert_id=alert.id, status=alert.status)
            return
        self.alerts.labels(alert.watch, alert.kind).inc()
        log.info(
            "classifier.alert_raised",
            alert_id=alert.id,
            watch=alert.watch,
            kind=alert.kind,
            status=alert.status,
            severity=alert.severity,
            summary=alert.summary,
        )

    async def tick(self) -> list[AlertRaised]:
        """Flush pending counts, then step every watch's detectors up to the clock; return the alerts."""
        assert self.detection is not None, "start() first"
        await self.detection.flush()
        return await self.detection.tick(self.clock())

    async def start(self) -> None:
        """Connect, declare the topology, start consuming."""
        await self.broker.connect()
        self.metrics.nats_connected.labels(NAME).set(1)
        js = self.broker.connection.jetstream()
        await bus.ensure_topology(js, replicas=self.settings.stream_replicas)
        self.sink.bind(self.broker.connection)
        await asyncio.to_thread(preload)
        kv = await js.key_value(bus.DETECTOR.name)
        self.detection = SurgeDetection(
            kv,
            js,
            self.config.watches,
            self.publish_alert,
            self.detection_metrics,
            clock=self.clock,
            grace=self.grace,
            flush_interval=self.flush_interval,
        )
        self._tasks.append(asyncio.create_task(self.detection.run_flusher()))
        if self.tick_interval is not None:
            self._tasks.append(asyncio.create_task(self.detection.run_ticker(self.tick_interval)))
        await self.broker.start()

    async def stop(self) -> None:
        """Drain the subscriber (its last counts are flushed), stop the detection loops, disconnect."""
        stopping = asyncio.create_task(self.broker.stop())
        try:
            await stopping
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._tasks.clear()


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    sentiment: SentimentBackend | None = None,
    metrics: ServiceMetrics | None = None,
    **options: Any,
) -> ClassifierApp:
    """Build the classifier from settings (and optional parts a test provides: clock, intervals ...)."""
    return ClassifierApp(
        settings, config or load_config(settings.config), sentiment=sentiment, metrics=metrics, **options
    )
