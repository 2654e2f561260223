"""The Bluesky ingestor against a loopback Jetstream (WebSocket) and XRPC server, and a real nats-server."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from ingest_helpers import (
    FIXED_NOW,
    LoopbackServer,
    config_from,
    metric,
    payload,
    read_mentions,
    settings_for,
    wait_for,
)
from websockets.asyncio.server import ServerConnection, serve

from services.ingest_bluesky.app import create_app
from veille.ingest.runner import IngestService
from veille.models import mention_id_for
from veille.natsserver import NatsServerProcess, free_port

pytestmark = pytest.mark.integration

EVENTS = [line for line in payload("jetstream_events.jsonl").decode().splitlines() if line.strip()]


class FakeJetstream:
    """A loopback Jetstream: replays recorded events from the requested cursor; can drop the first connection."""

    def __init__(self, *, drop_first_after: int | None = None) -> None:
        self.drop_first_after = drop_first_after
        self.paths: list[str] = []
        self.user_agents: list[str | None] = []
        self.port = 0
        self._server: Any = None

    @property
    def url(self) -> str:
        """The subscribe URL."""
        return f"ws://127.0.0.1:{self.port}/subscribe"

    async def handler(self, connection: ServerConnection) -> None:
        """Serve one subscriber."""
        assert connection.request is not None
        path = connection.request.path
        self.paths.append(path)
        self.user_agents.append(connection.request.headers.get("User-Agent"))
        query = parse_qs(urlsplit(path).query)
        assert query["wantedCollections"] == ["app.bsky.feed.post"]
        since = int(query["cursor"][0]) if "cursor" in query else 0
        events = [e for e in EVENTS if json.loads(e)["time_us"] >= since]
        if self.drop_first_after is not None and len(self.paths) == 1:
            for event in events[: self.drop_first_after]:
                await connection.send(event)
            await connection.send("{not json")
            await asyncio.sleep(0.3)
            connection.transport.abort()  # a dropped connection, no closing handshake
            return
        for event in events:
            await connection.send(event)
        await connection.wait_closed()

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await serve(self.handler, "127.0.0.1", 0)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close connections."""
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def jetstream() -> AsyncIterator[FakeJetstream]:
    """A loopback Jetstream that drops its first connection after three events."""
    server = FakeJetstream(drop_first_after=3)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def make_app(nats_server: NatsServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """Build Bluesky ingestors; stop them at the end."""
    apps: list[IngestService] = []

    async def factory(jetstream_url: str, extra: str = "", query: str = '"Acme Corp"') -> IngestService:
        yaml_text = f"""
watches:
  - name: acme
    query: '{query}'
sources:
  bluesky:
    jetstream_url: '{jetstream_url}'
    rewind: 5s
    failing_after: 2
    timeout: 2s
{extra}
"""
        app = create_app(
            settings_for(nats_server.url), config=config_from(yaml_text), clock=lambda: FIXED_NOW, flush_interval=0.05
        )
        apps.append(app)
        return app

    yield factory
    for app in apps:
        await app.stop()


async def stored_count(url: str, n: int) -> bool:
    """Whether at least ``n`` mentions are in the stream."""
    return len(await read_mentions(url)) >= n


async def test_matching_posts_are_published_once_across_a_dropped_connection(
    make_app: Callable[..., Any], jetstream: FakeJetstream, nats_server: NatsServerProcess
) -> None:
    """After a drop the client resumes from the cursor less the rewind; replayed posts are dropped as duplicates."""
    app = await make_app(jetstream.url)
    await app.start()
    await wait_for(lambda: stored_count(nats_server.url, 2))
    await wait_for(lambda: _async(metric(app.metrics, "veille_ingest_duplicates_total", source="bluesky") >= 1))
    await app.stop()
    assert "cursor" not in jetstream.paths[0]
    assert parse_qs(urlsplit(jetstream.paths[1]).query)["cursor"] == [str(1749718802000000 - 5_000_000)]
    stored = {msg_id: m for msg_id, m in await read_mentions(nats_server.url)}
    assert len(stored) == 2
    first = stored[mention_id_for("bluesky", "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3lrhzjwzsxk2x")]
    assert str(first.url) == "https://bsky.app/profile/did:plc:eygmaihciaxprqvxpfvl6flk/post/3lrhzjwzsxk2x"
    assert first.text == "Acme Corp is down again. Third time this month."
    assert first.lang == "en" and first.watch == "acme" and first.author == "did:plc:eygmaihciaxprqvxpfvl6flk"
    assert first.published_at == datetime(2025, 6, 12, 9, 0, 0, 100000, tzinfo=UTC)
    french = [m for m in stored.values() if m.lang == "fr"]
    assert french and french[0].text.startswith("Toujours aucune nouvelle d'ACME Corp")
    m = app.metrics
    assert metric(m, "veille_ingest_entries_rejected_total", source="bluesky", reason="invalid_event") == 1
    assert metric(m, "veille_ingest_errors_total", source="bluesky", kind="disconnected") == 1


async def test_the_time_us_cursor_survives_a_restart(
    make_app: Callable[..., Any], nats_server: NatsServerProcess
) -> None:
    """A restarted service (and nats-server) asks Jetstream from the saved time_us less the rewind."""
    server = FakeJetstream()
    await server.start()
    try:
        app = await make_app(server.url)
        await app.start()
        await wait_for(lambda: stored_count(nats_server.url, 2))
        await asyncio.sleep(0.2)  # let the last cursor flush land (no assertion on time)
        await app.stop()
        nats_server.stop()
        nats_server.start()
        restarted = await make_app(server.url)
        await restarted.start()
        await wait_for(lambda: _async(len(server.paths) >= 2))
        await restarted.stop()
    finally:
        await server.stop()
    assert parse_qs(urlsplit(server.paths[1]).query)["cursor"] == [str(1749718806000000 - 5_000_000)]
    assert len(await read_mentions(nats_server.url)) == 2
    assert server.user_agents == [settings_for(nats_server.url).user_agent] * 2  # veille's, not websockets'


async def test_an_unreachable_jetstream_turns_readiness_red_with_the_reason(
    make_app: Callable[..., Any], nats_server: NatsServerProcess
) -> None:
    """Connection failures in a row are counted, backed off, and named by /readyz."""
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe")
    await app.start()
    await wait_for(lambda: _async("sources" in app.health.problems()))
    problem = app.health.problems()["sources"]
    await app.stop()
    assert "jetstream" in problem and "connect" in problem
    assert metric(app.metrics, "veille_ingest_errors_total", source="bluesky", kind="connect") >= 2


async def test_search_posts_backfill_logs_in_and_pages(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """With an app password, searchPosts is paged and mapped; the next poll asks ``since`` the newest sortAt."""
    sessions: list[dict[str, Any]] = []

    async def create_session(request: web.Request) -> web.StreamResponse:
        sessions.append(await request.json())
        return web.json_response(
            {"did": "did:plc:me", "handle": "me.bsky.social", "accessJwt": f"jwt-{len(sessions)}", "refreshJwt": "r"}
        )

    async def search(request: web.Request) -> web.StreamResponse:
        assert request.headers["Authorization"] == "Bearer jwt-1"
        body = payload("bsky_search_page2.json" if request.query.get("cursor") else "bsky_search_page1.json")
        return web.Response(body=body, content_type="application/json")

    http_server.route("/xrpc/com.atproto.server.createSession", create_session)
    http_server.route("/xrpc/app.bsky.feed.searchPosts", search)
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", login(http_server))
    await app.connect()
    [outcome] = await app.poll_all()
    assert sessions == [{"identifier": "me.bsky.social", "password": "abcd-efgh-ijkl-mnop"}]
    requests = http_server.requests_to("/xrpc/app.bsky.feed.searchPosts")
    assert requests[-1].query["q"] == '"Acme Corp"' and requests[-1].query["sort"] == "latest"
    assert requests[-1].query["cursor"] == "1"
    assert (outcome.published, outcome.rejected) == (2, 1)
    stored = {msg_id: m for msg_id, m in await read_mentions(nats_server.url)}
    post = stored[mention_id_for("bluesky", "at://did:plc:eygmaihciaxprqvxpfvl6flk/app.bsky.feed.post/3lrhzjwzsxk2x")]
    assert post.author == "ops.example.com"
    assert str(post.url) == "https://bsky.app/profile/ops.example.com/post/3lrhzjwzsxk2x"
    assert (post.engagement.likes, post.engagement.reposts, post.engagement.replies) == (40, 7, 12)
    again = (await app.poll_all())[0]
    assert again.published == 0 and requests[-1].query.get("since") is None
    # sortAt = min(createdAt 09:00:00.100, indexedAt 09:00:01), less the two-minute overlap
    assert (
        http_server.requests_to("/xrpc/app.bsky.feed.searchPosts")[-1].query["since"] == "2025-06-12T08:58:00.100000Z"
    )
    assert len(sessions) == 1


def login(server: LoopbackServer, password: str = "abcd-efgh-ijkl-mnop") -> str:
    """The ``sources.bluesky`` lines pointing the search at ``server`` with an app password."""
    return (
        f"    api_url: '{server.url}/xrpc'\n    handle: me.bsky.social\n    app_password: {password}\n"
        "    min_interval: 0s"
    )


# ---------------------------------------------------------------------- a Bluesky that behaves like bsky.social


def post_view(rkey: str, text: str, created: str, indexed: str) -> dict[str, Any]:
    """An app.bsky.feed.defs#postView as searchPosts returns it (shape of bsky_search_page1.json)."""
    did = "did:plc:eygmaihciaxprqvxpfvl6flk"
    return {
        "uri": f"at://{did}/app.bsky.feed.post/{rkey}",
        "cid": f"bafyrei{rkey}",
        "author": {"did": did, "handle": "ops.example.com", "displayName": "Ops watcher", "labels": []},
        "record": {"$type": "app.bsky.feed.post", "createdAt": created, "langs": ["en"], "text": text},
        "replyCount": 0,
        "repostCount": 0,
        "likeCount": 0,
        "quoteCount": 0,
        "indexedAt": indexed,
        "labels": [],
    }


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class FakeBluesky:
    """bsky.social for searchPosts: the PDS's sessions and the AppView's post search, on loopback.

    Sessions as in bluesky-social/atproto packages/pds (xrpc-server errors are ``{"error", "message"}``):
    - createSession: ``AuthRequiredError('Invalid identifier or password')``, HTTP 401
      ``AuthenticationRequired`` (api/com/atproto/server/createSession.ts);
    - an access JWT past its 2 hours: ``InvalidRequestError('Token has expired', 'ExpiredToken')``,
      HTTP **400**; one it cannot verify: 400 ``InvalidToken`` (auth-verifier.ts);
    - refreshSession takes the refresh JWT as bearer and rotates it; a used or revoked one is
      ``InvalidRequestError('Token has been revoked', 'ExpiredToken')``, 400 (refreshSession.ts).
    Search as the AppView does it: every word or phrase of ``q`` must match, ``OR`` being one more
    (ignored) word (bluesky-social/atproto#3751, social-app#1522); ``since`` is inclusive on
    ``sortAt`` = min(indexedAt, createdAt) (lexicon app.bsky.feed.searchPosts); ``sort=latest``
    is newest sortAt first; ``cursor`` is an offset.
    """

    def __init__(self, posts: list[dict[str, Any]], password: str = "abcd-efgh-ijkl-mnop") -> None:
        self.posts = posts
        self.password = password
        self.access: dict[str, bool] = {}
        """Access tokens issued, and whether each is still valid."""
        self.refresh: str | None = None
        self.logins = 0
        self.refreshes = 0
        self.queries: list[dict[str, str]] = []

    def install(self, server: LoopbackServer) -> None:
        """Serve the three XRPC methods under ``/xrpc`` of ``server``."""
        server.route("/xrpc/com.atproto.server.createSession", self.create_session)
        server.route("/xrpc/com.atproto.server.refreshSession", self.refresh_session)
        server.route("/xrpc/app.bsky.feed.searchPosts", self.search)

    def expire(self) -> None:
        """Two hours pass: every access token issued so far has expired."""
        self.access = dict.fromkeys(self.access, False)

    def _issue(self) -> web.StreamResponse:
        access = f"access-{len(self.access) + 1}"
        self.access[access] = True
        self.refresh = f"refresh-{len(self.access)}"
        return web.json_response(
            {"did": "did:plc:me", "handle": "me.bsky.social", "accessJwt": access, "refreshJwt": self.refresh}
        )

    async def create_session(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("password") != self.password:
            return _xrpc_error(401, "AuthenticationRequired", "Invalid identifier or password")
        self.logins += 1
        return self._issue()

    async def refresh_session(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token != self.refresh:
            return _xrpc_error(400, "ExpiredToken", "Token has been revoked")
        self.refreshes += 1
        return self._issue()

    async def search(self, request: web.Request) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.access:
            return _xrpc_error(400, "InvalidToken", "Token could not be verified")
        if not self.access[token]:
            return _xrpc_error(400, "ExpiredToken", "Token has expired")
        query = dict(request.query)
        self.queries.append(query)
        words = [a or b for a, b in re.findall(r'"([^"]+)"|(\S+)', query["q"]) if (a or b) not in ("OR", "AND")]
        since = _when(query["since"]) if "since" in query else None

        def sort_at(post: dict[str, Any]) -> datetime:
            return min(_when(post["indexedAt"]), _when(post["record"]["createdAt"]))

        hits = [
            p
            for p in self.posts
            if all(w.lower() in p["record"]["text"].lower() for w in words) and (since is None or sort_at(p) >= since)
        ]
        hits.sort(key=sort_at, reverse=True)
        offset, limit = int(query.get("cursor", "0")), int(query.get("limit", "25"))
        page = hits[offset : offset + limit]
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(hits)}
        if offset + limit < len(hits):
            body["cursor"] = str(offset + limit)
        return web.json_response(body)


def _xrpc_error(status: int, error: str, message: str) -> web.StreamResponse:
    return web.json_response({"error": error, "message": message}, status=status)


@pytest.fixture
def bluesky(http_server: LoopbackServer) -> FakeBluesky:
    """A FakeBluesky on the loopback server, with one post about Acme Corp."""
    fake = FakeBluesky([post_view("3lacme0000001", "Acme Corp is down", "2025-06-12T10:00:00.000Z",
                                  "2025-06-12T10:00:00.500Z")])  # fmt: skip
    fake.install(http_server)
    return fake


def renewals(app: IngestService, method: str, outcome: str) -> float:
    """``veille_source_auth_renewals_total`` for Bluesky."""
    return metric(app.metrics, "veille_source_auth_renewals_total", source="bluesky", method=method, outcome=outcome)


async def test_an_expired_access_token_is_renewed_with_the_refresh_token(
    make_app: Callable[..., Any], http_server: LoopbackServer, bluesky: FakeBluesky, nats_server: NatsServerProcess
) -> None:
    """Two hours on, searchPosts answers 400 ExpiredToken: refreshSession renews it, no new login, the poll goes on."""
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", login(http_server))
    await app.connect()
    assert (await app.poll_all())[0].published == 1
    bluesky.expire()
    bluesky.posts.append(post_view("3lacme0000002", "Acme Corp is back", "2025-06-12T11:00:00.000Z",
                                   "2025-06-12T11:00:00.500Z"))  # fmt: skip
    outcome = (await app.poll_all())[0]
    assert outcome.error is None and outcome.published == 1
    assert (bluesky.logins, bluesky.refreshes) == (1, 1)
    assert renewals(app, "refresh", "ok") == 1
    assert metric(app.metrics, "veille_source_auth_failing", source="bluesky") == 0
    assert "bluesky_session" not in app.health.problems()


async def test_a_revoked_refresh_token_falls_back_to_a_new_login(
    make_app: Callable[..., Any], http_server: LoopbackServer, bluesky: FakeBluesky, nats_server: NatsServerProcess
) -> None:
    """refreshSession answers 400 ExpiredToken 'Token has been revoked': one createSession, and the search goes on."""
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", login(http_server))
    await app.connect()
    await app.poll_all()
    bluesky.expire()
    bluesky.refresh = None  # revoked (the account's sessions were reset)
    outcome = (await app.poll_all())[0]
    assert outcome.error is None
    assert (bluesky.logins, bluesky.refreshes) == (2, 0)
    assert (renewals(app, "refresh", "failed"), renewals(app, "login", "ok")) == (1, 2)


async def test_a_refused_login_shows_in_readiness_and_metrics_while_it_lasts(
    make_app: Callable[..., Any],
    http_server: LoopbackServer,
    bluesky: FakeBluesky,
    nats_server: NatsServerProcess,
    tmp_path: Path,
) -> None:
    """A revoked app password: polls fail (unauthorized), /readyz names the PDS's reason until a login works."""
    secret = tmp_path / "bluesky_app_password"
    secret.write_text("revoked-app-password\n")
    section = login(http_server).replace(
        "    app_password: abcd-efgh-ijkl-mnop\n", f"    app_password_file: '{secret}'\n"
    )
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", section)
    await app.connect()
    for _ in range(2):  # the second poll does not spend another createSession on the same refused password
        outcome = (await app.poll_all())[0]
        assert outcome.error is not None and outcome.error.kind == "unauthorized"
    assert len(http_server.requests_to("/xrpc/com.atproto.server.createSession")) == 1
    problem = app.health.problems()["bluesky_session"]
    assert "AuthenticationRequired" in problem and "Invalid identifier or password" in problem
    assert metric(app.metrics, "veille_source_auth_failing", source="bluesky") == 1
    assert renewals(app, "login", "failed") == 1
    secret.write_text("abcd-efgh-ijkl-mnop\n")  # the operator writes a new app password to the file
    assert (await app.poll_all())[0].published == 1
    assert "bluesky_session" not in app.health.problems()
    assert metric(app.metrics, "veille_source_auth_failing", source="bluesky") == 0


async def test_each_term_is_searched_on_its_own_and_the_results_merged_once(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """searchPosts reads OR as AND: a two-term watch gets posts with either term, a post with both once."""
    fake = FakeBluesky([
        post_view("3lacme0000001", "Acme Corp is down", "2025-06-12T10:00:00.000Z", "2025-06-12T10:00:00.500Z"),
        post_view("3lacme0000002", "#acmecorp outage", "2025-06-12T10:01:00.000Z", "2025-06-12T10:01:00.500Z"),
        post_view("3lacme0000003", "Acme Corp aka #acmecorp", "2025-06-12T10:02:00.000Z", "2025-06-12T10:02:00.500Z"),
        post_view("3lother000001", "nothing to see", "2025-06-12T10:03:00.000Z", "2025-06-12T10:03:00.500Z"),
    ])  # fmt: skip
    fake.install(http_server)
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", login(http_server), query='"Acme Corp" OR acmecorp')
    await app.connect()
    outcome = (await app.poll_all())[0]
    assert sorted(q["q"] for q in fake.queries) == ['"Acme Corp"', "acmecorp"]
    assert (outcome.published, outcome.duplicates) == (3, 0)
    texts = sorted(m.text for _, m in await read_mentions(nats_server.url))
    assert texts == ["#acmecorp outage", "Acme Corp aka #acmecorp", "Acme Corp is down"]


async def test_a_poll_makes_a_bounded_number_of_requests_and_the_next_one_starts_with_the_terms_left(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A 15-term watch: at most 12 searches a poll; the 3 terms left go first next time; the backlog is flagged."""
    terms = [f"acme{i:02d}" for i in range(15)]
    fake = FakeBluesky([
        post_view(f"3lacme00000{i:02d}", f"{term} news", "2025-06-12T10:00:00.000Z", "2025-06-12T10:00:00.500Z")
        for i, term in enumerate(terms)
    ])  # fmt: skip
    fake.install(http_server)
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", login(http_server), query=" OR ".join(terms))
    await app.connect()
    first = (await app.poll_all())[0]
    asked_first = [q["q"] for q in fake.queries]
    assert len(asked_first) == 12 and first.published == 12
    pending = metric(app.metrics, "veille_source_backlog_pending", source="bluesky", target="acme")
    fake.queries.clear()
    second = (await app.poll_all())[0]
    asked_second = [q["q"] for q in fake.queries]
    assert asked_second[:3] == terms[12:] and len(asked_second) == 12
    assert second.published == 3
    assert pending == 1
    assert metric(app.metrics, "veille_source_backlog_pending", source="bluesky", target="acme") == 1  # 3 more left
    assert len(await read_mentions(nats_server.url)) == 15


async def test_a_post_dated_in_the_future_does_not_blank_the_backfill(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """``since`` filters on sortAt = min(indexedAt, createdAt): a createdAt 6 h ahead must not move the cursor there."""
    fake = FakeBluesky([
        post_view("3lacme0000001", "Acme Corp is down", "2025-06-12T11:00:00.000Z", "2025-06-12T11:00:00.500Z"),
        post_view("3lacmefuture1", "Acme Corp from the future", "2025-06-12T18:00:00.000Z", "2025-06-12T11:30:00.000Z"),
    ])  # fmt: skip
    fake.install(http_server)
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", login(http_server))
    await app.connect()
    assert (await app.poll_all())[0].published == 2
    fake.posts.append(
        post_view("3lacme0000003", "Acme Corp is back", "2025-06-12T11:45:00.000Z", "2025-06-12T11:45:00.400Z")
    )
    outcome = (await app.poll_all())[0]
    assert fake.queries[-1]["since"] == "2025-06-12T11:28:00Z"  # the future post's indexedAt, less the overlap
    assert outcome.published == 1 and outcome.duplicates == 0


async def _async(value: bool) -> bool:
    return value


async def test_a_refused_login_leaves_readiness_green_while_jetstream_delivers(
    make_app: Callable[..., Any], http_server: LoopbackServer, bluesky: FakeBluesky, nats_server: NatsServerProcess
) -> None:
    """Only the search backfill needs a session: with Jetstream streaming, a refused login is a metric and a
    log line, not an unready service; once the stream is gone too, /readyz names the login's reason."""
    server = FakeJetstream()
    await server.start()
    try:
        app = await make_app(server.url, login(http_server, password="revoked-app-password"))
        await app.start()
        await wait_for(lambda: stored_count(nats_server.url, 2))
        outcome = (await app.poll_all())[0]
        assert outcome.error is not None and outcome.error.kind == "unauthorized"
        assert metric(app.metrics, "veille_source_auth_failing", source="bluesky") == 1
        assert "bluesky_session" not in app.health.problems()
    finally:
        await server.stop()
    await wait_for(lambda: _async("bluesky_session" in app.health.problems()))
    assert "Invalid identifier or password" in app.health.problems()["bluesky_session"]
