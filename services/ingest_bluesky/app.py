"""Composition root of the Bluesky ingestor (``ingest-bluesky``): Jetstream firehose plus searchPosts backfill."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from services.ingest_bluesky.logic import (
    MAX_TIME_US,
    SOURCE,
    Matcher,
    event_mention,
    event_time_us,
    jetstream_url,
    post_view_mention,
    search_query,
)
from veille.config import BlueskySource, VeilleConfig, load_config
from veille.ingest.backoff import Backoff
from veille.ingest.cursors import Cursor, cursor_key
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.items import ItemMapper
from veille.ingest.matching import build_watch_matcher, positive_terms
from veille.ingest.runner import Clock, IngestContext, IngestService, PollResult, Target
from veille.ingest.sources import configured, load_json, parse_time, search_parts
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested
from veille.settings import ServiceSettings

__all__ = ["NAME", "BlueskySearch", "JetstreamFirehose", "create_app", "enabled"]

NAME = "ingest-bluesky"
SEEN_MAX = 2000
MAX_CLOCK_SKEW = 86400.0
"""Seconds past now an event's ``time_us`` or a post's date may be and still move a cursor."""
log = structlog.get_logger("ingest_bluesky")


class JetstreamFirehose:
    """Reads the Jetstream WebSocket, matches every post locally, publishes matches in small batches.

    The cursor is the ``time_us`` of the last event handled; it is saved after each batch is
    published, and a reconnect asks Jetstream to replay from a few seconds earlier (``rewind``), so
    nothing is missed; replayed posts have the same ids and the stream drops them.
    """

    name = SOURCE

    def __init__(
        self,
        section: BlueskySource,
        match: Matcher,
        *,
        flush_interval: float = 5.0,
        flush_size: int = 100,
        backoff: Backoff | None = None,
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self.section = section
        self.match = match
        self.flush_interval = flush_interval
        self.flush_size = flush_size
        self.backoff = backoff or Backoff(base=1.0, maximum=60.0)
        self.max_message_bytes = max_message_bytes
        self.target = Target(key=cursor_key(SOURCE, "jetstream"), name="jetstream", interval=0.0)
        self.connections = 0
        self.cursor: Cursor = {}

    async def run(self, ctx: IngestContext) -> None:
        """Connect, read, flush; on any disconnect flush what is pending, back off and reconnect."""
        self.cursor = await ctx.load_cursor(self.target.key)
        failures = 0
        while True:
            cursor = self.cursor
            time_us = cursor.get("time_us") if isinstance(cursor.get("time_us"), int) else None
            url = jetstream_url(self.section.jetstream_url, time_us, self.section.rewind)
            batch = _Batch()
            try:
                async with websockets.connect(
                    url,
                    open_timeout=self.section.timeout.total_seconds(),
                    max_size=self.max_message_bytes,
                    ping_interval=20,
                    ping_timeout=20,
                    compression=None,
                ) as ws:
                    self.connections += 1
                    failures = 0
                    ctx.succeeded(self.target)
                    log.info("ingest.stream_connected", source=SOURCE, url=url, cursor=time_us)
                    await self._read(ws, ctx, batch)
            except asyncio.CancelledError:
                await self._flush(ctx, batch)
                raise
            except (ConnectionClosed, InvalidHandshake, InvalidURI, OSError, TimeoutError) as exc:
                await self._flush(ctx, batch)
                kind = "disconnected" if isinstance(exc, ConnectionClosed) else "connect"
                if isinstance(exc, ConnectionClosed) and exc.rcvd is not None and exc.rcvd.code == 1009:
                    kind = "too_large"
                failures = ctx.failed(self.target, FetchError(kind, f"{type(exc).__name__}: {exc}"))
                delay = self.backoff.delay(failures)
                log.warning(
                    "ingest.stream_disconnected", source=SOURCE, kind=kind, error=str(exc), failures=failures,
                    reconnect_in=round(delay, 2), cursor=self.cursor.get("time_us"),
                )  # fmt: skip
                await asyncio.sleep(delay)

    async def _read(self, ws: Any, ctx: IngestContext, batch: _Batch) -> None:
        last_flush = time.monotonic()
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=self.flush_interval)
            except TimeoutError:
                raw = None
            if raw is not None:
                latest_us = int((ctx.clock().timestamp() + MAX_CLOCK_SKEW) * 1_000_000)
                batch.add(raw, self.match, latest_us)
            due = time.monotonic() - last_flush >= self.flush_interval or len(batch.mentions) >= self.flush_size
            if due and (batch.mentions or batch.time_us is not None or batch.rejected or batch.items.malformed):
                await self._flush(ctx, batch)
                last_flush = time.monotonic()

    async def _flush(self, ctx: IngestContext, batch: _Batch) -> None:
        """Publish the batch and save the cursor after it (``self.cursor`` follows)."""
        if not batch.mentions and batch.time_us is None and not batch.rejected and not batch.items.malformed:
            return
        new_cursor = dict(self.cursor)
        if batch.time_us is not None:
            new_cursor["time_us"] = batch.time_us
        newest = datetime.fromtimestamp(batch.time_us / 1e6, UTC) if batch.time_us else None
        result = PollResult(
            list(batch.mentions.values()),
            new_cursor,
            newest=newest,
            rejected=Counter(batch.rejected),
            repaired=Counter(batch.repaired),
            malformed=list(batch.items.malformed),
            details={"events": batch.events},
            quiet=True,
        )
        await ctx.deliver(self.target, result)
        batch.clear()
        self.cursor = new_cursor


class _Batch:
    """Events read since the last flush."""

    def __init__(self) -> None:
        self.mentions: dict[str, MentionIngested] = {}
        self.rejected: Counter[str] = Counter()
        self.repaired: Counter[str] = Counter()
        self.time_us: int | None = None
        self.events = 0
        self.items = ItemMapper()

    def add(self, raw: str | bytes, match: Matcher, latest_us: int = MAX_TIME_US) -> None:
        self.events += 1
        if isinstance(raw, bytes):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", errors="replace")
                self.repaired["invalid_utf8"] += 1
        else:
            text = raw
        try:
            event = json.loads(text)
        except (ValueError, RecursionError) as exc:
            self.items.reject(text, f"an event is not JSON ({type(exc).__name__}: {exc})", kind="invalid_event")
            return
        mention = self.items.map(event_mention, event, match, latest_us)
        time_us = event_time_us(event, latest_us)
        if time_us is not None and (self.time_us is None or time_us > self.time_us):
            self.time_us = time_us
        if mention is not None:
            self.mentions.setdefault(mention.id, mention)

    def clear(self) -> None:
        self.items = ItemMapper()
        self.mentions.clear()
        self.rejected.clear()
        self.repaired.clear()
        self.time_us = None
        self.events = 0


class BlueskySearch:
    """Backfill through ``app.bsky.feed.searchPosts`` with an app password (one target per watch)."""

    name = SOURCE

    def __init__(self, section: BlueskySource, targets: list[Target], fetcher: Fetcher) -> None:
        self.section = section
        self._targets = targets
        self.fetcher = fetcher
        self.api = str(section.api_url).rstrip("/")
        self._token: str | None = None

    def targets(self) -> list[Target]:
        """One target per watch, when credentials are configured."""
        return list(self._targets)

    async def _session(self, *, renew: bool = False) -> str:
        if self._token is None or renew:
            response = await self.fetcher.request(
                "POST",
                f"{self.api}/com.atproto.server.createSession",
                json={"identifier": self.section.handle, "password": self.section.password()},
            )
            body, _ = load_json(response.body)
            token = body.get("accessJwt") if isinstance(body, dict) else None
            if not isinstance(token, str):
                raise FetchError("unauthorized", "createSession returned no accessJwt", retryable=False)
            self._token = token
        return self._token

    async def _search(self, params: dict[str, str]) -> Any:
        for attempt in (1, 2):
            token = await self._session(renew=attempt == 2)
            try:
                response = await self.fetcher.get(
                    f"{self.api}/app.bsky.feed.searchPosts", params=params, headers={"Authorization": f"Bearer {token}"}
                )
            except FetchError as exc:
                if exc.kind == "unauthorized" and attempt == 1:
                    continue  # the access token expired: log in again once
                raise
            return load_json(response.body)[0]
        raise FetchError("unauthorized", "searchPosts refused a fresh session", retryable=False)  # pragma: no cover

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Search the watch's terms, newest first, since the newest post seen."""
        terms = positive_terms(str(target.params["query"]))
        if not terms:
            raise FetchError("untranslatable", "the watch query has no word or phrase to search for", retryable=False)
        params = {"q": search_query(terms), "sort": "latest", "limit": "100"}
        if isinstance(cursor.get("since"), str):
            params["since"] = cursor["since"]
        posts: list[Any] = []
        for _ in range(5):
            body = await self._search(params)
            if not isinstance(body, dict) or not isinstance(body.get("posts"), list):
                raise FetchError("invalid_payload", "searchPosts answer has no 'posts' list", retryable=False)
            posts.extend(body["posts"])
            page = body.get("cursor")
            if not isinstance(page, str) or not page or not body["posts"]:
                break
            params["cursor"] = page
        seen = [s for s in cursor.get("seen", []) if isinstance(s, str)]
        known = set(seen)
        items = ItemMapper()
        fresh: list[MentionIngested] = []
        for post in posts:
            mention = items.map(post_view_mention, post, target.watch)
            if mention is not None and mention.id not in known:
                known.add(mention.id)
                fresh.append(mention)
        latest = datetime.now(UTC) + timedelta(seconds=MAX_CLOCK_SKEW)
        dates = [m.published_at for m in fresh if m.published_at and m.published_at <= latest]
        malformed = items.unseen(SOURCE, cursor.get("seen"))
        remembered = [m.id for m in fresh] + [r.item_id(SOURCE) for r in malformed]
        new_cursor: Cursor = {**cursor, "seen": (remembered + seen)[:SEEN_MAX]}
        newest = max(dates, default=None)
        previous = parse_time(cursor.get("since"))
        if newest is not None and (previous is None or newest > previous):
            new_cursor["since"] = newest.isoformat().replace("+00:00", "Z")
        return PollResult(fresh, new_cursor, newest=newest, malformed=malformed, details={"posts": len(posts)})


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: its section is in the configuration."""
    return configured(config, "bluesky")


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
    flush_interval: float = 5.0,
) -> IngestService:
    """Build the Bluesky ingestor from settings (and optional parts a test provides)."""
    config = config or load_config(settings.config)
    section = config.sources.bluesky
    parts = search_parts(NAME, SOURCE, section, settings, config, http_client=http_client, metrics=metrics)
    with_login = bool(section.handle and section.password())
    targets = parts.targets(when=configured(config, "bluesky") and with_login)
    streams = (
        (
            JetstreamFirehose(
                section,
                build_watch_matcher(config, SOURCE, section.watches),
                flush_interval=flush_interval,
                backoff=Backoff(base=min(1.0, flush_interval), maximum=60.0),
            ),
        )
        if configured(config, "bluesky")
        else ()
    )
    return parts.service(settings, BlueskySearch(section, targets, parts.fetcher()), clock=clock, streams=streams)
