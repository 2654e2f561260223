"""Composition root of the GDELT ingestor (``ingest-gdelt``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import structlog

from services.ingest_gdelt.logic import (
    SEEN_MAX,
    SOURCE,
    ArticleList,
    article_mention,
    gdelt_query,
    parse_artlist,
    remember,
    request_params,
)
from veille.config import GdeltSource, VeilleConfig, load_config
from veille.ingest.coverage import report_untargeted
from veille.ingest.cursors import Cursor
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.items import ItemMapper
from veille.ingest.matching import positive_terms
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.ingest.sources import configured, search_parts
from veille.ingest.textclean import decode_utf8
from veille.metrics import ServiceMetrics
from veille.settings import ServiceSettings

__all__ = ["NAME", "GdeltArticles", "create_app", "enabled"]

NAME = "ingest-gdelt"
log = structlog.get_logger("ingest_gdelt")


class GdeltArticles:
    """Asks GDELT for each watch's articles since the last poll and publishes the new ones."""

    name = SOURCE

    def __init__(
        self,
        section: GdeltSource,
        targets: list[Target],
        fetcher: Fetcher,
        clock: Clock,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.section = section
        self.metrics = metrics
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
        text, bad_utf8 = decode_utf8(response.body)
        try:
            answer = parse_artlist(text) if head else ArticleList()
        except ValueError as exc:
            preview = text[:60].replace("\n", " ")
            raise FetchError(
                "invalid_payload", f"GDELT answer is not an article list ({exc}); starts with {preview!r}"
            ) from exc
        articles = answer.articles
        problems: Counter[str] = Counter()
        items = ItemMapper()
        for record in answer.broken:
            items.reject(record, "an article record is not JSON, even after repairing its escapes", kind="invalid_json")
        candidates = [m for a in articles if (m := items.map(article_mention, a, target.watch, problems)) is not None]
        fresh, new_cursor = remember(cursor, candidates, latest=self.clock() + timedelta(days=1))
        malformed = items.unseen(SOURCE, cursor.get("seen"))
        new_cursor["seen"] = ([r.item_id(SOURCE) for r in malformed] + new_cursor["seen"])[:SEEN_MAX]
        truncated = len(articles) >= self.section.max_records
        if truncated:
            # DOC 2.0 returns at most maxrecords (250) articles, newest first: older ones of the window are lost.
            log.warning("ingest.backlog_truncated", source=SOURCE, target=target.name, records=len(articles))
        if self.metrics is not None:
            if truncated:
                self.metrics.backlog_truncated.labels(SOURCE, target.name).inc()
            self.metrics.backlog_pending.labels(SOURCE, target.name).set(1 if truncated else 0)
        repaired = Counter({k: v for k, v in problems.items() if k == "no_date"})
        if bad_utf8:
            repaired["invalid_utf8"] += 1
        repaired.update(answer.repairs)
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
    untargeted = {
        t.name: "no term of 3 letters or more (GDELT refuses shorter ones)"
        for t in targets
        if not [term for term in positive_terms(str(t.params["query"])) if len(term) >= 3]
    }
    report_untargeted(SOURCE, parts.ingest_metrics, [t.name for t in targets], untargeted)
    source = GdeltArticles(section, targets, parts.fetcher(), clock or _now, parts.ingest_metrics)
    return parts.service(settings, source, clock=clock)


def _now() -> datetime:
    return datetime.now(UTC)
