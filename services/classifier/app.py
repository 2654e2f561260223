"""Composition root of the classifier: broker, subscriber, metrics, health."""

from __future__ import annotations

from typing import Any

import structlog
from faststream import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from prometheus_client import Counter

from services.classifier.logic import Classifier
from veille import bus
from veille.config import VeilleConfig, load_config
from veille.health import Health
from veille.language import detect_language
from veille.messaging import DeadLetterSink, dead_letter_middleware, make_broker, publish_model
from veille.metrics import PREFIX, ServiceMetrics
from veille.models import MentionIngested, Sentiment
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
    ) -> None:
        self.settings = settings
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
            pull_sub=PullSub(batch_size=100, timeout=1.0),
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
        """Classify one mention, publish the result and its alerts (acked by the middleware)."""
        result = self.classifier.classify(mention)
        classified = result.mention
        js = self.broker.connection.jetstream()
        await publish_model(js, bus.classified_subject(mention.source), classified, msg_id=mention.id)
        for alert in result.alerts:
            await publish_model(js, bus.alert_subject(alert.watch), alert, msg_id=alert.id)
            self.alerts.labels(alert.watch, alert.kind).inc()
            log.info("classifier.alert_raised", alert_id=alert.id, watch=alert.watch, kind=alert.kind)
        self.mentions.labels(mention.source, classified.lang or "und", classified.sentiment).inc()
        for watch in classified.watches:
            self.matched.labels(watch, classified.sentiment).inc()
        log.debug(
            "classifier.mention_classified",
            mention_id=mention.id,
            lang=classified.lang,
            sentiment=classified.sentiment,
            watches=classified.watches,
        )

    async def start(self) -> None:
        """Connect, declare the topology, start consuming."""
        await self.broker.connect()
        self.metrics.nats_connected.labels(NAME).set(1)
        await bus.ensure_topology(self.broker.connection.jetstream(), replicas=self.settings.stream_replicas)
        self.sink.bind(self.broker.connection)
        await self.broker.start()

    async def stop(self) -> None:
        """Drain the subscriber and close the connection."""
        await self.broker.stop()


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    sentiment: SentimentBackend | None = None,
    metrics: ServiceMetrics | None = None,
) -> ClassifierApp:
    """Build the classifier from settings (and optional parts a test provides)."""
    return ClassifierApp(settings, config or load_config(settings.config), sentiment=sentiment, metrics=metrics)
