"""Helpers shared by the source services: per-watch targets, fetchers from config, JSON and times."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from veille.config import VeilleConfig
from veille.httpclient import make_http_client
from veille.ingest.cursors import cursor_key
from veille.ingest.http import Fetcher, FetchError, RateLimiter
from veille.ingest.matching import build_recheck, watches_for
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollingSource, StreamingSource, Target
from veille.ingest.textclean import decode_utf8
from veille.metrics import ServiceMetrics
from veille.settings import ServiceSettings

__all__ = [
    "SearchParts",
    "SearchSection",
    "configured",
    "load_json",
    "make_fetcher",
    "parse_time",
    "search_parts",
    "search_targets",
]


class SearchSection(Protocol):
    """The config fields every per-watch source section has."""

    @property
    def enabled(self) -> bool:
        """Whether the source runs."""

    @property
    def watches(self) -> list[str]:
        """Watches to search for (empty: all)."""

    @property
    def max_bytes(self) -> int:
        """Response size cap."""

    @property
    def interval(self) -> timedelta:
        """Time between two polls of one target."""

    @property
    def timeout(self) -> timedelta:
        """Deadline for a whole response."""

    @property
    def min_interval(self) -> timedelta:
        """Least time between two requests."""

    @property
    def failing_after(self) -> int:
        """Failures in a row that turn /readyz red."""

    @property
    def jitter(self) -> float:
        """Spread of each interval, as a fraction."""


def configured(config: VeilleConfig, section: str) -> bool:
    """Whether ``sources.<section>`` appears in the configuration file and is enabled.

    Sources that search the internet on their own run only when their section is written (an
    empty ``hackernews: {}`` is enough): a configuration without it, or a test, never reaches out.
    """
    return section in config.sources.model_fields_set and bool(getattr(config.sources, section).enabled)


def make_fetcher(
    client: httpx.AsyncClient,
    *,
    source: str,
    max_bytes: int,
    timeout: float,
    min_interval: float,
    metrics: IngestMetrics,
) -> Fetcher:
    """A fetcher with the section's limits, reporting quota into the source's gauge."""
    return Fetcher(
        client,
        max_bytes=max_bytes,
        timeout=timeout,
        limiter=RateLimiter(min_interval=min_interval),
        on_quota=metrics.quota.labels(source).set,
    )


def search_targets(
    source: str, config: VeilleConfig, only: list[str], *, interval: float, params: dict[str, Any] | None = None
) -> list[Target]:
    """One target per watch allowing ``source`` (limited to ``only``), each re-checked locally."""
    return [
        Target(
            key=cursor_key(source, watch.name),
            name=watch.name,
            interval=interval,
            watch=watch.name,
            recheck=True,
            params={"query": watch.query, "languages": list(watch.languages), **(params or {})},
        )
        for watch in watches_for(config, source, only)
    ]


@dataclass(frozen=True)
class SearchParts:
    """What every per-watch source service is built from: its section, metrics and HTTP client."""

    name: str
    source: str
    section: SearchSection
    config: VeilleConfig
    metrics: ServiceMetrics
    ingest_metrics: IngestMetrics
    client: httpx.AsyncClient
    owns_client: bool

    def fetcher(self) -> Fetcher:
        """A fetcher with the section's limits (a new rate limiter each call)."""
        return make_fetcher(
            self.client,
            source=self.source,
            max_bytes=self.section.max_bytes,
            timeout=self.section.timeout.total_seconds(),
            min_interval=self.section.min_interval.total_seconds(),
            metrics=self.ingest_metrics,
        )

    def targets(self, *, when: bool = True) -> list[Target]:
        """One target per watch the section allows, or none when ``when`` is false."""
        if not when:
            return []
        section = self.section
        return search_targets(self.source, self.config, section.watches, interval=section.interval.total_seconds())

    def service(
        self,
        settings: ServiceSettings,
        source: PollingSource | StreamingSource,
        *,
        clock: Clock | None,
        streams: tuple[StreamingSource, ...] = (),
    ) -> IngestService:
        """The ingest service running ``source`` with the section's failure and jitter settings."""
        return IngestService(
            self.name,
            settings,
            source,
            streams=streams,
            metrics=self.metrics,
            ingest_metrics=self.ingest_metrics,
            clock=clock,
            recheck=build_recheck(self.config),
            http_client=self.client,
            owns_http_client=self.owns_client,
            failing_after=self.section.failing_after,
            jitter=self.section.jitter,
        )


def search_parts(
    name: str,
    source: str,
    section: SearchSection,
    settings: ServiceSettings,
    config: VeilleConfig,
    *,
    http_client: httpx.AsyncClient | None,
    metrics: ServiceMetrics | None,
    user_agent: str | None = None,
) -> SearchParts:
    """Metrics and the one HTTP client of a source service (the test's client when it gives one)."""
    metrics = metrics or ServiceMetrics(name)
    client = http_client or make_http_client(
        user_agent=user_agent or settings.user_agent, timeout=section.timeout.total_seconds()
    )
    return SearchParts(
        name, source, section, config, metrics, IngestMetrics(metrics), client, owns_client=http_client is None
    )


def load_json(body: bytes) -> tuple[Any, bool]:
    """Decode a JSON body; return it and whether invalid UTF-8 had to be replaced.

    Raises :class:`FetchError` ``invalid_json`` when the body is not JSON.
    """
    text, repaired = decode_utf8(body)
    try:
        return json.loads(text), repaired
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        preview = text[:60].replace("\n", " ")
        raise FetchError("invalid_json", f"body is not JSON ({exc}); starts with {preview!r}", retryable=False) from exc


def parse_time(value: Any) -> datetime | None:
    """A timezone-aware datetime from ISO 8601 text or Unix seconds, or None if unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
