"""Composition root of the Mastodon ingestor (``ingest-mastodon``)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import structlog

from services.ingest_mastodon.logic import SOURCE, SseEvent, SseParser, hashtags_for, newest_id, status_mention
from veille.config import MastodonSource, VeilleConfig, load_config
from veille.ingest.backoff import Backoff
from veille.ingest.coverage import report_untargeted
from veille.ingest.cursors import Cursor, cursor_key
from veille.ingest.http import Fetcher, FetchError, parse_retry_after, quota_reset
from veille.ingest.items import ItemMapper
from veille.ingest.matching import positive_terms, watches_for
from veille.ingest.runner import Clock, IngestContext, IngestService, PollResult, Target
from veille.ingest.sources import configured, load_json, search_parts
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested
from veille.settings import ServiceSettings

__all__ = ["NAME", "HashtagStream", "MastodonTimelines", "create_app", "enabled", "mastodon_targets"]

NAME = "ingest-mastodon"
PAGE = 40
MAX_PAGES = 5
MAX_EVENT_BYTES = 1 << 20
STREAM_READ_TIMEOUT = 60.0
"""Seconds without a byte (Mastodon sends a ``:thump`` every 15 s or so) before a stream counts as stalled."""
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
        self.streaming_bases: dict[str, str] = {}
        """Per server, where its streaming API lives (discovered from the instance, see :meth:`streaming_base`)."""

    async def streaming_base(self, server: str) -> str:
        """The base URL of ``server``'s streaming API, as the instance declares it (cached until forgotten).

        Mastodon may serve streaming from its own host (``STREAMING_API_BASE_URL``), and then answers
        ``/api/v1/streaming`` on the main host with a 301 there (``Api::V1::StreamingController``); an
        HTTP client following it across origins drops the ``Authorization`` header, so the stream would
        be refused. The instance says where it is: ``/api/v2/instance`` ``configuration.urls.streaming``
        (Mastodon 4.0+), else ``/api/v1/instance`` ``urls.streaming_api``; both are ``wss://`` URLs,
        read here as the ``https://`` origin the Server-Sent Events endpoints share. When neither answers,
        the server's own URL is used.
        """
        if server in self.streaming_bases:
            return self.streaming_bases[server]
        base: str | None = None
        problems: list[str] = []
        for path, keys in (
            ("/api/v2/instance", ("configuration", "urls", "streaming")),
            ("/api/v1/instance", ("urls", "streaming_api")),
        ):
            try:
                response = await self.fetcher(server).get(f"{server}{path}")
                found: Any = load_json(response.body)[0]
            except FetchError as exc:
                if exc.kind in ("rate_limited", "unavailable", "timeout", "connect", "http_5xx"):
                    raise  # the server is unwell: try again later rather than guess
                problems.append(f"{path}: {exc.kind}")
                continue
            for key in keys:
                found = found.get(key) if isinstance(found, dict) else None
            base = _http_base(found)
            if base is not None:
                break
            problems.append(f"{path}: no streaming URL")
        if base is None:
            base = server
            log.info("ingest.streaming_url_unknown", source=SOURCE, server=server, problems=problems, using=server)
        elif base != server:
            log.info("ingest.streaming_url_discovered", source=SOURCE, server=server, streaming=base)
        self.streaming_bases[server] = base
        return base

    def forget_streaming_base(self, server: str) -> None:
        """Ask the instance again on the next connection (the stream failed in a way a move could explain)."""
        self.streaming_bases.pop(server, None)

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
        return await self.poll_tags(target, cursor, list(target.params["hashtags"]))

    async def poll_tags(self, target: Target, cursor: Cursor, hashtags: list[str]) -> PollResult:
        """Read the timelines of ``hashtags`` (some of the target's) forward from their ``min_id``."""
        server = str(target.params["server"])
        token = target.params.get("token")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        min_ids: dict[str, str] = dict(cursor.get("min_id", {}))
        problems: Counter[str] = Counter()
        repaired: Counter[str] = Counter()
        mentions: dict[str, MentionIngested] = {}
        items = ItemMapper()
        requests = 0
        for tag in hashtags:
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
                for status in statuses:
                    mention = items.map(status_mention, status, server, target.watch, problems)
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
            malformed=items.malformed,
            details={"requests": requests},
        )


class HashtagStream:
    """Mastodon's streaming API for one hashtag of one target (a server with a user token).

    On every (re)connect, once the server accepted the stream, it first polls the hashtag
    timeline from its ``min_id`` (backfilling what came while it was away; events arriving
    meanwhile wait in the connection), then reads ``update`` events, maps each status exactly as
    a poll does and publishes it, advancing the same ``min_id`` cursor. Cursor writes for one
    target go through a lock shared by its hashtags' streams. A dropped connection is counted
    and retried with backoff; a malformed or oversized event is counted and skipped.
    """

    name = SOURCE

    def __init__(
        self,
        timelines: MastodonTimelines,
        target: Target,
        tag: str,
        lock: asyncio.Lock,
        *,
        backoff: Backoff | None = None,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        self.timelines = timelines
        self.target = target
        self.tag = tag
        self.lock = lock
        self.backoff = backoff or Backoff(base=1.0, maximum=60.0)
        self.max_event_bytes = max_event_bytes
        self.connections = 0
        server = str(target.params["server"])
        self.server = server
        self.url = f"{server}/api/v1/streaming/hashtag"
        """The last stream URL used (the discovered streaming host's)."""
        self.label = f"#{tag}@{server.split('://', 1)[-1]}"

    async def run(self, ctx: IngestContext) -> None:
        """Connect, backfill, read events; on any failure back off and do it again, until cancelled."""
        while True:
            try:
                await self._connect_and_read(ctx)
                error = FetchError("disconnected", "the server ended the stream")
            except FetchError as exc:
                error = exc
            except (httpx.TransportError, OSError) as exc:
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "disconnected"
                error = FetchError(kind, f"{type(exc).__name__}: {exc}")
            if error.kind in ("connect", "redirected", "http_4xx", "unauthorized"):
                self.timelines.forget_streaming_base(self.server)  # the streaming host may have moved
            failures = ctx.failed(self.target, error)
            delay = self.backoff.delay(failures, retry_after=error.retry_after)
            if not error.retryable:
                delay = max(delay, self.target.interval)  # a refused token: no faster than polling
            log.warning(
                "ingest.stream_disconnected", source=SOURCE, target=self.target.name, stream=self.label,
                kind=error.kind, error=error.message, failures=failures, reconnect_in=round(delay, 2),
            )  # fmt: skip
            await asyncio.sleep(delay)

    async def _connect_and_read(self, ctx: IngestContext) -> None:
        fetcher = self.timelines.fetcher(self.server)
        self.url = f"{await self.timelines.streaming_base(self.server)}/api/v1/streaming/hashtag"
        await fetcher.limiter.acquire()
        headers = {
            "Authorization": f"Bearer {self.target.params['token']}",
            "Accept": "text/event-stream",
            "Accept-Encoding": "identity",
            "Cache-Control": "no-cache",
        }
        client = fetcher.client
        timeout = httpx.Timeout(fetcher.timeout, read=max(STREAM_READ_TIMEOUT, fetcher.timeout))
        # Redirects are not followed: across origins httpx drops the token (the stream would be refused as
        # anonymous), and the token goes only where the instance itself said its streaming API is.
        async with client.stream(
            "GET", self.url, params={"tag": self.tag}, headers=headers, timeout=timeout, follow_redirects=False
        ) as response:
            _check_stream_status(response)
            self.connections += 1
            log.info("ingest.stream_connected", source=SOURCE, target=self.target.name, stream=self.label, url=self.url)
            await self._backfill(ctx)
            ctx.succeeded(self.target)
            parser = SseParser(max_line=self.max_event_bytes, max_event=self.max_event_bytes)
            async for chunk in response.aiter_bytes():
                for event in parser.feed(chunk):
                    await self._handle(ctx, event)

    async def _backfill(self, ctx: IngestContext) -> None:
        """One poll of this hashtag from its ``min_id``, published like any poll."""
        async with self.lock:
            cursor = await ctx.load_cursor(self.target.key)
            result = await self.timelines.poll_tags(self.target, cursor, [self.tag])
            result.details["backfill"] = self.tag
            await ctx.deliver(self.target, result)

    async def _handle(self, ctx: IngestContext, event: SseEvent) -> None:
        if event.too_large:
            ctx.metrics.errors.labels(SOURCE, "too_large").inc()
            log.warning(
                "ingest.stream_event_dropped", source=SOURCE, stream=self.label, reason="too_large",
                sse_event=event.event, size=event.size, limit=self.max_event_bytes,
            )  # fmt: skip
            return
        if event.event != "update":
            return  # delete, status.update, notification...: not new mentions
        items = ItemMapper()
        mention: MentionIngested | None = None
        problems: Counter[str] = Counter()
        status: Any = None
        try:
            status = json.loads(event.data)
        except (ValueError, RecursionError) as exc:
            items.reject(event.data, f"an 'update' event is not JSON ({exc})", kind="invalid_json")
        else:
            server = str(self.target.params["server"])
            mention = items.map(status_mention, status, server, self.target.watch, problems)
        async with self.lock:
            cursor = await ctx.load_cursor(self.target.key)
            min_ids: dict[str, str] = dict(cursor.get("min_id", {}))
            newer = newest_id(min_ids.get(self.tag), [status] if isinstance(status, dict) else [])
            if newer:
                min_ids[self.tag] = newer
            result = PollResult(
                [mention] if mention is not None else [],
                {**cursor, "min_id": min_ids},
                newest=mention.published_at if mention is not None else None,
                rejected=Counter({k: v for k, v in problems.items() if k != "no_date"}),
                repaired=Counter({k: v for k, v in problems.items() if k == "no_date"}),
                malformed=items.malformed,
                details={"streamed": self.tag},
                quiet=True,
            )
            await ctx.deliver(self.target, result)


def _check_stream_status(response: httpx.Response) -> None:
    """Raise the :class:`FetchError` a poll would for a refused stream."""
    status = response.status_code
    if 200 <= status < 300:
        return
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if retry_after is None and status == 429:
        retry_after = quota_reset(response.headers)  # Mastodon's 429: X-RateLimit-Reset (ISO 8601) only
    if 300 <= status < 400:
        where = response.headers.get("location", "nowhere")
        raise FetchError(
            "redirected",
            f"HTTP {status} to {where}: the streaming API lives elsewhere and the instance did not say where "
            "(/api/v2/instance configuration.urls.streaming); not followed, the token would be dropped",
            status=status,
        )
    if status in (429, 503):
        kind = "rate_limited" if status == 429 else "unavailable"
        raise FetchError(kind, f"HTTP {status}", status=status, retry_after=retry_after)
    if status in (401, 403):
        raise FetchError("unauthorized", f"HTTP {status}: credentials refused", status=status, retryable=False)
    kind = "http_5xx" if status >= 500 else "http_4xx"
    raise FetchError(kind, f"HTTP {status}", status=status, retry_after=retry_after)


def _http_base(url: Any) -> str | None:
    """The ``http(s)://host[:port][/path]`` base of a ``ws(s)://`` or ``http(s)://`` streaming URL, or None."""
    if not isinstance(url, str) or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    scheme = {"wss": "https", "ws": "http", "https": "https", "http": "http"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        return None
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def hashtag_streams(
    timelines: MastodonTimelines, *, backoff: Backoff | None = None, max_event_bytes: int = MAX_EVENT_BYTES
) -> list[HashtagStream]:
    """One stream per hashtag of every target whose server has a user token."""
    streams = []
    for target in timelines.targets():
        if not target.params.get("token"):
            continue
        lock = asyncio.Lock()
        for tag in target.params["hashtags"]:
            streams.append(
                HashtagStream(timelines, target, tag, lock, backoff=backoff, max_event_bytes=max_event_bytes)
            )
    return streams


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
    stream_backoff: Backoff | None = None,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> IngestService:
    """Build the Mastodon ingestor from settings (and optional parts a test provides).

    Servers with a user token also get the streaming API (``sources.mastodon.streaming``, on by
    default): one stream per followed hashtag, alongside the scheduled polls.
    """
    config = config or load_config(settings.config)
    section = config.sources.mastodon
    parts = search_parts(NAME, SOURCE, section, settings, config, http_client=http_client, metrics=metrics)
    targets = mastodon_targets(section, config) if configured(config, "mastodon") else []
    if configured(config, "mastodon") and not section.servers:
        log.info("ingest.source_idle", source=SOURCE, reason="no Mastodon server listed in sources.mastodon.servers")
    if configured(config, "mastodon") and section.servers:
        served = [watch.name for watch in watches_for(config, SOURCE, section.watches)]
        mapped = {target.watch for target in targets}
        reason = "no Mastodon hashtag can be made from its terms (a hashtag needs a letter)"
        report_untargeted(SOURCE, parts.ingest_metrics, served, {w: reason for w in served if w not in mapped})
    timelines = MastodonTimelines(targets, parts.fetcher)
    streams = (
        hashtag_streams(timelines, backoff=stream_backoff, max_event_bytes=max_event_bytes) if section.streaming else []
    )
    return parts.service(settings, timelines, clock=clock, streams=tuple(streams))
