"""Composition root of the X ingestor (``ingest-x``)."""

from __future__ import annotations

from collections import Counter

import httpx
import structlog

from services.ingest_x.logic import SOURCE, TWEET_FIELDS, USER_FIELDS, tweet_mention, users_by_id, x_query
from veille.config import VeilleConfig, XSource, load_config
from veille.ingest.coverage import report_untargeted
from veille.ingest.cursors import Cursor
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.items import ItemMapper
from veille.ingest.matching import positive_terms
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.ingest.sources import configured, load_json, search_parts
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested
from veille.settings import ServiceSettings

__all__ = ["NAME", "XRecentSearch", "create_app", "enabled", "since_id_refused"]

NAME = "ingest-x"
MAX_PAGES = 3
log = structlog.get_logger("ingest_x")


def since_id_refused(exc: FetchError) -> bool:
    """Whether X answered 400 naming ``since_id`` among the invalid parameters (a since_id older than 7 days).

    X's error object (docs.x.com/x-api/fundamentals/response-codes-and-errors, "Invalid Request"):
    ``{"errors": [{"parameters": {"since_id": ["…"]}, "message": "…"}], "title": "Invalid Request", …}``.
    """
    if exc.status != 400:
        return False
    body, _ = load_json(exc.body)
    errors = body.get("errors") if isinstance(body, dict) else None
    return isinstance(errors, list) and any(
        isinstance(e, dict) and isinstance(e.get("parameters"), dict) and "since_id" in e["parameters"] for e in errors
    )


class XRecentSearch:
    """Recent search per watch since the newest tweet id seen, paged with ``next_token``."""

    name = SOURCE

    def __init__(
        self, section: XSource, targets: list[Target], fetcher: Fetcher, metrics: IngestMetrics | None = None
    ) -> None:
        self.section = section
        self.metrics = metrics
        self._targets = targets
        self.fetcher = fetcher

    def targets(self) -> list[Target]:
        """One target per watch, when a bearer token is configured."""
        return list(self._targets)

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Fetch the tweets newer than ``since_id``; the poll fails as a whole on any error."""
        query = x_query(positive_terms(str(target.params["query"])), list(target.params.get("languages", [])))
        if not query:
            raise FetchError("untranslatable", "the watch query has no word or phrase to search for", retryable=False)
        params = {
            "query": query,
            "max_results": str(self.section.max_results),
            "tweet.fields": TWEET_FIELDS,
            "expansions": "author_id",
            "user.fields": USER_FIELDS,
        }
        # Polling with since_id (docs.x.com/x-api/posts/search/integrate/paginate, "Polling"): when more
        # posts than max_results are newer than since_id, X pages them newest first with next_token,
        # keeping the same since_id; only once no next_token is left is the first page's newest_id the
        # next since_id. A busy watch is read MAX_PAGES pages per poll: the rest is kept in the cursor
        # ("pending": next_token, the since_id it belongs to, the newest_id to move to) and read on the
        # next polls, so nothing between the pages read and since_id is dropped (a next_token does not
        # expire). veille_source_backlog_pending says 1 while that lasts.
        pending = cursor.get("pending") if isinstance(cursor.get("pending"), dict) else None
        if pending is not None and isinstance(pending.get("next_token"), str) and pending["next_token"]:
            since = pending.get("since_id") if isinstance(pending.get("since_id"), str) else None
            newest_id = pending.get("newest_id") if isinstance(pending.get("newest_id"), str) else None
            params["next_token"] = pending["next_token"]
            resumed = True
        else:
            since = cursor.get("since_id") if isinstance(cursor.get("since_id"), str) else None
            newest_id = None
            resumed = False
        if since is not None:
            params["since_id"] = since
        headers = {"Authorization": f"Bearer {self.section.token()}"}
        url = str(self.section.base_url).rstrip("/") + "/tweets/search/recent"
        problems: Counter[str] = Counter()
        items = ItemMapper()
        mentions: list[MentionIngested] = []
        pages = 0
        left: str | None = None
        expired_since: str | None = None
        while pages < MAX_PAGES:
            try:
                response = await self.fetcher.get(url, params=params, headers=headers)
            except FetchError as exc:
                if since is None or expired_since is not None or not since_id_refused(exc):
                    raise
                # X's recent search reaches back 7 days, and refuses an older since_id with a 400 naming
                # it: after a week without a poll the cursor can never work again. Start from what X
                # still has (newest first, as on a watch's first poll); what was said in between is out
                # of the recent search's reach, and said so.
                expired_since, since, newest_id, resumed = since, None, None, False
                params.pop("since_id", None)
                params.pop("next_token", None)
                continue
            pages += 1
            body, _ = load_json(response.body)
            if not isinstance(body, dict) or not isinstance(body.get("meta"), dict):
                raise FetchError("invalid_payload", "X answer has no 'meta' object", retryable=False)
            if body.get("errors") and not body.get("data"):
                raise FetchError(
                    "query_rejected", f"X refused the search: {str(body['errors'])[:200]}", retryable=False
                )
            users = users_by_id(body)
            data = body.get("data") or []
            if not isinstance(data, list):
                raise FetchError("invalid_payload", "X answer's 'data' is not a list", retryable=False)
            mentions.extend(
                m for t in data if (m := items.map(tweet_mention, t, users, target.watch, problems)) is not None
            )
            meta = body["meta"]
            if newest_id is None and isinstance(meta.get("newest_id"), str):
                newest_id = meta["newest_id"]
            token = meta.get("next_token")
            left = token if isinstance(token, str) and token else None
            if left is None:
                break
            params["next_token"] = left
        new_cursor = dict(cursor)
        if expired_since is not None:
            log.warning(
                "ingest.cursor_expired",
                source=SOURCE,
                target=target.name,
                since_id=expired_since,
                detail="X's recent search keeps 7 days: posts between that since_id and 7 days ago are out of reach",
            )
            if self.metrics is not None:
                self.metrics.cursor_expired.labels(SOURCE, target.name).inc()
        if left is not None:
            new_cursor["pending"] = {"next_token": left, "since_id": since, "newest_id": newest_id}
            log.warning(
                "ingest.backlog_truncated",
                source=SOURCE,
                target=target.name,
                pages=pages,
                since_id=since,
                resumes_next_poll=True,
            )
        else:
            new_cursor.pop("pending", None)
            if newest_id is not None:
                new_cursor["since_id"] = newest_id
        if self.metrics is not None:
            if left is not None:
                self.metrics.backlog_truncated.labels(SOURCE, target.name).inc()
            self.metrics.backlog_pending.labels(SOURCE, target.name).set(0 if left is None else 1)
        newest = max((m.published_at for m in mentions if m.published_at), default=None)
        return PollResult(
            mentions,
            new_cursor,
            newest=newest,
            rejected=Counter({k: v for k, v in problems.items() if k != "no_date"}),
            repaired=Counter({k: v for k, v in problems.items() if k == "no_date"}),
            malformed=items.malformed,
            details={
                "pages": pages,
                "query": query,
                "resumed": resumed or None,
                "more": left is not None or None,
                "cursor_expired": expired_since,
            },
        )


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: its section is configured, credentials included."""
    return configured(config, "x") and bool(config.sources.x.token())


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
) -> IngestService:
    """Build the X ingestor; without a bearer token it runs with no targets."""
    config = config or load_config(settings.config)
    section = config.sources.x
    parts = search_parts(NAME, SOURCE, section, settings, config, http_client=http_client, metrics=metrics)
    has_credentials = bool(section.token())
    if configured(config, "x") and not has_credentials:
        log.info("ingest.source_idle", source=SOURCE, reason="no bearer_token in sources.x")
    targets = parts.targets(when=configured(config, "x") and has_credentials)
    untargeted = {
        t.name: "no word or phrase X can search for"
        for t in targets
        if not x_query(positive_terms(str(t.params["query"])), list(t.params.get("languages", [])))
    }
    report_untargeted(SOURCE, parts.ingest_metrics, [t.name for t in targets], untargeted)
    return parts.service(settings, XRecentSearch(section, targets, parts.fetcher(), parts.ingest_metrics), clock=clock)
