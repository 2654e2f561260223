"""One malformed item of a page, for every source, on real processes: the rest is published, it is dead-lettered.

Each test serves a recorded page (in the source's exact format, from a loopback server) with one
item broken as the outside world breaks them (a numeric title, an object as content, a far-future
``time_us`` ...), runs the real ingestor against a real nats-server, and checks that the other
items are in the mentions stream, the malformed one is in the dead-letter stream with its raw
payload and reason, and the cursor moved past it (the next poll asks from after it and does not
dead-letter or publish it again).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
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
from nats.js import JetStreamContext
from websockets.asyncio.server import ServerConnection, serve

from services.ingest_bluesky.app import create_app as create_bluesky
from services.ingest_gdelt.app import create_app as create_gdelt
from services.ingest_hackernews.app import create_app as create_hackernews
from services.ingest_mastodon.app import create_app as create_mastodon
from services.ingest_reddit.app import create_app as create_reddit
from services.ingest_x.app import create_app as create_x
from tests.helpers.deadletters import dead_letters
from veille.ingest.backoff import Backoff
from veille.ingest.runner import IngestService
from veille.models import DeadLettered
from veille.natsserver import NatsServerProcess, free_port
from veille_cli.dlq_cmd import list_dead_letters, replay_dead_letters

pytestmark = pytest.mark.integration

WATCH = """
watches:
  - name: acme
    query: '{query}'
"""


@pytest.fixture
async def make_app(nats_server: NatsServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """Build ingestors from a ``create_app`` and a sources section; connect (or start) them; stop them at the end."""
    apps: list[IngestService] = []

    async def factory(
        create: Callable[..., IngestService], sources: str, *, query: str = "acme", start: bool = False, **kw: Any
    ) -> IngestService:
        config = config_from(WATCH.format(query=query) + sources)
        app = create(settings_for(nats_server.url), config=config, clock=lambda: FIXED_NOW, **kw)
        apps.append(app)
        await (app.start() if start else app.connect())
        return app

    yield factory
    for app in apps:
        await app.stop()


def dead_lettered(app: IngestService) -> float:
    """Malformed items the ingestor sent to the dead-letter stream so far."""
    return metric(app.metrics, "veille_dead_letters_total", service=app.name, kind="malformed_item")


async def the_letter(js: JetStreamContext, app: IngestService, *, expected: int = 1) -> list[DeadLettered]:
    """The dead letters in the stream, checked to be the ingestor's malformed items."""
    letters = await dead_letters(js, expected, timeout=5)
    assert len(letters) == expected
    for letter in letters:
        assert letter.service == app.name and letter.error_kind == "malformed_item"
        assert letter.subject == f"veille.mentions.ingested.{app.source.name}"
    return letters


def raw(letter: DeadLettered) -> Any:
    """The raw item a dead letter kept, decoded from JSON."""
    return json.loads(base64.b64decode(letter.payload))


def json_handler(bodies: Callable[[web.Request], Any]) -> Any:
    """A handler answering ``bodies(request)`` as JSON."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=json.dumps(bodies(request)).encode(), content_type="application/json")

    return handler


async def test_hacker_news_a_hit_with_a_numeric_title(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """A hit whose title is 5 is dead-lettered; the other hits are published; the next poll skips it; no replay."""
    page = json.loads(payload("hn_page0.json"))
    bad = {**page["hits"][0], "title": 5, "objectID": "44257999", "created_at_i": 1749719999}
    page["hits"].insert(0, bad)
    page["nbPages"] = 1
    http_server.route("/api/v1/search_by_date", json_handler(lambda request: page))
    section = f"sources:\n  hackernews:\n    base_url: '{http_server.url}/api/v1'\n    min_interval: 0s\n"
    app = await make_app(create_hackernews, section)

    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and outcome.published == 2
    [letter] = await the_letter(js, app)
    assert raw(letter)["objectID"] == "44257999" and raw(letter)["title"] == 5
    assert "'title' is a number, expected a string" in letter.reason
    assert metric(app.metrics, "veille_ingest_entries_rejected_total", source="hackernews", reason="wrong_type") == 1

    [again] = await app.poll_all()
    assert http_server.requests_to("/api/v1/search_by_date")[-1].query["numericFilters"] == "created_at_i>=1749719999"
    assert again.outcome == "ok" and again.published == 0 and dead_lettered(app) == 1
    assert len(await read_mentions(nats_server.url)) == 2

    # `veille dlq replay` refuses it (it is a raw item, not a mention) and keeps it.
    entries = await list_dead_letters(js, kind="malformed_item")
    [outcome] = await replay_dead_letters(js, entries)
    assert not outcome.replayed and "cannot be replayed" in outcome.detail
    assert [e.seq for e in await list_dead_letters(js, kind="malformed_item")] == [entries[0].seq]
    assert len(await read_mentions(nats_server.url)) == 2


async def test_mastodon_timeline_a_status_whose_content_is_an_object(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """A status with an object as content is dead-lettered; the others are published; min_id moves past it."""
    statuses: list[dict[str, Any]] = json.loads(payload("mastodon_tag_acme.json"))
    bad = {**statuses[0], "id": "114667999999999999", "content": {"html": "<p>#acme</p>"}}
    bad["uri"] = "https://mastodon.social/users/claire/statuses/114667999999999999"
    statuses.insert(0, bad)

    def newer(request: web.Request) -> list[dict[str, Any]]:
        min_id = request.query.get("min_id")
        return [s for s in statuses if min_id is None or int(s["id"]) > int(min_id)]

    http_server.route("/one/api/v1/timelines/tag/acme", json_handler(newer))
    section = f"sources:\n  mastodon:\n    min_interval: 0s\n    servers:\n      - url: '{http_server.url}/one'\n"
    app = await make_app(create_mastodon, section)

    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and outcome.published == 2
    [letter] = await the_letter(js, app)
    assert raw(letter)["content"] == {"html": "<p>#acme</p>"}
    assert "'content' is an object, expected a string" in letter.reason

    [again] = await app.poll_all()
    assert http_server.requests_to("/one/api/v1/timelines/tag/acme")[-1].query["min_id"] == "114667999999999999"
    assert again.outcome == "ok" and dead_lettered(app) == 1
    assert len(await read_mentions(nats_server.url)) == 2


async def test_mastodon_stream_an_update_whose_content_is_an_object(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """A streamed status with an object as content is dead-lettered; the next one is published; min_id passes it."""
    recorded: dict[str, Any] = json.loads(payload("mastodon_tag_acme.json"))[0]
    good = {**recorded, "id": "114667800000000000", "uri": recorded["uri"] + "0", "content": "<p>#acme later</p>"}
    bad = {**recorded, "id": "114667900000000000", "uri": recorded["uri"] + "1", "content": {"oops": True}}
    events = [("update", good), ("update", bad)]

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, status in events:
            await response.write(f"event: {name}\ndata: {json.dumps(status)}\n\n".encode())
        try:
            for _ in range(2000):  # heartbeats until the ingestor goes away (bounded)
                await response.write(b":thump\n")
                await asyncio.sleep(0.05)
        except (ConnectionError, RuntimeError):
            pass
        return response

    http_server.route("/three/api/v1/timelines/tag/acme", json_handler(lambda request: []))
    http_server.route("/three/api/v1/streaming/hashtag", stream)
    section = f"""sources:
  mastodon:
    min_interval: 0s
    interval: 1h
    jitter: 0
    servers:
      - url: '{http_server.url}/three'
        token: secret-token
"""
    app = await make_app(
        create_mastodon, section, start=True, stream_backoff=Backoff(base=0.05, maximum=0.2, jitter=0.0)
    )

    async def handled() -> bool:
        return dead_lettered(app) == 1 and len(await read_mentions(nats_server.url)) == 1

    await wait_for(handled)
    [letter] = await the_letter(js, app)
    assert raw(letter)["content"] == {"oops": True} and "'content'" in letter.reason
    [target] = app.source.targets()
    cursor = await app.cursors.load(target.key)
    assert cursor["min_id"]["acme"] == "114667900000000000"


class Jetstream:
    """A loopback Jetstream serving recorded events with some broken in between."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.port = 0
        self._server: Any = None

    async def handler(self, connection: ServerConnection) -> None:
        """Send every event, then hold the connection."""
        for event in self.events:
            await connection.send(event)
        await connection.wait_closed()

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await serve(self.handler, "127.0.0.1", 0)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """Stop listening."""
        self._server.close()
        await self._server.wait_closed()


async def test_bluesky_jetstream_a_far_future_time_us_and_a_numeric_text(
    make_app: Callable[..., Any], nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """Events with a far-future time_us or a numeric text are dead-lettered; others publish; the cursor stays sane."""
    recorded = [json.loads(line) for line in payload("jetstream_events.jsonl").decode().splitlines() if line.strip()]
    first = recorded[0]
    far_future = {**first, "time_us": 10**25, "commit": {**first["commit"], "rkey": "farfuture"}}
    numeric = json.loads(json.dumps(first))
    numeric["time_us"] = first["time_us"] + 1
    numeric["commit"]["rkey"] = "numeric"
    numeric["commit"]["record"]["text"] = 12345
    last = json.loads(json.dumps(first))
    last["time_us"] = first["time_us"] + 2
    last["commit"]["rkey"] = "afterthebadones"
    events = [json.dumps(e) for e in (first, far_future, numeric, last)]
    server = Jetstream(events)
    await server.start()
    try:
        section = f"""sources:
  bluesky:
    jetstream_url: 'ws://127.0.0.1:{server.port}/subscribe'
    rewind: 5s
    timeout: 2s
"""
        app = await make_app(create_bluesky, section, query='"Acme Corp"', start=True, flush_interval=0.05)

        async def handled() -> bool:
            return dead_lettered(app) == 2 and len(await read_mentions(nats_server.url)) == 2

        await wait_for(handled)
        cursor = await app.cursors.load(app._streams[0].target.key)
        await app.stop()
    finally:
        await server.stop()
    letters = await the_letter(js, app, expected=2)
    reasons = {raw(letter)["commit"]["rkey"]: letter.reason for letter in letters}
    assert "time_us" in reasons["farfuture"] and "'text' is a number" in reasons["numeric"]
    assert cursor["time_us"] == first["time_us"] + 2


async def test_bluesky_search_a_post_whose_text_is_an_object(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """A searchPosts post with an object as text is dead-lettered once; the good post is published once."""
    page = json.loads(payload("bsky_search_page1.json"))
    bad = json.loads(json.dumps(page["posts"][0]))
    bad["uri"] = bad["uri"].replace("3lrhzjwzsxk2x", "3lrhzjwzbad2x")
    bad["record"]["text"] = {"$type": "blob"}
    page["posts"] = [page["posts"][0], bad]
    page.pop("cursor")

    async def session(request: web.Request) -> web.StreamResponse:
        return web.json_response({"did": "did:plc:me", "accessJwt": "jwt", "refreshJwt": "r"})

    http_server.route("/xrpc/com.atproto.server.createSession", session)
    http_server.route("/xrpc/app.bsky.feed.searchPosts", json_handler(lambda request: page))
    section = f"""sources:
  bluesky:
    jetstream_url: 'ws://127.0.0.1:{free_port()}/subscribe'
    api_url: '{http_server.url}/xrpc'
    handle: me.bsky.social
    app_password: abcd-efgh-ijkl-mnop
    min_interval: 0s
"""
    app = await make_app(create_bluesky, section, query='"Acme Corp"')
    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and outcome.published == 1
    [letter] = await the_letter(js, app)
    assert raw(letter)["record"]["text"] == {"$type": "blob"} and "'text' is an object" in letter.reason

    [again] = await app.poll_all()
    last = http_server.requests_to("/xrpc/app.bsky.feed.searchPosts")[-1]
    assert last.query["since"] == "2025-06-12T08:58:00.100000Z"  # sortAt less the 2-minute overlap
    assert again.outcome == "ok" and again.published == 0 and dead_lettered(app) == 1
    assert len(await read_mentions(nats_server.url)) == 1


async def test_gdelt_an_article_with_a_numeric_title(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """An article whose title is a number is dead-lettered once; the others are published once."""
    body = json.loads(payload("gdelt_artlist.json"))
    bad = {**body["articles"][0], "url": "https://www.lemonde.fr/acme-corp-numeric.html", "title": 404}
    body["articles"].insert(1, bad)
    path = "/api/v2/doc/doc"
    http_server.route(path, json_handler(lambda request: body))
    section = f"sources:\n  gdelt:\n    base_url: '{http_server.url}{path}'\n"
    app = await make_app(create_gdelt, section, query='"Acme Corp" OR acme.com')

    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and outcome.published == 2
    letters = await the_letter(js, app, expected=2)  # the recorded page already has an article without a URL
    [letter] = [letter for letter in letters if raw(letter).get("title") == 404]
    assert "'title' is a number" in letter.reason

    [again] = await app.poll_all()
    assert http_server.requests_to(path)[-1].query["startdatetime"] == "20250612080000"
    assert again.outcome == "ok" and again.published == 0 and dead_lettered(app) == 2
    assert len(await read_mentions(nats_server.url)) == 2


async def test_reddit_a_post_whose_title_is_an_object(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """The newest post, with an object as title, is dead-lettered; the others publish; the next poll skips it."""
    page = json.loads(payload("reddit_search_page1.json"))
    bad = json.loads(json.dumps(page["data"]["children"][0]))
    bad["data"].update(name="t3_zzzbad", title={"text": "Acme"}, created_utc=1749719999.0)
    page["data"]["children"].insert(0, bad)
    page["data"]["after"] = None

    async def token(request: web.Request) -> web.StreamResponse:
        return web.json_response({"access_token": "tok", "token_type": "bearer", "expires_in": 86400})

    http_server.route("/api/v1/access_token", token)
    http_server.route("/oauth/search", json_handler(lambda request: page))
    section = f"""sources:
  reddit:
    base_url: '{http_server.url}/oauth'
    token_url: '{http_server.url}/api/v1/access_token'
    user_agent: 'linux:veille-test:0.1 (by /u/veille)'
    min_interval: 0s
    client_id: my-app
    client_secret: s3cret
"""
    app = await make_app(create_reddit, section, query='"Acme Corp"')

    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and outcome.published >= 1
    published = outcome.published
    [letter] = await the_letter(js, app)
    assert raw(letter)["data"]["name"] == "t3_zzzbad" and "'title' is an object" in letter.reason
    [target] = app.source.targets()
    assert (await app.cursors.load(target.key))["created_utc"] == 1749719999.0

    [again] = await app.poll_all()
    assert again.outcome == "ok" and again.published == 0 and dead_lettered(app) == 1
    assert len(await read_mentions(nats_server.url)) == published


async def test_x_a_tweet_whose_text_is_an_object(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """A tweet with an object as text is dead-lettered; the others publish; the next poll asks since newest_id."""
    page = json.loads(payload("x_recent_page1.json"))
    bad = {**page["data"][0], "id": "1933199999999999999", "text": {"full": "Acme Corp"}}
    page["data"].insert(0, bad)
    page["meta"] = {"newest_id": "1933199999999999999", "oldest_id": page["data"][-1]["id"], "result_count": 3}

    def answer(request: web.Request) -> Any:
        return {"meta": {"result_count": 0}} if "since_id" in request.query else page

    http_server.route("/2/tweets/search/recent", json_handler(answer))
    section = f"sources:\n  x:\n    base_url: '{http_server.url}/2'\n    bearer_token: AAAA\n    min_interval: 0s\n"
    app = await make_app(create_x, section, query='"Acme Corp"')

    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and outcome.published >= 1
    [letter] = await the_letter(js, app)
    assert raw(letter)["text"] == {"full": "Acme Corp"} and "'text' is an object" in letter.reason

    [again] = await app.poll_all()
    assert http_server.requests_to("/2/tweets/search/recent")[-1].query["since_id"] == "1933199999999999999"
    assert again.outcome == "ok" and dead_lettered(app) == 1
