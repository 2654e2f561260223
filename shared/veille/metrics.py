"""Metrics on an explicit registry with the ``veille_`` prefix, shared by every service."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from veille import __version__

__all__ = ["PREFIX", "ServiceMetrics"]

PREFIX = "veille"


class ServiceMetrics:
    """Metrics every service exports; a service adds its own on the same ``registry``."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else CollectorRegistry()
        self.build_info = Info(f"{PREFIX}_build", "veille build information.", registry=self.registry)
        self.build_info.info({"version": __version__, "service": service})
        self.messages = Counter(
            f"{PREFIX}_messages_processed_total",
            "Messages consumed from the bus, by subject and outcome (ok, dead_lettered, retried).",
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
