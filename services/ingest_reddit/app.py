"""Composition root of the Reddit ingestor (``ingest-reddit``)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import structlog

from services.ingest_reddit.logic import (
    SOURCE,
    advance_cursor,
    created_times,
    is_seen,
    post_mention,
    reddit_query,
    reddit_user_agent,
    window_start,
)
from veille import __version__
from veille.config import RedditSource, VeilleConfig, load_config
from veille.ingest.coverage import report_untargeted
from veille.ingest.cursors import Cursor
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.items import ItemMapper
from veille.ingest.matching import positive_terms
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.ingest.sources import configured, load_json, search_parts
from veille.metrics import ServiceMetrics
from veille.settings import ServiceSettings

__all__ = ["NAME", "RedditSearch", "create_app", "enabled"]

NAME = "ingest-reddit"
MAX_PAGES = 5
MAX_CLOCK_SKEW = 86400.0
"""Seconds past now a post's ``created_utc`` may be and still move the cursor."""
log = structlog.get_logger("ingest_reddit")


class RedditSearch:
    """Searches Reddit (newest first) for each watch with an application-only OAuth token."""

    name = SOURCE

    def __init__(
        self,
        section: RedditSource,
        targets: list[Target],
        fetcher: Fetcher,
        *,
        user_agent: str,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.section = section
        self.user_agent = user_agent
        self.metrics = metrics
        self._targets = targets
        self.fetcher = fetcher
        self._token: str | None = None
        self._expires = 0.0

    def targets(self) -> list[Target]:
        """One target per watch, when credentials are configured."""
        return list(self._targets)

    async def _access_token(self) -> str:
        if self._token is None or time.monotonic() >= self._expires:
            response = await self.fetcher.request(
                "POST",
                str(self.section.token_url),
                data={"grant_type": "client_credentials"},
                auth=(self.section.client_id or "", self.section.secret() or ""),
                headers={"User-Agent": self.user_agent},
            )
            body, _ = load_json(response.body)
            token = body.get("access_token") if isinstance(body, dict) else None
            if not isinstance(token, str):
                raise FetchError("unauthorized", "the token endpoint returned no access_token", retryable=False)
            expires_in = body.get("expires_in", 3600)
            self._token = token
            self._expires = time.monotonic() + max(60.0, float(expires_in) - 60.0)
        return self._token

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Page through the newest results until the cursor; publish the new posts."""
        terms = positive_terms(str(target.params["query"]))
        if not terms:
            raise FetchError("untranslatable", "the watch query has no word or phrase to search for", retryable=False)
        base = str(self.section.base_url).rstrip("/")
        subs = "+".join(self.section.subreddits)
        url = f"{base}/r/{subs}/search" if subs else f"{base}/search"
        params = {"q": reddit_query(terms), "sort": "new", "limit": str(self.section.limit), "type": "link"}
        params["raw_json"] = "1"
        if subs:
            params["restrict_sr"] = "on"
        children: list[Any] = []
        pages = 0
        start = window_start(cursor)
        newest = cursor.get("created_utc") if start is not None else None
        oldest_read: float | None = None
        after: Any = None
        for _ in range(MAX_PAGES):
            token = await self._access_token()
            response = await self.fetcher.get(
                url, params=params, headers={"Authorization": f"bearer {token}", "User-Agent": self.user_agent}
            )
            pages += 1
            body, _ = load_json(response.body)
            data = body.get("data") if isinstance(body, dict) and body.get("kind") == "Listing" else None
            if not isinstance(data, dict) or not isinstance(data.get("children"), list):
                raise FetchError("invalid_payload", "Reddit answer is not a Listing", retryable=False)
            page = data["children"]
            children.extend(c for c in page if not is_seen(c, cursor))
            times = created_times(page)
            if times:
                oldest_read = min(times) if oldest_read is None else min(oldest_read, min(times))
            after = data.get("after")
            # Newest first: once a page reaches back past the window, the rest was handled before.
            if not isinstance(after, str) or not after or (start is not None and times and min(times) < start):
                break
            params["after"] = after
        truncated = (
            isinstance(after, str) and bool(after) and isinstance(newest, int | float)
            and oldest_read is not None and oldest_read > newest
        )  # fmt: skip
        if truncated:
            log.warning("ingest.backlog_truncated", source=SOURCE, target=target.name, pages=pages)
        if self.metrics is not None and start is not None:
            if truncated:
                self.metrics.backlog_truncated.labels(SOURCE, target.name).inc()
            self.metrics.backlog_pending.labels(SOURCE, target.name).set(1 if truncated else 0)
        problems: Counter[str] = Counter()
        items = ItemMapper()
        mentions = [m for c in children if (m := items.map(post_mention, c, target.watch, problems)) is not None]
        newest = max((m.published_at for m in mentions if m.published_at), default=None)
        return PollResult(
            mentions,
            advance_cursor(cursor, children, latest=time.time() + MAX_CLOCK_SKEW),
            newest=newest,
            rejected=Counter({k: v for k, v in problems.items() if k != "no_date"}),
            repaired=Counter({k: v for k, v in problems.items() if k == "no_date"}),
            malformed=items.malformed,
            details={"pages": pages, "truncated": truncated or None},
        )


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: its section is configured, credentials included."""
    return configured(config, "reddit") and bool(config.sources.reddit.client_id and config.sources.reddit.secret())


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
) -> IngestService:
    """Build the Reddit ingestor; without client id and secret it runs with no targets."""
    config = config or load_config(settings.config)
    section = config.sources.reddit
    user_agent, agent_problem = reddit_user_agent(section.user_agent, section.client_id, section.username, __version__)
    parts = search_parts(
        NAME, SOURCE, section, settings, config, http_client=http_client, metrics=metrics, user_agent=user_agent
    )
    has_credentials = bool(section.client_id and section.secret())
    if configured(config, "reddit") and not has_credentials:
        log.info("ingest.source_idle", source=SOURCE, reason="no client_id/client_secret in sources.reddit")
    targets = parts.targets(when=configured(config, "reddit") and has_credentials)
    if targets:
        untargeted = {
            t.name: "no word or phrase to search for" for t in targets if not positive_terms(str(t.params["query"]))
        }
        report_untargeted(SOURCE, parts.ingest_metrics, [t.name for t in targets], untargeted)
        parts.ingest_metrics.config_warning.labels(SOURCE, "user_agent").set(1 if agent_problem else 0)
        if agent_problem:
            log.warning("ingest.user_agent_nonconforming", source=SOURCE, user_agent=user_agent, reason=agent_problem)
    source = RedditSearch(section, targets, parts.fetcher(), user_agent=user_agent, metrics=parts.ingest_metrics)
    return parts.service(settings, source, clock=clock)
