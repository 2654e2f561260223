"""Generate the Grafana dashboard deploy/grafana/dashboards/veille.json.

The dashboard is written as data here, so panels stay uniform and reviewable; the committed JSON is
what Grafana provisions, and tests/deploy/ checks it is what this script makes:

    python scripts/gen_dashboard.py            # rewrite the JSON
    python scripts/gen_dashboard.py --check    # exit 1 if the committed JSON is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards" / "veille.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
SERVICES = 'job=~"ingest-.+|classifier|notifier"'


class Layout:
    """Places panels on Grafana's 24-column grid, row after row."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> None:
        """Start a new row titled ``title``."""
        self.y += self.row_height
        self.x = self.row_height = 0
        self.panels.append(
            {
                "type": "row",
                "id": self._id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def add(self, panel: dict[str, Any], w: int, h: int = 8) -> None:
        """Add ``panel`` (w columns wide) after the previous one, wrapping at 24 columns."""
        if self.x + w > 24:
            self.y += self.row_height
            self.x = self.row_height = 0
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    """One PromQL query of a panel."""
    out: dict[str, Any] = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto", "refId": ref}
    if instant:
        out["instant"] = True
        out["range"] = False
    return out


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "short",
    stack: bool = False,
    percent: bool = False,
    bars: bool = False,
) -> dict[str, Any]:
    """A time series panel."""
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 80 if bars else (30 if stack else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "percent" if percent else ("normal" if stack or bars else "none")},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit, "min": 0, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str, description: str, expr: str, *, unit: str = "short", thresholds: list[float] | None = None
) -> dict[str, Any]:
    """A single-number panel, green then amber then red at ``thresholds``."""
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    for color, value in zip(("orange", "red"), thresholds or [], strict=False):
        steps.append({"color": color, "value": value})
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, instant=True)],
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def piechart(title: str, description: str, expr: str, legend: str) -> dict[str, Any]:
    """A pie chart of an instant query over the dashboard's time range."""
    return {
        "type": "piechart",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, legend, instant=True)],
        "fieldConfig": {"defaults": {"unit": "short"}, "overrides": []},
        "options": {
            "pieType": "donut",
            "legend": {"displayMode": "table", "placement": "right", "values": ["value", "percent"]},
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def table(title: str, description: str, expr: str) -> dict[str, Any]:
    """A table of an instant query."""
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [target(expr, instant=True) | {"format": "table"}],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "transformations": [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True, "Value": True}}}
        ],
    }


def build() -> dict[str, Any]:
    """The whole dashboard."""
    g = Layout()
    watch = 'watch=~"$watch"'
    source = 'source=~"$source"'

    g.row("Overview")
    g.add(
        stat(
            "Mentions (range)",
            "Mentions published by the ingestors over the dashboard's time range.",
            f"sum(increase(veille_ingest_mentions_published_total{{{source}}}[$__range]))",
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Watch matches (range)",
            "Mentions that matched a watch over the time range.",
            f"sum(increase(veille_watch_mentions_total{{{watch}}}[$__range]))",
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Alerts raised (range)",
            "Alerts the classifier raised (spikes and negative mentions).",
            f"sum(increase(veille_alerts_raised_total{{{watch}}}[$__range]))",
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Notifications dead-lettered (range)",
            "Notifications that exhausted their retries: nobody got them.",
            "sum(increase(veille_notification_dead_letters_total[$__range]))",
            thresholds=[1, 1],
        ),
        4,
        4,
    )
    g.add(
        stat(
            "Services down",
            "Scrape targets of veille services that do not answer.",
            f"count(up{{{SERVICES}}} == 0) or vector(0)",
            thresholds=[1, 1],
        ),
        4,
        4,
    )
    g.add(
        stat(
            "veille alerts firing",
            "Prometheus alerts of veille firing now (see the table below).",
            'count(ALERTS{alertname=~"Veille.+", alertstate="firing"}) or vector(0)',
            thresholds=[1, 1],
        ),
        4,
        4,
    )

    g.row("Mentions")
    g.add(
        timeseries(
            "Mentions per source",
            "New mentions published to the bus per second, by source.",
            [
                target(
                    f"sum by (source) (rate(veille_ingest_mentions_published_total{{{source}}}[{RATE}]))", "{{source}}"
                )
            ],
            unit="ops",
            stack=True,
        ),
        12,
    )
    g.add(
        timeseries(
            "Mentions per watch",
            "Classified mentions matching each watch, per second.",
            [target(f"sum by (watch) (rate(veille_watch_mentions_total{{{watch}}}[{RATE}]))", "{{watch}}")],
            unit="ops",
            stack=True,
        ),
        12,
    )
    g.add(
        timeseries(
            "Sentiment mix per watch",
            "Share of negative, neutral and positive mentions among the watches' matches.",
            [target(f"sum by (sentiment) (rate(veille_watch_mentions_total{{{watch}}}[{RATE}]))", "{{sentiment}}")],
            unit="percent",
            percent=True,
        ),
        12,
    )
    g.add(
        piechart(
            "Sentiment (range)",
            "Sentiment of the watches' matches over the time range.",
            f"sum by (sentiment) (increase(veille_watch_mentions_total{{{watch}}}[$__range]))",
            "{{sentiment}}",
        ),
        6,
    )
    g.add(
        piechart(
            "Languages (range)",
            "Detected language of every classified mention over the time range.",
            f"sum by (lang) (increase(veille_mentions_classified_total{{{source}}}[$__range]))",
            "{{lang}}",
        ),
        6,
    )

    g.row("Spikes and alerts")
    g.add(
        timeseries(
            "Alerts raised by watch and kind",
            "Alerts per interval: volume_spike, negative_spike and negative_mention, by watch.",
            [
                target(
                    f"sum by (watch, kind) (increase(veille_alerts_raised_total{{{watch}}}[$__interval]))",
                    "{{watch}} {{kind}}",
                )
            ],
            bars=True,
        ),
        16,
    )
    g.add(
        table(
            "veille alerts firing",
            "Prometheus alert rules of veille (deploy/prometheus/rules) firing now.",
            'ALERTS{alertname=~"Veille.+", alertstate="firing"}',
        ),
        8,
    )

    g.add(
        timeseries(
            "Mentions vs baseline per watch",
            "Mentions of each watch in its last bucket (all and negative) against what the spike detector's "
            "baseline expected: a spike alert fires when the first rises well above the second.",
            [
                target(
                    f"max by (watch, series) (veille_watch_bucket_mentions{{{watch}}})", "{{watch}} {{series}} seen"
                ),
                target(
                    f"max by (watch, series) (veille_watch_bucket_expected_mentions{{{watch}}})",
                    "{{watch}} {{series}} expected",
                    "B",
                ),
            ],
        ),
        16,
    )
    g.add(
        timeseries(
            "Spike detector",
            "Buckets stepped per watch, mentions too late for their bucket, and KV write conflicts between replicas.",
            [
                target(
                    f"sum by (watch) (rate(veille_spike_detector_steps_total{{{watch}}}[{RATE}]))", "steps {{watch}}"
                ),
                target(
                    f"sum by (watch) (rate(veille_spike_late_mentions_total{{{watch}}}[{RATE}]))", "late {{watch}}", "B"
                ),
                target(f"sum(rate(veille_spike_state_conflicts_total[{RATE}]))", "KV conflicts", "C"),
            ],
            unit="ops",
        ),
        8,
    )

    g.row("Notifications")
    g.add(
        timeseries(
            "Notification outcomes",
            "Notifications finished per second, by receiver, integration and outcome.",
            [
                target(
                    f"sum by (receiver, integration, outcome) (rate(veille_notifications_total[{RATE}]))",
                    "{{receiver}} {{integration}} {{outcome}}",
                )
            ],
            unit="ops",
        ),
        12,
    )
    g.add(
        timeseries(
            "Delivery latency",
            "From claiming a notification to the receiver accepting it, retries included.",
            [
                target(
                    "histogram_quantile(0.5, sum by (le, receiver) "
                    f"(rate(veille_notification_delivery_seconds_bucket[{RATE}])))",
                    "p50 {{receiver}}",
                ),
                target(
                    "histogram_quantile(0.95, sum by (le, receiver) "
                    f"(rate(veille_notification_delivery_seconds_bucket[{RATE}])))",
                    "p95 {{receiver}}",
                    "B",
                ),
            ],
            unit="s",
        ),
        12,
    )
    g.add(
        timeseries(
            "Retries and dead letters",
            "Failed delivery attempts that were retried, and notifications given up.",
            [
                target(
                    f"sum by (receiver, integration) (rate(veille_notification_retries_total[{RATE}]))",
                    "retry {{receiver}} {{integration}}",
                ),
                target(
                    f"sum by (receiver, integration) (rate(veille_notification_dead_letters_total[{RATE}]))",
                    "dead letter {{receiver}} {{integration}}",
                    "B",
                ),
            ],
            unit="ops",
        ),
        8,
    )
    g.add(
        timeseries(
            "Suppressed",
            "Alerts not sent on their own: grouped, deduplicated, silenced, quiet hours.",
            [target(f"sum by (reason) (rate(veille_notifications_suppressed_total[{RATE}]))", "{{reason}}")],
            unit="ops",
            stack=True,
        ),
        8,
    )
    g.add(
        timeseries(
            "Notification groups",
            "Groups of alerts waiting in KV for their next notification.",
            [target("max(veille_notification_groups)", "groups")],
        ),
        8,
    )
    g.add(
        timeseries(
            "Delivery errors by kind",
            "Failed delivery attempts: timeout (the receiver did not answer within its timeout), redirect "
            "(never followed), rate_limited, status_4xx, status_5xx, unreachable. See the threat model in "
            "docs/operations.md.",
            [
                target(
                    f"sum by (receiver, kind) (rate(veille_notification_delivery_errors_total[{RATE}]))",
                    "{{receiver}} {{kind}}",
                )
            ],
            unit="ops",
        ),
        16,
    )
    g.add(
        stat(
            "Python lacks the email header fix",
            "1 when the notifier's interpreter lacks the CVE-2024-6923 fix (veille neutralises headers itself; "
            "upgrade Python anyway).",
            "max(veille_notifier_python_vulnerable)",
        ),
        8,
    )

    g.row("Pipeline: lag, throughput, dead letters")
    g.add(
        timeseries(
            "Consumer lag",
            "Messages waiting for each durable consumer (JetStream num_pending).",
            [
                target("max by (stream, consumer) (veille_consumer_pending_messages)", "{{consumer}} on {{stream}}"),
                target("max by (stream, consumer) (veille_consumer_ack_pending_messages)", "{{consumer}} unacked", "B"),
            ],
        ),
        12,
    )
    g.add(
        timeseries(
            "Messages processed",
            "Messages consumed per second by service and outcome (ok, retried, dead_lettered).",
            [
                target(
                    f"sum by (service, outcome) (rate(veille_messages_processed_total[{RATE}]))",
                    "{{service}} {{outcome}}",
                )
            ],
            unit="ops",
        ),
        12,
    )
    g.add(
        timeseries(
            "Processing time p95",
            "95th percentile of the time to process one message, receipt to ack.",
            [
                target(
                    "histogram_quantile(0.95, sum by (le, service) "
                    f"(rate(veille_message_processing_seconds_bucket[{RATE}])))",
                    "{{service}}",
                )
            ],
            unit="s",
        ),
        8,
    )
    g.add(
        timeseries(
            "Dead letters",
            "Messages sent to VEILLE_DEADLETTER, by service and kind of error.",
            [
                target(
                    "sum by (service, kind) (increase(veille_dead_letters_total[$__interval]))", "{{service}} {{kind}}"
                )
            ],
            bars=True,
        ),
        8,
    )
    g.add(
        timeseries(
            "NATS connection and readiness",
            "1 when connected to NATS / ready on /readyz, per replica.",
            [
                target("veille_nats_connected", "connected {{service}} {{instance}}"),
                target("veille_ready", "ready {{service}} {{instance}}", "B"),
            ],
        ),
        8,
    )

    g.add(
        timeseries(
            "JetStream taking writes",
            "1 per service while JetStream takes its writes; 0 while it is unavailable or a stream that "
            "refuses when full (dead letters, replays) is at its budget (docs/operations.md#disk-full).",
            [target("min by (service) (veille_jetstream_available)", "{{service}}")],
        ),
        8,
    )
    g.add(
        timeseries(
            "Message fields bounded, implausible times",
            "Over-long text cut or URLs dropped at the edge, times clamped, and mentions whose time the "
            "spike detector could not use.",
            [
                target(
                    f"sum by (field, action) (rate(veille_message_fields_bounded_total[{RATE}]))",
                    "{{field}} {{action}}",
                ),
                target(
                    f"sum by (bound) (rate(veille_spike_implausible_times_total[{RATE}]))",
                    "detector {{bound}}",
                    "B",
                ),
            ],
            unit="ops",
        ),
        16,
    )

    g.row("Ingestors")
    g.add(
        timeseries(
            "Time since last successful fetch",
            "Per feed or watch; VeilleIngestStale fires past 30 minutes.",
            [
                target(
                    f"time() - max by (source, target) (veille_ingest_last_success_timestamp_seconds{{{source}}})",
                    "{{source}} {{target}}",
                )
            ],
            unit="s",
        ),
        12,
    )
    g.add(
        timeseries(
            "Fetch errors by kind",
            "Failed polls per second: timeout, http_5xx, rate_limited, not_a_feed, ...",
            [
                target(
                    f"sum by (source, kind) (rate(veille_ingest_errors_total{{{source}}}[{RATE}]))",
                    "{{source}} {{kind}}",
                )
            ],
            unit="ops",
            stack=True,
        ),
        12,
    )
    g.add(
        timeseries(
            "Fetch outcomes",
            "Polls per second by outcome (ok, not_modified, error).",
            [
                target(
                    f"sum by (source, outcome) (rate(veille_ingest_fetches_total{{{source}}}[{RATE}]))",
                    "{{source}} {{outcome}}",
                )
            ],
            unit="ops",
            stack=True,
        ),
        8,
    )
    g.add(
        timeseries(
            "Publication lag",
            "Now minus the publication time of the newest item seen, per target.",
            [target(f"max by (source, target) (veille_ingest_lag_seconds{{{source}}})", "{{source}} {{target}}")],
            unit="s",
        ),
        8,
    )
    g.add(
        timeseries(
            "Rejected entries and duplicates",
            "Entries not published, by reason, and mentions already stored.",
            [
                target(
                    f"sum by (source, reason) (rate(veille_ingest_entries_rejected_total{{{source}}}[{RATE}]))",
                    "rejected {{source}} {{reason}}",
                ),
                target(
                    f"sum by (source) (rate(veille_ingest_duplicates_total{{{source}}}[{RATE}]))",
                    "duplicate {{source}}",
                    "B",
                ),
            ],
            unit="ops",
        ),
        8,
    )

    g.add(
        timeseries(
            "Feed parser restarts",
            "RSS parser processes replaced: over_budget (a document took longer than parse_timeout: a hostile "
            "or broken feed), crashed.",
            [target(f"sum by (reason) (increase(veille_ingest_parser_restarts_total[{RATE}]))", "{{reason}}")],
        ),
        8,
    )

    g.row("NATS server (prometheus-nats-exporter)")
    g.add(
        timeseries(
            "JetStream messages per stream",
            "Messages stored in each stream.",
            [target("max by (stream_name) (jetstream_stream_total_messages)", "{{stream_name}}")],
        ),
        8,
    )
    g.add(
        timeseries(
            "JetStream storage",
            "Bytes stored by JetStream, against its limit.",
            [
                target("max by (server_name) (jetstream_server_total_message_bytes)", "used {{server_name}}"),
                target("max by (server_name) (jetstream_server_max_storage)", "limit {{server_name}}", "B"),
            ],
            unit="bytes",
        ),
        8,
    )
    g.add(
        timeseries(
            "NATS connections",
            "Client connections per NATS server.",
            [target("sum by (server_id) (gnatsd_varz_connections)", "{{server_id}}")],
        ),
        8,
    )

    variables = [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Data source",
            "query": "prometheus",
            "current": {"text": "Prometheus", "value": "prometheus"},
            "hide": 0,
        },
        {
            "type": "query",
            "name": "watch",
            "label": "Watch",
            "datasource": DS,
            "query": {"query": "label_values(veille_watch_mentions_total, watch)", "refId": "watch"},
            "definition": "label_values(veille_watch_mentions_total, watch)",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "refresh": 2,
            "sort": 1,
            "current": {"text": "All", "value": "$__all"},
            "hide": 0,
        },
        {
            "type": "query",
            "name": "source",
            "label": "Source",
            "datasource": DS,
            "query": {"query": "label_values(veille_ingest_fetches_total, source)", "refId": "source"},
            "definition": "label_values(veille_ingest_fetches_total, source)",
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "refresh": 2,
            "sort": 1,
            "current": {"text": "All", "value": "$__all"},
            "hide": 0,
        },
    ]
    return {
        "uid": "veille-overview",
        "title": "veille",
        "description": "Mentions, sentiment, spikes and alerts, notifications and pipeline health. "
        "Generated by scripts/gen_dashboard.py; docs/operations.md explains how to read it.",
        "tags": ["veille"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": g.panels,
    }


def render() -> str:
    """The dashboard as the JSON text committed in the repository."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Write the dashboard, or with ``--check`` say whether the committed one is up to date."""
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is out of date: run python scripts/gen_dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
