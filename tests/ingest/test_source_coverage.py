"""Every watch reaches every source it allows, whatever its script; one that cannot is said at start."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from ingest_helpers import FIXED_NOW, LoopbackServer, config_from, metric, read_mentions, settings_for

from services.ingest_mastodon.app import create_app as create_mastodon
from services.ingest_mastodon.logic import hashtags_for
from veille.ingest.runner import IngestService
from veille.natsserver import NatsServerProcess

pytestmark = pytest.mark.integration


def status(status_id: str, content: str, tag: str) -> dict[str, Any]:
    """A Status entity as Mastodon's hashtag timeline returns it (docs.joinmastodon.org/entities/Status/)."""
    return {
        "id": status_id,
        "created_at": "2025-06-12T09:41:12.000Z",
        "in_reply_to_id": None,
        "sensitive": False,
        "spoiler_text": "",
        "visibility": "public",
        "language": "ru",
        "uri": f"https://mastodon.example/users/anna/statuses/{status_id}",
        "url": f"https://mastodon.example/@anna/{status_id}",
        "replies_count": 0,
        "reblogs_count": 2,
        "favourites_count": 5,
        "content": f'<p>{content} <a href="https://mastodon.example/tags/{tag}" class="mention hashtag" '
        f'rel="tag">#<span>{tag}</span></a></p>',
        "reblog": None,
        "account": {"id": "1", "username": "anna", "acct": "anna", "followers_count": 42},
        "media_attachments": [],
        "mentions": [],
        "tags": [{"name": tag, "url": f"https://mastodon.example/tags/{tag}"}],
        "emojis": [],
        "card": None,
        "poll": None,
    }


@pytest.fixture
async def apps() -> AsyncIterator[list[IngestService]]:
    """Services a test built, stopped at the end."""
    built: list[IngestService] = []
    yield built
    for app in built:
        await app.stop()


def test_hashtags_keep_letters_of_every_script() -> None:
    """Cyrillic, Greek, CJK and Devanagari terms become hashtags as Mastodon's Tag::HASHTAG_NAME_RE reads them."""
    assert hashtags_for(["Газпром", "Ελληνικά νέα", "東京電力", "हिन्दी", "ＡＣＭＥ", "2024", "acme.com"]) == [
        "газпром",
        "ελληνικάνέα",
        "東京電力",
        "हिन्दी",
        "acme",
        "acmecom",
    ]


async def test_a_cyrillic_watch_follows_its_hashtag_and_a_watch_without_one_is_reported(
    nats_server: NatsServerProcess, http_server: LoopbackServer, apps: list[IngestService]
) -> None:
    """'Газпром' polls /api/v1/timelines/tag/газпром (percent-encoded UTF-8) and publishes what it finds;
    a watch of digits only maps to no hashtag: veille_source_watch_untargeted says so from the start."""
    tag = "газпром"
    body = json.dumps([status("114667412345678901", "Газпром снова в новостях", tag)], ensure_ascii=False)

    async def timeline(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body.encode(), content_type="application/json")

    http_server.route(f"/one/api/v1/timelines/tag/{tag}", timeline)
    config = config_from(f"""
watches:
  - name: gazprom
    query: 'Газпром'
  - name: year
    query: '2024'
sources:
  mastodon:
    min_interval: 0s
    servers:
      - url: '{http_server.url}/one'
""")
    app = create_mastodon(settings_for(nats_server.url), config=config, clock=lambda: FIXED_NOW)
    apps.append(app)
    m = app.metrics
    assert metric(m, "veille_source_watch_untargeted", source="mastodon", watch="year") == 1
    assert metric(m, "veille_source_watch_untargeted", source="mastodon", watch="gazprom") == 0
    await app.connect()
    outcomes = await app.poll_all()
    assert [o.target.watch for o in outcomes] == ["gazprom"]
    assert outcomes[0].published == 1
    [request] = http_server.requests_to(f"/one/api/v1/timelines/tag/{tag}")
    assert "%D0%B3%D0%B0%D0%B7" in str(request.rel_url.raw_path)  # sent percent-encoded, as a URL must be
    [(_, mention)] = await read_mentions(nats_server.url)
    assert mention.watch == "gazprom" and "Газпром" in mention.text
