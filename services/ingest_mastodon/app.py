"""Composition root of the Mastodon ingestor (``ingest-mastodon``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from services.ingest_mastodon.logic import SOURCE, hashtags_for, newest_id, status_mention
from veille.config import MastodonSource, VeilleConfig, load_config
from veille.httpclient import make_http_client
from veille.ingest.cursors import Cursor, cursor_key
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.matching import build_recheck, positive_terms, watches_for
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.ingest.sources import configured, load_json, make_fetcher
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested
from veille.settings import ServiceSettings

__all__ = ["NAME", "MastodonTimelines", "create_app", "enabled", "mastodon_targets"]

NAME = "ingest-mastodon"
PAGE = 40
MAX_PAGES = 5
log = structlog.get_logger("ingest_mastodon")


def mastodon_targets(section: MastodonSource, config: VeilleConfig) -> list[Target]:
    """One target per (server, watch), following the watch's hashtags; one per server for its extra hashtags."""
    targets = []
    interval = section.interval.total_seconds()
    for server in section.servers:
        base = str(server.url).rstrip("/")
        token = server.access_token()
        for watch in watches_for(config, SOURCE, section.watches):
            tags = hashtags_for(positive_terms(watch.query))
            if tags:
                targets.append(
                    Target(
                        key=cursor_key(SOURCE, base, watch.name),
                        name=f"{watch.name}@{base.split('://', 1)[-1]}",
                        interval=interval,
                        watch=watch.name,
                        recheck=True,
                        params={"server": base, "hashtags": tags, "token": token},
                    )
                )
        if server.hashtags:
            tags = hashtags_for(server.hashtags)
            targets.append(
                Target(
                    key=cursor_key(SOURCE, base, "#" + ",".join(tags)),
                    name=f"#{','.join(tags)}@{base.split('://', 1)[-1]}",
                    interval=interval,
                    params={"server": base, "hashtags": tags, "token": token},
                )
            )
    return targets


class MastodonTimelines:
    """Polls hashtag timelines with a ``min_id`` cursor per hashtag and publishes the new statuses.

    Each server has its own fetcher (its own rate limiter): a 429 from one server pauses only it.
    """

    name = SOURCE

    def __init__(self, targets: list[Target], make_fetcher: Callable[[], Fetcher]) -> None:
        self._targets = targets
        self._make_fetcher = make_fetcher
        self.fetchers: dict[str, Fetcher] = {}

    def fetcher(self, server: str) -> Fetcher:
        """The fetcher (and rate limiter) of one server."""
        if server not in self.fetchers:
            self.fetchers[server] = self._make_fetcher()
        return self.fetchers[server]

    def targets(self) -> list[Target]:
        """One target per (server, watch) and per server's extra hashtags."""
        return list(self._targets)

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Read each hashtag timeline forward from its ``min_id``; the poll fails as a whole on any error."""
        server = str(target.params["server"])
        token = target.params.get("token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        min_ids: dict[str, str] = dict(cursor.get("min_id", {}))
        problems: Counter[str] = Counter()
        repaired: Counter[str] = Counter()
        mentions: dict[str, MentionIngested] = {}
        requests = 0
        for tag in target.params["hashtags"]:
            since = min_ids.get(tag)
            for _ in range(MAX_PAGES):
                params = {"limit": str(PAGE)}
                if since:
                    params["min_id"] = since
                response = await self.fetcher(server).get(
                    f"{server}/api/v1/timelines/tag/{quote(tag)}", params=params, headers=headers
                )
                requests += 1
                statuses, bad_utf8 = load_json(response.body)
                if bad_utf8:
                    repaired["invalid_utf8"] += 1
                if not isinstance(statuses, list):
                    raise FetchError("invalid_payload", "a hashtag timeline must be a JSON array of statuses")
                page = [s for s in statuses if isinstance(s, dict)]
                for status in page:
                    mention = status_mention(status, server, target.watch, problems)
                    if mention is not None:
                        mentions.setdefault(mention.id, mention)
                newer = newest_id(since, page)
                if newer is None or newer == since:
                    break
                since = newer
                if not min_ids.get(tag) or len(page) < PAGE:
                    break  # first poll: start from the newest page only
            if since:
                min_ids[tag] = since
        repaired.update({k: v for k, v in problems.items() if k == "no_date"})
        dates = [m.published_at for m in mentions.values() if m.published_at]
        newest: datetime | None = max(dates) if dates else None
        new_cursor: dict[str, Any] = {**cursor, "min_id": min_ids}
        return PollResult(
            list(mentions.values()),
            new_cursor,
            newest=newest,
            rejected=Counter({k: v for k, v in problems.items() if k != "no_date"}),
            repaired=repaired,
            details={"requests": requests},
        )


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: its section is configured, credentials included."""
    return configured(config, "mastodon") and bool(config.sources.mastodon.servers)


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
) -> IngestService:
    """Build the Mastodon ingestor from settings (and optional parts a test provides)."""
    config = config or load_config(settings.config)
    section = config.sources.mastodon
    metrics = metrics or ServiceMetrics(NAME)
    ingest_metrics = IngestMetrics(metrics)
    client = http_client or make_http_client(user_agent=settings.user_agent, timeout=section.timeout.total_seconds())

    def fetcher() -> Fetcher:
        return make_fetcher(
            client,
            source=SOURCE,
            max_bytes=section.max_bytes,
            timeout=section.timeout.total_seconds(),
            min_interval=section.min_interval.total_seconds(),
            metrics=ingest_metrics,
        )

    targets = mastodon_targets(section, config) if configured(config, "mastodon") else []
    if configured(config, "mastodon") and not section.servers:
        log.info("ingest.source_idle", source=SOURCE, reason="no Mastodon server listed in sources.mastodon.servers")
    return IngestService(
        NAME,
        settings,
        MastodonTimelines(targets, fetcher),
        metrics=metrics,
        ingest_metrics=ingest_metrics,
        clock=clock,
        recheck=build_recheck(config),
        http_client=client,
        owns_http_client=http_client is None,
        failing_after=section.failing_after,
        jitter=section.jitter,
    )
