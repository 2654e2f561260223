"""The notifier's metrics, on the service's registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from veille.metrics import PREFIX, ServiceMetrics

__all__ = ["SUPPRESSION_REASONS", "NotifierMetrics"]

SUPPRESSION_REASONS = ("silenced", "grouped", "truncated", "deduplicated", "quiet_hours")


class NotifierMetrics:
    """Notifications by receiver and outcome, latency, retries, failed attempts, dead letters and suppressions."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.notifications = Counter(
            f"{PREFIX}_notifications_total",
            "Notifications finished, by receiver, integration and outcome (sent, dead_lettered).",
            ["receiver", "integration", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_notification_delivery_seconds",
            "Time from claiming a notification to the receiver accepting it, retries included.",
            ["receiver", "integration"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
            registry=registry,
        )
        self.retries = Counter(
            f"{PREFIX}_notification_retries_total",
            "Delivery attempts that failed and were retried, by receiver and integration.",
            ["receiver", "integration"],
            registry=registry,
        )
        self.delivery_errors = Counter(
            f"{PREFIX}_notification_delivery_errors_total",
            "Failed delivery attempts, retried or not, by receiver, integration and kind "
            "(timeout, redirect, rate_limited, status_4xx, status_5xx: HTTP or SMTP, unreachable, error).",
            ["receiver", "integration", "kind"],
            registry=registry,
        )
        self.dead_letters = Counter(
            f"{PREFIX}_notification_dead_letters_total",
            "Notifications sent to the dead-letter stream after their last attempt.",
            ["receiver", "integration"],
            registry=registry,
        )
        self.suppressed = Counter(
            f"{PREFIX}_notifications_suppressed_total",
            "Alerts or notifications not sent on their own, by reason "
            "(silenced, grouped, truncated, deduplicated, quiet_hours).",
            ["reason"],
            registry=registry,
        )
        self.pending_groups = Gauge(
            f"{PREFIX}_notification_groups",
            "Notification groups held in KV at the last scan.",
            registry=registry,
        )
        self.partitions = Gauge(
            f"{PREFIX}_notifier_partitions_held",
            "Partitions of the alerts stream (and the legacy consumer) this replica holds and consumes.",
            registry=registry,
        )
        self.python_vulnerable = Gauge(
            f"{PREFIX}_notifier_python_vulnerable",
            "1 when the Python running the notifier lacks the fix of an email-header CVE (by CVE id); "
            "veille neutralises its headers itself, but upgrade the interpreter.",
            ["cve"],
            registry=registry,
        )
        for reason in SUPPRESSION_REASONS:
            self.suppressed.labels(reason)
