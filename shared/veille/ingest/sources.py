"""Helpers shared by the source services: per-watch targets, fetchers from config, JSON and times."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from veille.config import VeilleConfig
from veille.ingest.cursors import cursor_key
from veille.ingest.http import Fetcher, FetchError, RateLimiter
from veille.ingest.matching import watches_for
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Target
from veille.ingest.textclean import decode_utf8

__all__ = ["SearchSection", "configured", "load_json", "make_fetcher", "parse_time", "search_targets"]


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


def load_json(body: bytes) -> tuple[Any, bool]:
    """Decode a JSON body; return it and whether invalid UTF-8 had to be replaced.

    Raises :class:`FetchError` ``invalid_json`` when the body is not JSON.
    """
    text, repaired = decode_utf8(body)
    try:
        return json.loads(text), repaired
    except ValueError as exc:
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
