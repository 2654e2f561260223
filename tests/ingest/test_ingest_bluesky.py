"""The Bluesky ingestor against a loopback Jetstream (WebSocket) and XRPC server, and a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
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

    async def factory(jetstream_url: str, extra: str = "") -> IngestService:
        yaml_text = f"""
watches:
  - name: acme
    query: '"Acme Corp"'
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


async def test_search_posts_backfill_logs_in_pages_and_renews_an_expired_session(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """With an app password, searchPosts is paged; a 401 ExpiredToken triggers one new createSession."""
    sessions: list[dict[str, Any]] = []

    async def create_session(request: web.Request) -> web.StreamResponse:
        sessions.append(await request.json())
        return web.json_response(
            {"did": "did:plc:me", "handle": "me.bsky.social", "accessJwt": f"jwt-{len(sessions)}", "refreshJwt": "r"}
        )

    async def search(request: web.Request) -> web.StreamResponse:
        if request.headers["Authorization"] == "Bearer jwt-1":
            return web.json_response({"error": "ExpiredToken", "message": "Token has expired"}, status=401)
        body = payload("bsky_search_page2.json" if request.query.get("cursor") else "bsky_search_page1.json")
        return web.Response(body=body, content_type="application/json")

    http_server.route("/xrpc/com.atproto.server.createSession", create_session)
    http_server.route("/xrpc/app.bsky.feed.searchPosts", search)
    extra = f"    api_url: '{http_server.url}/xrpc'\n    handle: me.bsky.social\n    app_password: abcd-efgh-ijkl-mnop"
    extra += "\n    min_interval: 0s"
    app = await make_app(f"ws://127.0.0.1:{free_port()}/subscribe", extra)
    await app.connect()
    [outcome] = await app.poll_all()
    assert sessions == [{"identifier": "me.bsky.social", "password": "abcd-efgh-ijkl-mnop"}] * 2
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
    assert (
        http_server.requests_to("/xrpc/app.bsky.feed.searchPosts")[-1].query["since"] == "2025-06-12T09:00:00.100000Z"
    )


async def _async(value: bool) -> bool:
    return value
