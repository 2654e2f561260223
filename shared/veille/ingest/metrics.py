"""Metrics every ingestor exports, on the service's registry."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from veille.metrics import PREFIX, ServiceMetrics

__all__ = ["IngestMetrics"]


class IngestMetrics:
    """Fetches, mentions, errors by kind, bad input, lag and quota, labelled by source."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        registry = metrics.registry
        self.fetches = Counter(
            f"{PREFIX}_ingest_fetches_total",
            "Polls of a feed or watch, by outcome (ok, not_modified, error).",
            ["source", "outcome"],
            registry=registry,
        )
        self.fetch_seconds = Histogram(
            f"{PREFIX}_ingest_fetch_seconds",
            "Time to poll one feed or watch, requests and parsing included.",
            ["source"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.mentions = Counter(
            f"{PREFIX}_ingest_mentions_published_total",
            "Mentions published to the bus (new ones; replays dropped by Nats-Msg-Id are not counted).",
            ["source"],
            registry=registry,
        )
        self.duplicates = Counter(
            f"{PREFIX}_ingest_duplicates_total",
            "Mentions the stream already had (same Nats-Msg-Id), so were not stored again.",
            ["source"],
            registry=registry,
        )
        self.errors = Counter(
            f"{PREFIX}_ingest_errors_total",
            "Failed polls by kind: timeout, connect, too_large, rate_limited, unavailable, http_5xx, "
            "http_4xx, unauthorized, not_xml, unsafe_xml, not_a_feed, invalid_json, ...",
            ["source", "kind"],
            registry=registry,
        )
        self.entries_rejected = Counter(
            f"{PREFIX}_ingest_entries_rejected_total",
            "Entries not published, by reason (not_matching, too_old; and malformed items, also dead-lettered: "
            "no_link, no_id, wrong_type, invalid, invalid_event, invalid_json, malformed).",
            ["source", "reason"],
            registry=registry,
        )
        self.entries_repaired = Counter(
            f"{PREFIX}_ingest_entries_repaired_total",
            "Entries published after a repair, by problem (no_date, bad_date, html_stripped, invalid_utf8).",
            ["source", "problem"],
            registry=registry,
        )
        self.lag = Gauge(
            f"{PREFIX}_ingest_lag_seconds",
            "Now minus the publication time of the newest item seen, per feed or watch.",
            ["source", "target"],
            registry=registry,
        )
        self.quota = Gauge(
            f"{PREFIX}_ingest_quota_remaining",
            "Requests left in the current rate-limit window, where the source says.",
            ["source"],
            registry=registry,
        )
        self.consecutive_failures = Gauge(
            f"{PREFIX}_ingest_consecutive_failures",
            "Failed polls in a row, per feed or watch (0 after a success).",
            ["source", "target"],
            registry=registry,
        )
        self.last_success = Gauge(
            f"{PREFIX}_ingest_last_success_timestamp_seconds",
            "Unix time of the last successful poll, per feed or watch.",
            ["source", "target"],
            registry=registry,
        )
        # The source's own health: conditions that lose or delay mentions without failing a poll.
        self.backlog_truncated = Counter(
            f"{PREFIX}_source_backlog_truncated_total",
            "Polls that stopped paging before reaching the cursor (a watch busier than the pages read): "
            "X resumes the rest on the next poll; Hacker News, Reddit and GDELT skip it.",
            ["source", "target"],
            registry=registry,
        )
        self.backlog_skipped = Counter(
            f"{PREFIX}_source_backlog_skipped_total",
            "Results a truncated poll left unread for good, where the source says how many matched.",
            ["source"],
            registry=registry,
        )
        self.backlog_pending = Gauge(
            f"{PREFIX}_source_backlog_pending",
            "1 while a watch has results its polls have not read yet (its last poll stopped at the page "
            "limit), 0 once a poll reached the cursor.",
            ["source", "target"],
            registry=registry,
        )
        self.cursor_expired = Counter(
            f"{PREFIX}_source_cursor_expired_total",
            "Polls whose cursor the source no longer accepts (X: a since_id older than the recent search's 7 "
            "days): the poll started again from what the source still has; mentions in between are lost.",
            ["source", "target"],
            registry=registry,
        )
        self.watch_untargeted = Gauge(
            f"{PREFIX}_source_watch_untargeted",
            "1 for a watch this source cannot search (no hashtag, no term it can send): it gets nothing from it.",
            ["source", "watch"],
            registry=registry,
        )
        self.auth_renewals = Counter(
            f"{PREFIX}_source_auth_renewals_total",
            "Renewals of an expired or refused session, by method (refresh: the refresh token; login: new "
            "credentials) and outcome (ok, failed).",
            ["source", "method", "outcome"],
            registry=registry,
        )
        self.auth_failing = Gauge(
            f"{PREFIX}_source_auth_failing",
            "1 while the source cannot get a session (its last login or renewal failed), 0 once one works.",
            ["source"],
            registry=registry,
        )
        self.config_warning = Gauge(
            f"{PREFIX}_source_config_warning",
            "1 while a setting works against the source's rules (user_agent: a User-Agent Reddit throttles).",
            ["source", "warning"],
            registry=registry,
        )
