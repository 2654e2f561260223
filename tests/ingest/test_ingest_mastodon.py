"""The Mastodon ingestor against loopback Mastodon servers and a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

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

from services.ingest_mastodon.app import create_app
from services.ingest_mastodon.logic import SseEvent, SseParser, hashtags_for
from veille.ingest.backoff import Backoff
from veille.ingest.http import parse_reset_time, quota_reset
from veille.ingest.runner import IngestService
from veille.models import mention_id_for
from veille.natsserver import NatsServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture
async def make_app(nats_server: NatsServerProcess, http_server: LoopbackServer) -> AsyncIterator[Callable[..., Any]]:
    """Build connected Mastodon ingestors for two loopback 'servers'; stop them at the end."""
    apps: list[IngestService] = []

    async def factory(servers: tuple[str, ...] = ("one", "two")) -> IngestService:
        listed = "\n".join(f"      - url: '{http_server.url}/{name}'" for name in servers)
        yaml_text = f"""
watches:
  - name: acme
    query: 'acme'
sources:
  mastodon:
    min_interval: 0s
    servers:
{listed}
      - url: '{http_server.url}/three'
        token: secret-token
        hashtags: []
"""
        app = create_app(settings_for(nats_server.url), config=config_from(yaml_text), clock=lambda: FIXED_NOW)
        apps.append(app)
        await app.connect()
        return app

    yield factory
    for app in apps:
        await app.stop()


def timeline(*pages: bytes) -> Any:
    """A hashtag timeline handler serving ``pages`` in turn, then an empty array."""
    queue = list(pages)

    async def handler(request: web.Request) -> web.StreamResponse:
        body = queue.pop(0) if queue else b"[]"
        return web.Response(body=body, content_type="application/json")

    return handler


def test_hashtags_come_from_the_query_terms() -> None:
    """Words and phrases become hashtags without spaces or punctuation."""
    assert hashtags_for(["Acme Corp", "acme.com", "Acmé", "2025"]) == ["acmecorp", "acmecom", "acmé"]


def test_the_sse_parser_ignores_chunk_boundaries_and_bounds_events() -> None:
    """Split anywhere, CRLF or LF, comments skipped; an oversized line or event comes out flagged, without data."""
    stream = (
        b":thump\nevent: update\r\ndata: {}\r\n\r\n:thump\n\nevent: delete\ndata: 12\n\n"
        b"event: update\ndata: " + b"x" * 100 + b"\n\nevent: update\ndata: a\ndata: b\n\n"
    )
    whole = list(SseParser(max_line=64, max_event=64).feed(stream))
    parser = SseParser(max_line=64, max_event=64)
    split = [event for i in range(len(stream)) for event in parser.feed(stream[i : i + 1])]
    assert [(e.event, e.data, e.too_large) for e in whole] == [
        ("update", "{}", False),
        ("delete", "12", False),
        ("update", "", True),
        ("update", "a\nb", False),
    ]
    assert split == whole
    assert all(isinstance(e, SseEvent) for e in whole)


async def test_statuses_are_mapped_and_the_same_uri_on_two_servers_is_published_once(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Each status lands once with author, followers, engagement and language; a copy from another server is a dup."""
    http_server.route("/one/api/v1/timelines/tag/acme", timeline(payload("mastodon_tag_acme.json")))
    http_server.route("/two/api/v1/timelines/tag/acme", timeline(payload("mastodon_tag_acme_other_server.json")))
    http_server.route("/three/api/v1/timelines/tag/acme", timeline(b"[]"))
    app = await make_app()
    outcomes = await app.poll_all()
    assert [(o.published, o.duplicates, o.rejected) for o in outcomes] == [(2, 0, 1), (0, 1, 0), (0, 0, 0)]
    assert http_server.requests_to("/three/api/v1/timelines/tag/acme")[0].headers["Authorization"] == (
        "Bearer secret-token"
    )
    stored = {msg_id: m for msg_id, m in await read_mentions(nats_server.url)}
    assert len(stored) == 2
    claire = stored[mention_id_for("mastodon", "https://mastodon.social/users/claire/statuses/114667412345678901")]
    assert str(claire.url) == "https://mastodon.social/@claire/114667412345678901"
    assert claire.text == "Encore une panne chez #Acme ce matin ! Trois heures sans service."
    assert claire.author == "claire@127.0.0.1" and claire.author_followers == 1520
    assert (claire.engagement.likes, claire.engagement.reposts, claire.engagement.replies) == (31, 12, 4)
    assert claire.lang == "fr" and claire.published_at == datetime(2025, 6, 12, 9, 41, 12, tzinfo=UTC)
    bob = stored[mention_id_for("mastodon", "https://fosstodon.org/users/bob/statuses/114667399990000000")]
    assert bob.text.startswith("acme rant\nTheir status page said all green.")
    assert bob.author == "bob@fosstodon.org"
    assert metric(app.metrics, "veille_ingest_duplicates_total", source="mastodon") == 1


async def test_the_min_id_cursor_survives_a_restart(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """After a restart the timeline is read from the newest id seen, and only newer statuses are published."""
    newer = json.loads(payload("mastodon_tag_acme.json"))[0]
    newer.update(id="114667500000000000", uri="https://mastodon.social/users/claire/statuses/114667500000000000")
    newer.update(url="https://mastodon.social/@claire/114667500000000000", content="<p>#acme fixed it</p>")
    http_server.route(
        "/one/api/v1/timelines/tag/acme", timeline(payload("mastodon_tag_acme.json"), json.dumps([newer]).encode())
    )
    http_server.route("/three/api/v1/timelines/tag/acme", timeline())
    app = await make_app(("one",))
    await app.poll_all()
    await app.stop()
    nats_server.stop()
    nats_server.start()
    restarted = await make_app(("one",))
    outcomes = await restarted.poll_all()
    asked = http_server.requests_to("/one/api/v1/timelines/tag/acme")
    assert asked[1].query["min_id"] == "114667412345678901"
    assert len(asked) == 2  # a page shorter than the limit is the last one
    assert outcomes[0].published == 1
    assert len(await read_mentions(nats_server.url)) == 3


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind"),
    [
        (200, b'{"error": "Record not found"}', {}, "invalid_payload"),
        (200, b"[{not json", {}, "invalid_json"),
        (429, b'{"error": "Too many requests"}', {"Retry-After": "300", "X-RateLimit-Remaining": "0"}, "rate_limited"),
        (401, b'{"error": "The access token is invalid"}', {}, "unauthorized"),
    ],
)
async def test_bad_answers_are_errors_by_kind(
    make_app: Callable[..., Any],
    http_server: LoopbackServer,
    nats_server: NatsServerProcess,
    status: int,
    body: bytes,
    headers: dict[str, str],
    kind: str,
) -> None:
    """Malformed bodies, 429 (with quota and Retry-After) and 401 fail the poll with their kind and publish nothing."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    http_server.route("/one/api/v1/timelines/tag/acme", handler)
    http_server.route("/three/api/v1/timelines/tag/acme", timeline())
    app = await make_app(("one",))
    outcome = (await app.poll_all())[0]
    assert outcome.error is not None and outcome.error.kind == kind
    assert metric(app.metrics, "veille_ingest_errors_total", source="mastodon", kind=kind) == 1
    if status == 429:
        assert metric(app.metrics, "veille_ingest_quota_remaining", source="mastodon") == 0
        assert outcome.next_in >= 300
    assert await read_mentions(nats_server.url) == []


# ---------------------------------------------------------------------- streaming API

STREAM = "/three/api/v1/streaming/hashtag"
TIMELINE = "/three/api/v1/timelines/tag/acme"
CLAIRE_URI = "https://mastodon.social/users/claire/statuses/114667412345678901"


def status_with(status_id: str, content: str) -> dict[str, Any]:
    """A copy of claire's recorded status with another id, uri, url and content."""
    status: dict[str, Any] = json.loads(payload("mastodon_tag_acme.json"))[0]
    status.update(
        id=status_id,
        uri=f"https://mastodon.social/users/claire/statuses/{status_id}",
        url=f"https://mastodon.social/@claire/{status_id}",
        content=f"<p>{content}</p>",
    )
    return status


def sse(event: str, data: str) -> bytes:
    """One Server-Sent Event as Mastodon writes it."""
    return f"event: {event}\ndata: {data}\n\n".encode()


class FakeTimeline:
    """A hashtag timeline answering ``min_id`` queries from a list of statuses (so concurrent polls agree)."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = json.loads(payload("mastodon_tag_acme.json"))
        self.min_ids: list[str | None] = []

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """Statuses newer than ``min_id``, newest first."""
        min_id = request.query.get("min_id")
        self.min_ids.append(min_id)
        newer = [s for s in self.statuses if min_id is None or int(s["id"]) > int(min_id)]
        newer.sort(key=lambda s: int(s["id"]), reverse=True)
        return web.Response(body=json.dumps(newer).encode(), content_type="application/json")


class FakeStream:
    """Mastodon's hashtag stream: each connection writes its script, then drops or holds with heartbeats.

    A connection that drops waits for ``release`` first (set unless a test clears it).
    """

    def __init__(self, *scripts: tuple[list[bytes], bool]) -> None:
        self.scripts = list(scripts)
        self.connections = 0
        self.release = asyncio.Event()
        self.release.set()

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """Serve the next script (``(chunks, drop)``); past the last one, heartbeats only."""
        chunks, drop = self.scripts[self.connections] if self.connections < len(self.scripts) else ([], False)
        self.connections += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        try:
            await response.write(b":)\n")
            for chunk in chunks:
                await response.write(chunk)
            if drop:
                async with asyncio.timeout(10):
                    await self.release.wait()
                request.transport.close()  # type: ignore[union-attr]
                return response
            for _ in range(2000):  # bounded: ~100 s of heartbeats, far beyond any test
                await response.write(b":thump\n")
                await asyncio.sleep(0.05)
        except (ConnectionError, RuntimeError):
            pass  # the ingestor went away
        return response


@pytest.fixture
async def start_app(nats_server: NatsServerProcess, http_server: LoopbackServer) -> AsyncIterator[Callable[..., Any]]:
    """Start Mastodon ingestors with streaming on a loopback server; stop them at the end."""
    apps: list[IngestService] = []

    async def factory(server: str = "token: secret-token", section: str = "") -> IngestService:
        yaml_text = f"""
watches:
  - name: acme
    query: 'acme'
sources:
  mastodon:
    min_interval: 0s
    interval: 1h
    jitter: 0
{section}
    servers:
      - url: '{http_server.url}/three'
        {server}
"""
        app = create_app(
            settings_for(nats_server.url),
            config=config_from(yaml_text),
            clock=lambda: FIXED_NOW,
            stream_backoff=Backoff(base=0.05, maximum=0.2, jitter=0.0),
            max_event_bytes=4096,
        )
        apps.append(app)
        await app.start()
        return app

    yield factory
    for app in apps:
        await app.stop()


def published(app: IngestService) -> float:
    """Mentions the ingestor published so far."""
    return metric(app.metrics, "veille_ingest_mentions_published_total", source="mastodon")


async def test_streamed_statuses_are_published_once_each_and_a_polled_one_is_not_repeated(
    start_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Update events are mapped like polled statuses and published once; heartbeats and deletes are ignored."""
    fresh = status_with("114667500000000000", "#acme is down again")
    claire = json.loads(payload("mastodon_tag_acme.json"))[0]
    timeline = FakeTimeline()
    stream = FakeStream(
        (
            [
                b":thump\n",
                sse("update", json.dumps(claire)),
                sse("update", json.dumps(fresh)),
                b":thump\n",
                sse("update", json.dumps(fresh)),
                sse("delete", "114667400000000000"),
            ],
            False,
        )
    )
    http_server.route(TIMELINE, timeline.handler)
    http_server.route(STREAM, stream.handler)
    app = await start_app()

    async def done() -> bool:
        duplicates = metric(app.metrics, "veille_ingest_duplicates_total", source="mastodon")
        return published(app) == 3 and duplicates >= 2

    await wait_for(done)
    asked = http_server.requests_to(STREAM)[0]
    assert asked.headers["Authorization"] == "Bearer secret-token" and asked.query["tag"] == "acme"
    stored = await read_mentions(nats_server.url)
    ids = [msg_id for msg_id, _ in stored]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert ids.count(mention_id_for("mastodon", CLAIRE_URI)) == 1
    by_id = {msg_id: m for msg_id, m in stored}
    streamed = by_id[mention_id_for("mastodon", fresh["uri"])]
    assert streamed.id == mention_id_for("mastodon", fresh["uri"])
    assert streamed.source == "mastodon" and streamed.watch == "acme"
    assert str(streamed.url) == fresh["url"] and streamed.text == "#acme is down again"
    assert streamed.author == "claire@127.0.0.1" and streamed.author_followers == 1520
    assert streamed.published_at == datetime(2025, 6, 12, 9, 41, 12, tzinfo=UTC)
    assert stream.connections == 1


async def test_after_a_drop_the_stream_reconnects_and_backfills_from_the_streamed_min_id(
    start_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A status posted while the stream was down is fetched with ``min_id`` = the last streamed status."""
    streamed = status_with("114667500000000000", "#acme streamed")
    missed = status_with("114667600000000000", "#acme posted while disconnected")
    timeline = FakeTimeline()
    stream = FakeStream(([sse("update", json.dumps(streamed))], True))
    stream.release.clear()
    http_server.route(TIMELINE, timeline.handler)
    http_server.route(STREAM, stream.handler)
    app = await start_app()

    async def streamed_one() -> bool:
        return published(app) == 3

    await wait_for(streamed_one)
    timeline.statuses.append(missed)
    stream.release.set()

    async def done() -> bool:
        return published(app) == 4 and stream.connections >= 2

    await wait_for(done)
    assert streamed["id"] in timeline.min_ids
    assert metric(app.metrics, "veille_ingest_errors_total", source="mastodon", kind="disconnected") >= 1
    stored = await read_mentions(nats_server.url)
    ids = [msg_id for msg_id, _ in stored]
    assert len(ids) == 4 and len(set(ids)) == 4
    assert mention_id_for("mastodon", missed["uri"]) in ids


async def test_malformed_and_oversized_events_are_counted_and_skipped(
    start_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Bad JSON and a non-object are dead-lettered, a too-large event is counted, and the stream goes on."""
    fresh = status_with("114667500000000000", "#acme after the junk")
    stream = FakeStream(
        (
            [
                sse("update", "{not json"),
                sse("update", "[1, 2]"),
                sse("update", "x" * 5000),
                sse("update", json.dumps(fresh)),
            ],
            False,
        )
    )
    http_server.route(TIMELINE, FakeTimeline().handler)
    http_server.route(STREAM, stream.handler)
    app = await start_app()

    async def done() -> bool:
        return published(app) == 3

    await wait_for(done)
    rejected = "veille_ingest_entries_rejected_total"
    assert metric(app.metrics, rejected, source="mastodon", reason="invalid_json") == 1
    assert metric(app.metrics, rejected, source="mastodon", reason="wrong_type") == 1
    letters = "veille_dead_letters_total"
    assert metric(app.metrics, letters, service="ingest-mastodon", kind="malformed_item") == 2
    assert metric(app.metrics, "veille_ingest_errors_total", source="mastodon", kind="too_large") == 1
    assert stream.connections == 1
    ids = [msg_id for msg_id, _ in await read_mentions(nats_server.url)]
    assert mention_id_for("mastodon", fresh["uri"]) in ids


@pytest.mark.parametrize(
    ("server", "section"),
    [("hashtags: []", ""), ("token: secret-token", "    streaming: false")],
    ids=["no-token", "streaming-off"],
)
async def test_without_a_token_nothing_is_streamed(
    start_app: Callable[..., Any], http_server: LoopbackServer, server: str, section: str
) -> None:
    """Without a user token (or with streaming off) the timeline is polled and no stream is requested."""
    http_server.route(TIMELINE, FakeTimeline().handler)
    http_server.route(STREAM, FakeStream().handler)
    app = await start_app(server, section)

    async def done() -> bool:
        return published(app) == 2

    await wait_for(done)
    assert http_server.requests_to(TIMELINE)
    assert [r.path for r in http_server.requests if "streaming" in r.path] == []


# ---------------------------------------------------------------------- rate limits as Mastodon writes them


def mastodon_rate_headers(remaining: int, reset: datetime) -> dict[str, str]:
    """Mastodon's rate-limit headers: the reset is an ISO 8601 time with microseconds, not seconds.

    ``app/controllers/concerns/rate_limit_headers.rb`` writes ``(request_time + offset).iso8601(6)``;
    the 429 of ``config/initializers/rack_attack.rb`` (``throttled_responder``) sends the same three
    headers, ``X-RateLimit-Remaining: 0``, a ``{"error": "Too many requests"}`` body and no
    ``Retry-After`` (https://docs.joinmastodon.org/api/rate-limits/).
    """
    return {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": reset.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


async def test_a_429_without_retry_after_waits_for_the_iso_8601_reset(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Mastodon's throttled answer has only X-RateLimit-Reset (an ISO time): the server is paused until then."""
    reset = datetime.now(UTC) + timedelta(minutes=5)

    async def throttled(request: web.Request) -> web.StreamResponse:
        return web.json_response({"error": "Too many requests"}, status=429, headers=mastodon_rate_headers(0, reset))

    http_server.route("/one/api/v1/timelines/tag/acme", throttled)
    http_server.route("/three/api/v1/timelines/tag/acme", timeline())
    app = await make_app(("one",))
    outcome = (await app.poll_all())[0]
    assert outcome.error is not None and outcome.error.kind == "rate_limited"
    assert outcome.error.retry_after is not None and outcome.error.retry_after > 240
    assert outcome.next_in > 240
    assert app.source.fetcher(f"{http_server.url}/one").limiter.paused_for() > 240
    assert metric(app.metrics, "veille_ingest_quota_remaining", source="mastodon") == 0


async def test_the_last_request_of_a_window_pauses_the_server_until_the_iso_8601_reset(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A 200 with X-RateLimit-Remaining 0 publishes its statuses, then holds that server's requests until the reset."""
    reset = datetime.now(UTC) + timedelta(minutes=5)

    async def last_allowed(request: web.Request) -> web.StreamResponse:
        headers = mastodon_rate_headers(0, reset)
        return web.Response(body=payload("mastodon_tag_acme.json"), content_type="application/json", headers=headers)

    http_server.route("/one/api/v1/timelines/tag/acme", last_allowed)
    http_server.route("/three/api/v1/timelines/tag/acme", timeline())
    app = await make_app(("one",))
    outcomes = await app.poll_all()
    assert outcomes[0].published == 2
    assert app.source.fetcher(f"{http_server.url}/one").limiter.paused_for() > 240
    assert app.source.fetcher(f"{http_server.url}/three").limiter.paused_for() == 0  # other servers go on
    assert metric(app.metrics, "veille_ingest_quota_remaining", source="mastodon") == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),  # delta seconds (Reddit's X-Ratelimit-Reset, Retry-After)
        ("1749729700", 100.0),  # Unix seconds (X's x-rate-limit-reset)
        ("Thu, 12 Jun 2025 12:01:00 GMT", 60.0),  # HTTP date (Retry-After, RFC 9110 section 10.2.3)
        ("2025-06-12T12:05:00.000000Z", 300.0),  # ISO 8601 with microseconds (Mastodon, iso8601(6))
        ("2025-06-12T14:05:00+02:00", 300.0),  # ISO 8601 with an offset
        ("2025-06-12T11:00:00Z", 0.0),  # already past
        ("soon", None),
        ("nan", None),
    ],
)
def test_reset_times_are_read_in_every_form_sources_send(value: str, expected: float | None) -> None:
    """Seconds, epoch, HTTP date and ISO 8601 all give the seconds left (now = 2025-06-12 12:00 UTC)."""
    now = datetime(2025, 6, 12, 12, 0, tzinfo=UTC).timestamp()
    assert parse_reset_time(value, now=now) == expected
    assert quota_reset({"X-RateLimit-Reset": value}, now=now) == expected


# ---------------------------------------------------------------------- a streaming API on its own host


def moved_stream(streaming: LoopbackServer) -> Any:
    """The main host's answer to /api/v1/streaming/*: a 301 to the streaming host, same path and query.

    As ``Api::V1::StreamingController#index`` does when ``STREAMING_API_BASE_URL`` names another host
    (``redirect_to streaming_api_url, status: 301``). Here the host differs by its port, loopback oblige.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        location = f"{streaming.url}/api/v1/streaming/hashtag?{request.query_string}"
        raise web.HTTPMovedPermanently(location=location)

    return handler


def token_required(stream: FakeStream) -> Any:
    """The streaming server's hashtag stream: 401 without the user's bearer token, as Mastodon's streaming
    server (``streaming/index.js``, ``accountFromRequest``) answers ``{"error": "Missing access token"}``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer secret-token":
            return web.json_response({"error": "Missing access token"}, status=401)
        return await stream.handler(request)

    return handler


def instance(name: str, streaming: LoopbackServer) -> bytes:
    """A recorded instance payload whose streaming URL points at the loopback streaming server (ws://)."""
    body = json.loads(payload(name))
    ws_url = streaming.url.replace("http://", "ws://")
    if "configuration" in body and "urls" in body["configuration"]:
        body["configuration"]["urls"]["streaming"] = ws_url
    else:
        body["urls"]["streaming_api"] = ws_url
    return json.dumps(body).encode()


@pytest.fixture
async def streaming_server() -> AsyncIterator[LoopbackServer]:
    """A second loopback server: the Mastodon instance's separate streaming host."""
    server = LoopbackServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize("version", ["v2", "v1"])
async def test_the_stream_is_read_from_the_streaming_host_the_instance_declares_with_the_token(
    start_app: Callable[..., Any],
    http_server: LoopbackServer,
    streaming_server: LoopbackServer,
    nats_server: NatsServerProcess,
    version: str,
) -> None:
    """/api/v2/instance configuration.urls.streaming (or v1 urls.streaming_api on Mastodon 3) names the host."""
    fresh = status_with("114667500000000000", "#acme streamed from the streaming host")
    stream = FakeStream(([sse("update", json.dumps(fresh))], False))
    http_server.route(TIMELINE, FakeTimeline().handler)
    http_server.route(STREAM, moved_stream(streaming_server))
    if version == "v2":
        body = instance("mastodon_instance_v2.json", streaming_server)
        http_server.route("/three/api/v2/instance", _json(body))
    else:  # Mastodon 3.x has no /api/v2/instance: the catch-all route answers 404
        http_server.route("/three/api/v1/instance", _json(instance("mastodon_instance_v1.json", streaming_server)))
    streaming_server.route("/api/v1/streaming/hashtag", token_required(stream))
    app = await start_app()

    async def done() -> bool:
        return published(app) == 3

    await wait_for(done)
    [asked] = streaming_server.requests_to("/api/v1/streaming/hashtag")
    assert asked.headers["Authorization"] == "Bearer secret-token" and asked.query["tag"] == "acme"
    assert http_server.requests_to(STREAM) == []  # straight to the streaming host, no redirect
    assert mention_id_for("mastodon", fresh["uri"]) in [i for i, _ in await read_mentions(nats_server.url)]


async def test_a_redirect_the_instance_did_not_announce_is_not_followed_with_the_token(
    start_app: Callable[..., Any], http_server: LoopbackServer, streaming_server: LoopbackServer
) -> None:
    """No instance answer and a 301: the token never leaves for the other host; the failure is counted by kind."""
    stream = FakeStream()
    http_server.route(TIMELINE, FakeTimeline().handler)
    http_server.route(STREAM, moved_stream(streaming_server))
    streaming_server.route("/api/v1/streaming/hashtag", token_required(stream))
    app = await start_app()

    async def refused() -> bool:
        return metric(app.metrics, "veille_ingest_errors_total", source="mastodon", kind="redirected") >= 1

    await wait_for(refused)
    assert streaming_server.requests == []


def _json(body: bytes) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    return handler
