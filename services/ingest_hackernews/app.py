"""Composition root of the Hacker News ingestor (``ingest-hackernews``)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from services.ingest_hackernews.logic import SOURCE, advance_cursor, hit_mention, search_params
from veille.config import HackerNewsSource, VeilleConfig, load_config
from veille.ingest.cursors import Cursor
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.items import ItemMapper
from veille.ingest.matching import positive_terms
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.ingest.sources import configured, load_json, search_parts
from veille.metrics import ServiceMetrics
from veille.settings import ServiceSettings

__all__ = ["NAME", "HackerNewsSearch", "create_app", "enabled"]

NAME = "ingest-hackernews"
MAX_CLOCK_SKEW = 86400.0
"""Seconds past now a hit's ``created_at_i`` may be and still move the cursor."""
log = structlog.get_logger("ingest_hackernews")


class HackerNewsSearch:
    """Searches HN for each watch, newest first, pages until the cursor, publishes the new hits."""

    name = SOURCE

    def __init__(
        self, section: HackerNewsSource, targets: list[Target], fetcher: Fetcher, metrics: IngestMetrics | None = None
    ) -> None:
        self.section = section
        self.metrics = metrics
        self._targets = targets
        self.fetcher = fetcher
        self.url = str(section.base_url).rstrip("/") + "/search_by_date"

    def targets(self) -> list[Target]:
        """One target per watch."""
        return list(self._targets)

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Fetch the pages newer than the cursor; the poll fails as a whole if any page fails."""
        terms = positive_terms(str(target.params["query"]))
        if not terms:
            raise FetchError("untranslatable", "the watch query has no word or phrase to search for", retryable=False)
        seen_at = set(cursor.get("ids_at", []))
        max_pages = self.section.max_pages
        hits: list[Any] = []
        repaired: Counter[str] = Counter()
        page = pages = 0
        while page < max_pages:
            params = search_params(
                terms, list(self.section.tags), cursor, hits_per_page=self.section.hits_per_page, page=page
            )
            response = await self.fetcher.get(self.url, params=params)
            body, bad_utf8 = load_json(response.body)
            if bad_utf8:
                repaired["invalid_utf8"] += 1
            if not isinstance(body, dict) or not isinstance(body.get("hits"), list):
                raise FetchError("invalid_payload", "Algolia answer has no 'hits' list", retryable=False)
            hits.extend(body["hits"])
            pages += 1
            nb_pages = body.get("nbPages")
            page += 1
            if not isinstance(nb_pages, int) or page >= nb_pages:
                break
        nb_pages_total = body.get("nbPages") if isinstance(body, dict) else None
        truncated = isinstance(nb_pages_total, int) and page < nb_pages_total
        nb_hits = body.get("nbHits") if isinstance(body, dict) else None
        skipped = max(0, nb_hits - len(hits)) if truncated and isinstance(nb_hits, int) else 0
        if truncated:
            log.warning("ingest.backlog_truncated", source=SOURCE, target=target.name, pages=pages, skipped=skipped)
        if self.metrics is not None:
            if truncated:
                self.metrics.backlog_truncated.labels(SOURCE, target.name).inc()
                self.metrics.backlog_skipped.labels(SOURCE).inc(skipped)
            self.metrics.backlog_pending.labels(SOURCE, target.name).set(1 if truncated else 0)
        problems: Counter[str] = Counter()
        items = ItemMapper()
        mentions = []
        newest = None
        for hit in hits:
            if isinstance(hit, dict) and str(hit.get("objectID")) in seen_at:
                continue
            mention = items.map(hit_mention, hit, target.watch, problems)
            if mention is None:
                continue
            mentions.append(mention)
            if mention.published_at and (newest is None or mention.published_at > newest):
                newest = mention.published_at
        new_cursor = advance_cursor(
            cursor, [h for h in hits if isinstance(h, dict)], latest=int(time.time() + MAX_CLOCK_SKEW)
        )
        if newest is None and isinstance(new_cursor.get("created_at_i"), int):
            newest = datetime.fromtimestamp(new_cursor["created_at_i"], UTC)
        repaired.update({k: v for k, v in problems.items() if k == "no_date"})
        return PollResult(
            mentions,
            new_cursor,
            newest=newest,
            rejected=Counter({k: v for k, v in problems.items() if k != "no_date"}),
            repaired=repaired,
            malformed=items.malformed,
            details={"pages": pages, "hits": len(hits), "truncated": truncated or None},
        )


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: its section is in the configuration."""
    return configured(config, "hackernews")


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
) -> IngestService:
    """Build the Hacker News ingestor from settings (and optional parts a test provides)."""
    config = config or load_config(settings.config)
    section = config.sources.hackernews
    parts = search_parts(NAME, SOURCE, section, settings, config, http_client=http_client, metrics=metrics)
    targets = parts.targets(when=configured(config, "hackernews"))
    source = HackerNewsSearch(section, targets, parts.fetcher(), parts.ingest_metrics)
    return parts.service(settings, source, clock=clock)
