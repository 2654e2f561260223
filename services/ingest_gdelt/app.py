"""Composition root of the GDELT ingestor (``ingest-gdelt``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import structlog

from services.ingest_gdelt.logic import SEEN_MAX, SOURCE, article_mention, gdelt_query, remember, request_params
from veille.config import GdeltSource, VeilleConfig, load_config
from veille.ingest.cursors import Cursor
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.items import ItemMapper
from veille.ingest.matching import positive_terms
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.ingest.sources import configured, load_json, search_parts
from veille.metrics import ServiceMetrics
from veille.settings import ServiceSettings

__all__ = ["NAME", "GdeltArticles", "create_app", "enabled"]

NAME = "ingest-gdelt"
log = structlog.get_logger("ingest_gdelt")


class GdeltArticles:
    """Asks GDELT for each watch's articles since the last poll and publishes the new ones."""

    name = SOURCE

    def __init__(self, section: GdeltSource, targets: list[Target], fetcher: Fetcher, clock: Clock) -> None:
        self.section = section
        self._targets = targets
        self.fetcher = fetcher
        self.clock = clock

    def targets(self) -> list[Target]:
        """One target per watch."""
        return list(self._targets)

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """One article-list request (the rate limiter spaces requests at least 5 s apart)."""
        terms = [t for t in positive_terms(str(target.params["query"])) if len(t) >= 3]
        if not terms:
            raise FetchError("untranslatable", "the watch query has no term of 3 letters or more", retryable=False)
        query = gdelt_query(terms, list(target.params.get("languages", [])))
        params = request_params(
            query,
            cursor,
            now=self.clock(),
            timespan=self.section.timespan,
            max_records=self.section.max_records,
        )
        response = await self.fetcher.get(str(self.section.base_url), params=params)
        head = response.body.lstrip()[:1]
        if head and head not in (b"{", b"["):
            message = response.body[:200].decode("utf-8", errors="replace").strip()
            raise FetchError("query_rejected", f"GDELT refused the query: {message}", retryable=False)
        body, bad_utf8 = load_json(response.body) if head else ({}, False)
        if not isinstance(body, dict):
            raise FetchError("invalid_payload", "GDELT answer is not a JSON object", retryable=False)
        articles = body.get("articles", [])
        if not isinstance(articles, list):
            raise FetchError("invalid_payload", "GDELT 'articles' is not a list", retryable=False)
        problems: Counter[str] = Counter()
        items = ItemMapper()
        candidates = [m for a in articles if (m := items.map(article_mention, a, target.watch, problems)) is not None]
        fresh, new_cursor = remember(cursor, candidates, latest=self.clock() + timedelta(days=1))
        malformed = items.unseen(SOURCE, cursor.get("seen"))
        new_cursor["seen"] = ([r.item_id(SOURCE) for r in malformed] + new_cursor["seen"])[:SEEN_MAX]
        if len(articles) >= self.section.max_records:
            log.warning("ingest.backlog_truncated", source=SOURCE, target=target.name, records=len(articles))
        repaired = Counter({k: v for k, v in problems.items() if k == "no_date"})
        if bad_utf8:
            repaired["invalid_utf8"] += 1
        newest = max((m.published_at for m in candidates if m.published_at), default=None)
        return PollResult(
            fresh,
            new_cursor,
            newest=newest,
            rejected=Counter({k: v for k, v in problems.items() if k != "no_date"}),
            repaired=repaired,
            malformed=malformed,
            details={"articles": len(articles), "query": query},
        )


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: its section is in the configuration."""
    return configured(config, "gdelt")


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
) -> IngestService:
    """Build the GDELT ingestor from settings (and optional parts a test provides)."""
    config = config or load_config(settings.config)
    section = config.sources.gdelt
    parts = search_parts(NAME, SOURCE, section, settings, config, http_client=http_client, metrics=metrics)
    targets = parts.targets(when=configured(config, "gdelt"))
    return parts.service(settings, GdeltArticles(section, targets, parts.fetcher(), clock or _now), clock=clock)


def _now() -> datetime:
    return datetime.now(UTC)
