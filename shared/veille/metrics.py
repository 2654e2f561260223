"""Metrics on an explicit registry with the ``veille_`` prefix, shared by every service."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from veille import __version__
from veille.models import bounded_fields

__all__ = ["KNOWN_LANGUAGES", "KNOWN_SOURCES", "OTHER", "PREFIX", "ServiceMetrics", "bounded_label", "observe_many"]

PREFIX = "veille"

OTHER = "other"
"""The label value of everything outside a label's known values."""

KNOWN_SOURCES: frozenset[str] = frozenset({"rss", "hackernews", "bluesky", "mastodon", "gdelt", "reddit", "x"})
"""The ingestors' source names: a ``source`` label takes one of these, or :data:`OTHER`."""

KNOWN_LANGUAGES: frozenset[str] = frozenset(
    {"und", "en", "fr", "de", "es", "it", "pt", "nl", "ca", "pl", "ru", "uk", "ar", "zh", "ja", "ko", "el", "he",
     "tr", "sv", "da", "no", "nb", "fi", "ro", "cs", "hu", "hi", "fa", "th", "vi", "id", "eu", "br", "oc"}
)  # fmt: skip
"""Languages a ``lang`` label names (those the detector knows, and a few more); the rest are :data:`OTHER`."""


def bounded_label(value: str | None, known: Collection[str], *, missing: str = "none") -> str:
    """``value`` when it is one of ``known``, :data:`OTHER` otherwise (``missing`` when it is None).

    Every metric label whose value comes from a message (source, language, watch, receiver ...) goes
    through this, so 3,000 distinct values on the bus make at most ``len(known) + 2`` series, not 3,000.
    """
    if value is None:
        return missing
    return value if value in known else OTHER


class _BoundedFieldsCollector(Collector):
    """Exports :func:`veille.models.bounded_fields` (process-wide) as a counter."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            f"{PREFIX}_message_fields_bounded",
            "Message fields cut or replaced at the edge, by field and action (truncated, dropped, clamped).",
            labels=["field", "action"],
        )
        for (field, action), count in sorted(bounded_fields().items()):
            family.add_metric([field, action], count)
        yield family


class ServiceMetrics:
    """Metrics every service exports; a service adds its own on the same ``registry``."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self.build_info = Info(f"{PREFIX}_build", "veille build information.", registry=self.registry)
        self.build_info.info({"version": __version__, "service": service})
        self.messages = Counter(
            f"{PREFIX}_messages_processed_total",
            "Messages consumed from the bus, by subject and outcome"
            " (ok, dead_lettered, retried, ack_failed: handled, left for redelivery).",
            ["service", "stream", "outcome"],
            registry=self.registry,
        )
        self.processing = Histogram(
            f"{PREFIX}_message_processing_seconds",
            "Time to process one message, from receipt to ack.",
            ["service"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters_total",
            "Messages sent to the dead-letter stream, by kind of error.",
            ["service", "kind"],
            registry=self.registry,
        )
        self.nats_connected = Gauge(
            f"{PREFIX}_nats_connected",
            "1 while the service is connected to NATS.",
            ["service"],
            registry=self.registry,
        )
        self.nats_reconnects = Counter(
            f"{PREFIX}_nats_reconnects_total",
            "Times the NATS connection was re-established.",
            ["service"],
            registry=self.registry,
        )
        self.ready = Gauge(f"{PREFIX}_ready", "1 when /readyz answers ready.", ["service"], registry=self.registry)
        self.registry.register(_BoundedFieldsCollector())


def observe_many(histogram: Histogram, amount: float, count: int) -> None:
    """``histogram.observe(amount)`` ``count`` times (a batch's handling time, once per message), at the cost of one.

    The same bucket counts and count as ``count`` calls; the sum is ``amount * count`` (equal up to the
    rounding of repeated additions). Written against prometheus_client's histogram internals (its
    ``_sum``, ``_buckets``, ``_upper_bounds``, unchanged since 0.4); without them (a labelled parent, which
    cannot be observed: ``observe`` says why), or for a NaN, the calls.
    """
    if count <= 0:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if count == 1 or amount != amount or bounds is None or buckets is None or total is None:
        for _ in range(count):
            histogram.observe(amount)
        return
    total.inc(amount * count)
    buckets[bisect_left(bounds, amount)].inc(count)  # the first bound >= amount (the last is +Inf)
