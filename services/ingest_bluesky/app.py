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
from websockets.http11 import USER_AGENT as WEBSOCKETS_USER_AGENT

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
from veille.ingest.metrics import IngestMetrics
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
        user_agent: str | None = None,
    ) -> None:
        self.section = section
        self.user_agent = user_agent
        """Sent as ``User-Agent`` (the service's, as on its HTTP requests), not the WebSocket library's."""
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
                    user_agent_header=self.user_agent or WEBSOCKETS_USER_AGENT,
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


MAX_REQUESTS = 12
"""searchPosts requests one poll of one watch may make, all its terms together."""
MAX_PAGES_PER_TERM = 5
SINCE_OVERLAP = timedelta(minutes=2)
"""How far before the newest ``sortAt`` seen the next search starts: posts indexed late (their
``sortAt`` is their ``createdAt``, before posts already seen) still come; ``seen`` drops repeats."""
SESSION_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})
"""XRPC error codes of a token the PDS no longer takes. packages/pds/src/auth-verifier.ts answers an
expired access JWT with ``InvalidRequestError('Token has expired', 'ExpiredToken')`` and one it cannot
verify with ``InvalidRequestError('Token could not be verified', 'InvalidToken')``: HTTP 400, not 401."""
LOGIN_HOLDOFF = 60.0
"""Seconds after a failed createSession before the same credentials are tried again (the PDS allows 30
logins per 5 minutes and 300 a day per account; many watches polling together would spend them)."""
TRANSIENT = frozenset({"rate_limited", "unavailable", "timeout", "connect", "http_5xx"})


def xrpc_error(exc: FetchError) -> tuple[str | None, str | None]:
    """The ``error`` and ``message`` of an XRPC error body (``{"error": "ExpiredToken", "message": ...}``)."""
    try:
        body = json.loads(exc.body.decode("utf-8", errors="replace")) if exc.body else None
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(body, dict):
        return None, None
    error, message = body.get("error"), body.get("message")
    return (error if isinstance(error, str) else None), (message[:200] if isinstance(message, str) else None)


def session_refused(exc: FetchError) -> bool:
    """Whether the PDS refused the access token itself: 400 ExpiredToken/InvalidToken, or a 401."""
    if exc.status == 401:
        return True
    return exc.status == 400 and xrpc_error(exc)[0] in SESSION_ERRORS


def _described(exc: FetchError) -> str:
    error, message = xrpc_error(exc)
    return f"{exc.message} {error}: {message}" if error else exc.message


class BlueskySearch:
    """Backfill through ``app.bsky.feed.searchPosts`` with an app password (one target per watch).

    searchPosts reads ``OR`` as one more word (every term must match: bluesky-social/atproto#3751,
    social-app#1522), so each term of a watch is searched on its own and the results merged; each
    term keeps its own ``since`` cursor, and one poll makes at most :data:`MAX_REQUESTS` requests
    (terms not reached wait for the next poll, which starts with them).

    ``since`` filters on ``sortAt``, the earlier of ``indexedAt`` and ``createdAt`` (lexicon
    app.bsky.feed.searchPosts), so the cursor is the newest ``sortAt`` seen, never past now: a post
    dated in the future cannot push it ahead of the posts still to come.

    The session: ``createSession`` once, then each expired access token (HTTP 400 ExpiredToken after
    about 2 hours) is renewed with ``refreshSession`` and the refresh token, and only if that fails
    with a new ``createSession`` (limited to 30 per 5 minutes and 300 a day per account).
    """

    name = SOURCE

    def __init__(
        self,
        section: BlueskySource,
        targets: list[Target],
        fetcher: Fetcher,
        *,
        clock: Clock | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.section = section
        self._targets = targets
        self.fetcher = fetcher
        self.api = str(section.api_url).rstrip("/")
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.metrics = metrics
        self._access: str | None = None
        self._refresh: str | None = None
        self._lock = asyncio.Lock()
        self._login_failure: tuple[float, str | None, FetchError] | None = None
        self.session_problem: str | None = None
        """Why no session can be had right now (shown by /readyz), None when the last attempt worked."""

    def targets(self) -> list[Target]:
        """One target per watch, when credentials are configured."""
        return list(self._targets)

    # ------------------------------------------------------------------ session

    def _renewed(self, method: str, error: FetchError | None) -> None:
        outcome = "failed" if error else "ok"
        if self.metrics is not None:
            self.metrics.auth_renewals.labels(SOURCE, method, outcome).inc()
            self.metrics.auth_failing.labels(SOURCE).set(1 if error else 0)
        if error is None:
            self.session_problem = None
            log.info("ingest.session_renewed", source=SOURCE, method=method)
            return
        self.session_problem = f"Bluesky {method} failed ({error.kind}): {_described(error)}"
        log.warning("ingest.session_renewal_failed", source=SOURCE, method=method, kind=error.kind,
                    error=_described(error))  # fmt: skip

    def _keep(self, response_body: bytes, call: str) -> None:
        body, _ = load_json(response_body)
        access = body.get("accessJwt") if isinstance(body, dict) else None
        refresh = body.get("refreshJwt") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise FetchError("unauthorized", f"{call} returned no accessJwt", retryable=False)
        self._access = access
        self._refresh = refresh if isinstance(refresh, str) and refresh else None

    async def _login(self) -> None:
        password = self.section.password()  # (re-read: a rotated app_password_file is taken at once)
        if self._login_failure is not None:
            failed_at, failed_password, error = self._login_failure
            if failed_password == password and time.monotonic() - failed_at < LOGIN_HOLDOFF:
                raise error  # the watches polled meanwhile share the last refusal of these credentials
        try:
            response = await self.fetcher.request(
                "POST",
                f"{self.api}/com.atproto.server.createSession",
                json={"identifier": self.section.handle, "password": password},
            )
            self._keep(response.body, "createSession")
        except FetchError as exc:
            self._renewed("login", exc)
            error = FetchError(
                exc.kind, f"createSession: {_described(exc)}", status=exc.status, retryable=exc.retryable,
                retry_after=exc.retry_after,
            )  # fmt: skip
            self._login_failure = (time.monotonic(), password, error)
            raise error from exc
        self._login_failure = None
        self._renewed("login", None)

    async def _refresh_session(self) -> bool:
        """Trade the refresh token for a new pair; False when the PDS refused it (log in again)."""
        refresh, self._refresh = self._refresh, None  # single use: the PDS rotates it
        if refresh is None:
            return False
        try:
            response = await self.fetcher.request(
                "POST",
                f"{self.api}/com.atproto.server.refreshSession",
                headers={"Authorization": f"Bearer {refresh}"},
            )
            self._keep(response.body, "refreshSession")
        except FetchError as exc:
            self._renewed("refresh", exc)
            if exc.kind in TRANSIENT:
                self._refresh = refresh  # not used up: try it again after the pause
                raise
            return False
        self._renewed("refresh", None)
        return True

    async def _session(self, stale: str | None = None) -> str:
        """The access token: the current one, or a renewed one when ``stale`` was refused."""
        async with self._lock:  # watches poll concurrently: one renewal for all of them
            if self._access is None or self._access == stale:
                self._access = None
                if not await self._refresh_session():
                    await self._login()
            assert self._access is not None
            return self._access

    async def _search(self, params: dict[str, str]) -> Any:
        token = await self._session()
        for attempt in (1, 2):
            try:
                response = await self.fetcher.get(
                    f"{self.api}/app.bsky.feed.searchPosts", params=params, headers={"Authorization": f"Bearer {token}"}
                )
            except FetchError as exc:
                if not session_refused(exc):
                    raise
                if attempt == 2:
                    raise FetchError(
                        "unauthorized", f"searchPosts refused a fresh session: {_described(exc)}", status=exc.status,
                        retryable=False,
                    ) from exc  # fmt: skip
                log.info("ingest.session_expired", source=SOURCE, status=exc.status, error=_described(exc))
                token = await self._session(stale=token)
                continue
            return load_json(response.body)[0]
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ polling

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Search each term of the watch, newest first, since the newest ``sortAt`` seen for that term."""
        terms = positive_terms(str(target.params["query"]))
        if not terms:
            raise FetchError("untranslatable", "the watch query has no word or phrase to search for", retryable=False)
        now = self.clock()
        raw_terms = cursor.get("terms")
        saved: dict[str, Any] = raw_terms if isinstance(raw_terms, dict) else {}
        raw_start = cursor.get("next_term")
        start = raw_start % len(terms) if isinstance(raw_start, int) and not isinstance(raw_start, bool) else 0
        order = terms[start:] + terms[:start]
        seen = [s for s in cursor.get("seen", []) if isinstance(s, str)]
        known = set(seen)
        items = ItemMapper()
        fresh: list[MentionIngested] = []
        states: dict[str, dict[str, str]] = {}
        budget = MAX_REQUESTS
        fetched = 0
        deferred: list[str] = []
        truncated: list[str] = []
        for term in order:
            raw_previous = saved.get(term)
            previous: dict[str, Any] = raw_previous if isinstance(raw_previous, dict) else {}
            newest = _not_after(parse_time(previous.get("sort_at")), now)
            if budget <= 0:
                deferred.append(term)
                if newest is not None:
                    states[term] = {"sort_at": _iso(newest)}
                continue
            params = {"q": search_query([term]), "sort": "latest", "limit": "100"}
            if newest is not None:
                params["since"] = _iso(newest - SINCE_OVERLAP)
            caught_up = False
            best = newest
            for _ in range(MAX_PAGES_PER_TERM):
                if budget <= 0:
                    break
                body = await self._search(params)
                budget -= 1
                if not isinstance(body, dict) or not isinstance(body.get("posts"), list):
                    raise FetchError("invalid_payload", "searchPosts answer has no 'posts' list", retryable=False)
                page: list[Any] = body["posts"]
                fetched += len(page)
                for post in page:
                    sort_at = _not_after(sort_at_of(post), now)
                    if sort_at is not None and (best is None or sort_at > best):
                        best = sort_at
                    if sort_at is not None and newest is not None and sort_at < newest:
                        caught_up = True  # into the overlap: what follows was read by earlier polls
                    mention = items.map(post_view_mention, post, target.watch)
                    if mention is not None and mention.id not in known:
                        known.add(mention.id)
                        fresh.append(mention)
                next_page = body.get("cursor")
                if caught_up or not page or not isinstance(next_page, str) or not next_page:
                    caught_up = True
                    break
                params["cursor"] = next_page
            if not caught_up and newest is not None:  # (a term's first poll has no cursor to reach)
                truncated.append(term)
            if best is not None:
                states[term] = {"sort_at": _iso(best)}
        self._report_backlog(target, truncated, deferred)
        malformed = items.unseen(SOURCE, cursor.get("seen"))
        remembered = [m.id for m in fresh] + [r.item_id(SOURCE) for r in malformed]
        new_cursor: Cursor = {k: v for k, v in cursor.items() if k not in ("since", "terms", "next_term", "seen")}
        new_cursor["seen"] = (remembered + seen)[:SEEN_MAX]
        new_cursor["terms"] = states
        new_cursor["next_term"] = terms.index(deferred[0]) if deferred else 0
        dates = [
            m.published_at
            for m in fresh
            if m.published_at and m.published_at <= now + timedelta(seconds=MAX_CLOCK_SKEW)
        ]
        details: dict[str, Any] = {"posts": fetched, "terms": len(terms), "requests": MAX_REQUESTS - budget}
        if deferred:
            details["terms_deferred"] = len(deferred)
        if truncated:
            details["terms_truncated"] = len(truncated)
        return PollResult(fresh, new_cursor, newest=max(dates, default=None), malformed=malformed, details=details)

    def _report_backlog(self, target: Target, truncated: list[str], deferred: list[str]) -> None:
        """Terms whose new posts did not all fit in this poll: counted, flagged while it lasts, logged."""
        if self.metrics is not None:
            if truncated:
                self.metrics.backlog_truncated.labels(SOURCE, target.name).inc()
            self.metrics.backlog_pending.labels(SOURCE, target.name).set(1 if truncated or deferred else 0)
        if truncated or deferred:
            log.warning(
                "ingest.backlog_truncated", source=SOURCE, target=target.name, truncated_terms=truncated,
                deferred_terms=deferred, max_requests=MAX_REQUESTS, max_pages=MAX_PAGES_PER_TERM,
            )  # fmt: skip


def sort_at_of(post: Any) -> datetime | None:
    """A postView's ``sortAt``, what ``since`` filters on: the earlier of ``indexedAt`` and ``createdAt``."""
    if not isinstance(post, dict):
        return None
    record = post.get("record")
    created = parse_time(record.get("createdAt")) if isinstance(record, dict) else None
    indexed = parse_time(post.get("indexedAt"))
    known = [t for t in (created, indexed) if t is not None]
    return min(known) if known else None


def _not_after(moment: datetime | None, now: datetime) -> datetime | None:
    return None if moment is None else min(moment, now)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


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
                user_agent=settings.user_agent,
            ),
        )
        if configured(config, "bluesky")
        else ()
    )
    search = BlueskySearch(section, targets, parts.fetcher(), clock=clock, metrics=parts.ingest_metrics)
    service = parts.service(settings, search, clock=clock, streams=streams)
    firehose = streams[0] if streams else None

    def session_problem() -> str | None:
        """The search's session problem, unless Jetstream delivers: the service still ingests then.

        A refused login stops only the search backfill; ``veille_source_auth_failing`` and the
        ``ingest.session_renewal_failed`` lines say so while readiness stays green.
        """
        problem = search.session_problem
        if problem is None or firehose is None:
            return problem
        state = service.states.get(firehose.target.key)
        streaming = firehose.connections > 0 and state is not None and state.failures < service.failing_after
        return None if streaming else problem

    service.health.add("bluesky_session", session_problem)
    return service
