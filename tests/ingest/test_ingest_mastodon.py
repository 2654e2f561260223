"""The Mastodon ingestor against loopback Mastodon servers and a real nats-server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from ingest_helpers import FIXED_NOW, LoopbackServer, config_from, metric, payload, read_mentions, settings_for

from services.ingest_mastodon.app import create_app
from services.ingest_mastodon.logic import hashtags_for
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
