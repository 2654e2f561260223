"""Composition root of the classifier: broker, batch consumer, spike detection, metrics, health.

Throughput. The classifier reads its durable consumer with :class:`veille.messaging.BatchConsumer`
(nats-py directly, no per-message FastStream pipeline): each fetch of up to ``batch_size`` mentions
is classified in one pass (:meth:`ClassifierApp.classify_batch`, the CPU work: language of the
batch's new texts, then their sentiment in one ``analyze_many`` call, then matching and stories
mention by mention, :meth:`Classifier.classify_many`), the classified mentions and their alerts are
published together (one write to the connection, :meth:`StreamPublisher.publish_many`, all their
stream acks awaited at once), their counts are added to the detector's pending deltas, and the batch
is acked (one write, :func:`veille.messaging.ack_all`) once the flusher has written those to KV. The
flusher writes every ``flush_interval`` (0.1 s) the counts of all the batches consumed meanwhile, and
a batch waiting for it does not hold up the next fetch: at a steady 1,000 mentions/s a fetch brings a
few mentions, and writing each watch's bucket per batch cost about as much CPU as classifying. For the
same reason, once it has caught up (nothing in hand as a fetch begins), a fetch waits up to ``linger``
(20 ms) after the first mention for more: every batch has a cost of its own (a wake-up, a handler call,
its writes to the server), and at 1,000 mentions/s batches of about 7 made the classifier use 0.72-0.76
of a core, against 0.44-0.51 with the linger, for about 25 ms more at the median of the
mention-to-webhook latency (``docs/benchmarks.md``). Mentions already in hand go at once.
A failing batch is retried one mention at a time by the consumer, so a poison mention only fails
itself. Where the time goes and the numbers: ``bench/classifier_bench.py``.

The FastStream broker still owns the connection (reconnects, connection metrics); the AsyncAPI
document (:mod:`veille.asyncapi`) describes the same subscription and does not depend on this
runtime subscriber.
"""

from __future__ import annotations

import asyncio
from collections import Counter as CounterOf
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from faststream.nats import NatsBroker
from nats.js import JetStreamContext
from nats.js.api import PubAck
from prometheus_client import Counter, Gauge

from services.classifier.detection import Clock, DetectionMetrics, SurgeDetection
from services.classifier.logic import Classification, Classifier
from services.classifier.surges import mention_terms
from veille import bus, stories
from veille.config import VeilleConfig, load_config
from veille.consumerlag import ConsumerLagMonitor
from veille.health import Health
from veille.jetstream import StreamPublisher, pub_ack
from veille.language import detect_language, preload
from veille.messaging import BatchConsumer, DeadLetterSink, gather_publishes, make_broker
from veille.metrics import KNOWN_LANGUAGES, KNOWN_SOURCES, PREFIX, ServiceMetrics, bounded_label
from veille.models import AlertRaised, MentionIngested, Sentiment, utcnow
from veille.sentiment import SentimentBackend, make_backend, speedups
from veille.settings import ServiceSettings
from veille.tasks import cancel_and_wait

__all__ = ["ClassifierApp", "create_app"]

NAME = "classifier"
_SUBJECTS_KEPT = 4096
"""Subjects remembered by :meth:`ClassifierApp._subject`."""
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
        flush_interval: float = 0.1,
        grace: timedelta = timedelta(seconds=15),
        batch_size: int = 500,
        linger: float = 0.02,
    ) -> None:
        """Build the classifier; ``tick_interval=None`` leaves stepping the detectors to :meth:`tick`.

        ``linger``: once caught up, how long a fetch waits after the first mention for more (see the module docstring).
        """
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
            "Mentions classified, by source and language (known values, else other) and sentiment.",
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
        backend = sentiment or make_backend()
        # The linear scorer's compiled inner loops (same scores, faster) or why they are not used.
        compiled = Gauge(
            f"{PREFIX}_sentiment_compiled",
            "1 when the linear sentiment scorer runs its compiled inner loops, 0 when it runs in pure "
            "Python (same scores, slower; the classifier.sentiment_scorer log line says why).",
            registry=self.metrics.registry,
        )
        compiled.set(1 if backend.name == "linear" and speedups.MODULE is not None else 0)
        log.info(
            "classifier.sentiment_scorer",
            backend=backend.name,
            scorer=speedups.STATUS if backend.name == "linear" else "-",
            # the near-duplicate stories' loops come from the same module, checked at import
            stories="compiled (C inner loops)" if stories.compiled() else "pure Python",
        )

        def score(text: str, lang: str | None) -> tuple[Sentiment, float]:
            result = backend.analyze(text, lang)
            return result.label, result.score

        def score_many(texts: list[str], langs: list[str | None]) -> list[tuple[Sentiment, float]]:
            return [(result.label, result.score) for result in backend.analyze_many(texts, langs)]

        self.classifier = Classifier(config, score, detect_language, terms=mention_terms, sentiment_many=score_many)
        self.sink = DeadLetterSink(NAME, self.metrics)
        self.broker: NatsBroker = make_broker(settings, NAME, self.metrics)
        self.js: JetStreamContext | None = None
        self.publisher = StreamPublisher()
        self._subjects: dict[tuple[str, Callable[[str], str]], str] = {}
        self.consumer: BatchConsumer[MentionIngested] = BatchConsumer(
            service=NAME,
            consumer=bus.CLASSIFIER_CONSUMER,
            model=MentionIngested,
            handler=self.classify_batch,
            metrics=self.metrics,
            sink=self.sink,
            batch_size=batch_size,
            linger=linger,
        )
        self.health.add("nats", self._nats_problem)
        self.lag = ConsumerLagMonitor(NAME, self.metrics.registry, [bus.CLASSIFIER_CONSUMER])

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
        """Classify one mention, publish it and its alerts, count it for spikes (a batch of one)."""
        written = await self.classify_batch([mention])
        if written is not None:
            await written

    async def classify_batch(self, mentions: list[MentionIngested]) -> asyncio.Future[None] | None:
        """Classify mentions, publish them and their alerts, and count them; the consumer acks after.

        Returns once every classified mention and alert is stored (stream acks), with a future done
        once the counts of the batch are written to the detector KV bucket (the flusher writes every
        batch counted in the last ``flush_interval`` at once; the consumer acks the batch only after it,
        without holding a fetch slot meanwhile). At least once, idempotent on a re-run
        (``Nats-Msg-Id`` is the mention id, alert ids are deterministic). Counts are recorded only
        after the publishes succeeded, so a failed batch, retried one mention at a time, is not
        counted twice in this process.
        """
        assert self.js is not None, "start() first"
        results = self.classifier.classify_many(mentions)
        alerts = [alert for result in results for alert in result.alerts]
        subject = self._subject
        messages: list[tuple[str, bytes, dict[str, str] | None]] = [
            (
                subject(result.mention.mention.source, bus.classified_subject),
                result.mention.model_dump_json().encode(),
                {"Nats-Msg-Id": result.mention.mention.id},
            )
            for result in results
        ]
        messages += [
            (subject(alert.watch, bus.alert_subject), alert.model_dump_json().encode(), _alert_headers(alert))
            for alert in alerts
        ]
        waits = await self.publisher.publish_many(messages)
        acks = await gather_publishes(waits)
        for alert, ack in zip(alerts, acks[len(results) :], strict=True):
            self._alert_published(alert, pub_ack(ack))
        self._count(results)
        if self.detection is None or not any(result.mention.watches for result in results):
            return None  # nothing counted: nothing to wait for
        return self.detection.written()

    def _subject(self, name: str, subject: Callable[[str], str]) -> str:
        """``subject(name)`` (a source's classified subject, a watch's alert subject), remembered.

        Sources and watches are few; the table stops growing at :data:`_SUBJECTS_KEPT` names (a
        hostile stream of made-up sources then costs the computation, never memory).
        """
        key = (name, subject)
        found = self._subjects.get(key)
        if found is None:
            found = subject(name)
            if len(self._subjects) < _SUBJECTS_KEPT:
                self._subjects[key] = found
        return found

    def _count(self, results: list[Classification]) -> None:
        """Add the batch's mentions to the detector's pending counts and the service metrics."""
        classified_by: CounterOf[tuple[str, str, str]] = CounterOf()
        matched_by: CounterOf[tuple[str, str]] = CounterOf()
        for result in results:
            classified = result.mention
            if classified.watches and self.detection is not None:
                self.detection.record(classified, result.terms, wait=False)
            source = bounded_label(classified.mention.source, KNOWN_SOURCES)
            lang = bounded_label(classified.lang or "und", KNOWN_LANGUAGES)
            classified_by[source, lang, classified.sentiment] += 1
            for watch in classified.watches:
                matched_by[watch, classified.sentiment] += 1
        for labels, n in classified_by.items():
            self.mentions.labels(*labels).inc(n)
        for pair, n in matched_by.items():
            self.matched.labels(*pair).inc(n)

    async def publish_alert(self, alert: AlertRaised) -> None:
        """Publish an alert with its deterministic ``Nats-Msg-Id`` (``<id>:resolved`` for a resolution)."""
        js = self.js or self.broker.connection.jetstream()
        ack = await js.publish(
            bus.alert_subject(alert.watch),
            alert.model_dump_json().encode(),
            headers=_alert_headers(alert),
            timeout=10.0,
        )
        self._alert_published(alert, ack)

    def _alert_published(self, alert: AlertRaised, ack: PubAck) -> None:
        """Count and log an alert the stream stored (or recognised as a duplicate)."""
        if ack.duplicate:
            log.info("classifier.alert_deduplicated", alert_id=alert.id, status=alert.status)
            return
        self.alerts.labels(alert.watch, alert.kind).inc()
        # A negative-mention alert is one per negative mention (hundreds a minute in a crisis, all
        # in the alerts stream and counted in veille_alerts_raised_total): logged at debug level.
        # Surges and their resolutions are few and are what an operator looks for: info.
        emit = log.debug if alert.kind == "negative_mention" else log.info
        emit(
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
        js = self.js = self.broker.connection.jetstream()
        await bus.ensure_topology(js, replicas=self.settings.stream_replicas)
        self.sink.bind(self.broker.connection)
        await self.publisher.start(self.broker.connection)
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
        self._tasks.append(asyncio.create_task(self.detection.run_flusher(), name="classifier-counts-flusher"))
        if self.tick_interval is not None:
            ticker = self.detection.run_ticker(self.tick_interval)
            self._tasks.append(asyncio.create_task(ticker, name="classifier-ticker"))
        await self.consumer.start(self.broker.connection)
        self.lag.start(js)

    async def stop(self) -> None:
        """Finish and ack the batch in hand (its counts flushed), stop the detection loops, disconnect."""
        await self.lag.stop()
        if self.detection is not None:
            self.detection.hurry()  # the batches in hand wait for their counts to be written
        try:
            await self.consumer.stop()
            await self.publisher.stop()
            await self.broker.stop()
        finally:
            await cancel_and_wait(self._tasks)
            self._tasks.clear()


def _alert_headers(alert: AlertRaised) -> dict[str, str]:
    """``Nats-Msg-Id`` of an alert: its deterministic id, ``<id>:<status>`` for a resolution."""
    return {"Nats-Msg-Id": alert.id if alert.status == "firing" else f"{alert.id}:{alert.status}"}


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
