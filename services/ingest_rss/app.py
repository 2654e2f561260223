"""Composition root of the RSS/Atom ingestor (``ingest-rss``): feeds, Google Alerts, Google News."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from prometheus_client import Counter

from services.ingest_rss.logic import SOURCE, feed_targets, select_new
from services.ingest_rss.parsing import FeedParserPool
from veille.config import RssSource, VeilleConfig, load_config
from veille.httpclient import make_http_client
from veille.ingest.cursors import Cursor
from veille.ingest.http import Fetcher
from veille.ingest.matching import Recheck, build_recheck, positive_terms
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.metrics import PREFIX, ServiceMetrics
from veille.settings import ServiceSettings

__all__ = ["NAME", "RssFeeds", "RssIngestService", "create_app", "enabled"]

NAME = "ingest-rss"
log = structlog.get_logger("ingest_rss")


class RssFeeds:
    """The RSS source: polls each feed with a conditional GET and publishes its new entries."""

    name = SOURCE

    def __init__(
        self, rss: RssSource, targets: list[Target], fetcher: Fetcher, clock: Clock, parser: FeedParserPool
    ) -> None:
        self.rss = rss
        self._targets = targets
        self.fetcher = fetcher
        self.clock = clock
        self.parser = parser

    def targets(self) -> list[Target]:
        """One target per feed and per Google News search."""
        return list(self._targets)

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Fetch the feed (conditionally), parse it in a worker process, keep entries not in the cursor."""
        url = str(target.params["url"])
        response = await self.fetcher.get(
            url,
            headers={"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8"},
            etag=cursor.get("etag"),
            last_modified=cursor.get("last_modified"),
        )
        if response.not_modified:
            return PollResult([], cursor, not_modified=True, details={"status": 304})
        feed = await self.parser.parse(
            response.body, url=url, kind=str(target.params.get("kind", "feed")), watch=target.watch, now=self.clock()
        )
        fresh, new_cursor = select_new(feed.mentions, cursor, newest=feed.newest)
        new_cursor["url"] = url
        for header, key in ((response.etag, "etag"), (response.last_modified, "last_modified")):
            if header:
                new_cursor[key] = header
            else:
                new_cursor.pop(key, None)
        if feed.rejected:
            log.warning(
                "ingest.entries_rejected", source=SOURCE, target=target.name, url=url, reasons=dict(feed.rejected)
            )
        if feed.problems:
            log.warning("ingest.feed_repaired", source=SOURCE, target=target.name, url=url, problems=feed.problems)
        return PollResult(
            fresh,
            new_cursor,
            newest=feed.newest,
            rejected=feed.rejected,
            repaired=feed.repaired,
            details={"status": response.status, "bytes": len(response.body), "feed_entries": feed.entries},
        )


class RssIngestService(IngestService):
    """The ingest service, plus the parser processes it must stop when it stops."""

    def __init__(self, *args: Any, parser: FeedParserPool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parser = parser

    async def stop(self) -> None:
        """Stop polling and disconnect, then stop the parser processes."""
        try:
            await super().stop()
        finally:
            self.parser.shutdown()


def _recheck_or_none(config: VeilleConfig) -> tuple[Recheck | None, Callable[[str], list[str]] | None]:
    try:
        return build_recheck(config), positive_terms
    except ImportError:  # pragma: no cover - the query package always ships with veille
        log.warning("ingest.query_engine_missing", detail="candidates are not re-checked locally")
        return None, None


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: RSS is on and has feeds or searches."""
    rss = config.sources.rss
    return rss.enabled and bool(rss.feeds or rss.google_news)


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
    parse_workers: int | None = None,
    parse_budget: float | None = None,
    max_entries: int | None = None,
) -> IngestService:
    """Build the RSS ingestor from settings (and optional parts a test provides).

    Feeds are parsed in ``parse_workers`` processes, each document within ``parse_budget``
    seconds, and at most ``max_entries`` entries (the newest) are read from one document; each
    defaults to the configuration's ``sources.rss`` (``parse_workers``, ``parse_timeout``,
    ``max_entries``).
    """
    config = config or load_config(settings.config)
    rss = config.sources.rss
    metrics = metrics or ServiceMetrics(NAME)
    ingest_metrics = IngestMetrics(metrics)
    owns_client = http_client is None
    client = http_client or make_http_client(user_agent=settings.user_agent, timeout=rss.timeout.total_seconds())
    fetcher = Fetcher(
        client,
        max_bytes=rss.max_bytes,
        timeout=rss.timeout.total_seconds(),
        on_quota=ingest_metrics.quota.labels(SOURCE).set,
        per_host=True,
    )
    recheck, terms_of = _recheck_or_none(config)
    targets = feed_targets(rss, config, terms_of) if rss.enabled else []
    restarts = Counter(
        f"{PREFIX}_ingest_parser_restarts_total",
        "Feed parser processes killed and replaced, by reason (over_budget, crashed, cancelled, recycled).",
        ["source", "reason"],
        registry=metrics.registry,
    )
    parser = FeedParserPool(
        workers=parse_workers or rss.parse_workers,
        budget=parse_budget or rss.parse_timeout.total_seconds(),
        max_entries=max_entries or rss.max_entries,
        on_restart=lambda reason: restarts.labels(SOURCE, reason).inc(),
    )
    service_clock = clock
    source = RssFeeds(rss, targets, fetcher, clock=service_clock or _now, parser=parser)
    return RssIngestService(
        NAME,
        settings,
        source,
        metrics=metrics,
        ingest_metrics=ingest_metrics,
        clock=service_clock,
        recheck=recheck,
        http_client=client,
        owns_http_client=owns_client,
        failing_after=rss.failing_after,
        jitter=rss.jitter,
        parser=parser,
    )


def _now() -> datetime:
    return datetime.now(UTC)
