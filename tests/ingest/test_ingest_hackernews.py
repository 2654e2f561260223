"""The Hacker News ingestor against a loopback Algolia server and a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from ingest_helpers import FIXED_NOW, LoopbackServer, config_from, metric, payload, read_mentions, settings_for
from structlog.testing import capture_logs

from services.ingest_hackernews.app import create_app
from veille.ingest.runner import IngestService
from veille.models import mention_id_for
from veille.natsserver import NatsServerProcess

pytestmark = pytest.mark.integration

PATH = "/api/v1/search_by_date"


@pytest.fixture
async def make_app(nats_server: NatsServerProcess, http_server: LoopbackServer) -> AsyncIterator[Callable[..., Any]]:
    """Build connected HN ingestors pointed at the loopback server; stop them at the end."""
    apps: list[IngestService] = []

    async def factory(query: str = "acme", extra: str = "") -> IngestService:
        yaml_text = f"""
watches:
  - name: acme
    query: '{query}'
sources:
  hackernews:
    base_url: '{http_server.url}/api/v1'
    min_interval: 0s
    hits_per_page: 2
{extra}
"""
        app = create_app(settings_for(nats_server.url), config=config_from(yaml_text), clock=lambda: FIXED_NOW)
        apps.append(app)
        await app.connect()
        return app

    yield factory
    for app in apps:
        await app.stop()


def algolia(pages: dict[str, bytes]) -> Any:
    """A search_by_date handler serving a recorded page per ``page`` parameter (or per cursor)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        key = request.query.get("numericFilters", "") + "|" + request.query.get("page", "0")
        body = pages.get(key) or pages.get(request.query.get("page", "0"))
        if body is None:
            return web.json_response({"hits": [], "nbHits": 0, "nbPages": 0, "page": 0, "hitsPerPage": 2})
        return web.Response(body=body, content_type="application/json")

    return handler


async def test_stories_and_comments_are_paged_mapped_and_rechecked(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Both pages are read; stories and comments land once with permalink, author, engagement; fuzzy hits dropped."""
    http_server.route(PATH, algolia({"0": payload("hn_page0.json"), "1": payload("hn_page1.json")}))
    app = await make_app()
    [outcome] = await app.poll_all()
    assert (outcome.published, outcome.rejected) == (3, 1)
    first = http_server.requests_to(PATH)[0]
    assert first.query["tags"] == "(story,comment)"
    assert first.query["query"] == "acme" and first.query["optionalWords"] == "acme"
    assert [r.query["page"] for r in http_server.requests_to(PATH)] == ["0", "1"]

    stored = {msg_id: m for msg_id, m in await read_mentions(nats_server.url)}
    story = stored[mention_id_for("hackernews", "44257012")]
    assert str(story.url) == "https://news.ycombinator.com/item?id=44257012"
    assert story.title == "Acme Corp outage takes down half the internet"
    assert story.author == "jdoe"
    assert story.engagement.score == 312 and story.engagement.replies == 57
    assert story.published_at == datetime(2025, 6, 12, 9, 0, tzinfo=UTC)
    assert "https://status.acme.example/incidents/42" in story.text
    assert story.watch == "acme" and story.source == "hackernews"
    comment = stored[mention_id_for("hackernews", "44256800")]
    assert comment.title is None
    assert comment.text == 'We moved off Acme last year. Their support was "best effort" at best.\nNever again.'
    assert mention_id_for("hackernews", "44240000") not in stored  # "Acmes" is not the word "acme"
    assert metric(app.metrics, "veille_ingest_entries_rejected_total", source="hackernews", reason="not_matching") == 1
    assert metric(app.metrics, "veille_ingest_lag_seconds", source="hackernews", target="acme") == 3 * 3600


async def test_the_cursor_on_created_at_i_survives_a_restart(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """After a restart the next search asks from the newest created_at_i and skips hits already seen at that second."""
    http_server.route(
        PATH,
        algolia(
            {
                "0": payload("hn_page0.json"),
                "1": payload("hn_page1.json"),
                "created_at_i>=1749718800|0": payload("hn_newer.json"),
            }
        ),
    )
    app = await make_app()
    await app.poll_all()
    await app.stop()
    nats_server.stop()
    nats_server.start()
    restarted = await make_app()
    [outcome] = await restarted.poll_all()
    assert http_server.requests_to(PATH)[-1].query["numericFilters"] == "created_at_i>=1749718800"
    assert (outcome.published, outcome.duplicates) == (1, 0)
    stored = await read_mentions(nats_server.url)
    assert len(stored) == 4 and len({i for i, _ in stored}) == 4
    assert stored[-1][1].author == "sre_anna"


@pytest.mark.parametrize(
    ("status", "headers", "body", "kind"),
    [
        (429, {"Retry-After": "90"}, b"Too Many Requests", "rate_limited"),
        (503, {"Retry-After": "45"}, b"", "unavailable"),
        (502, {}, b"<html>bad gateway</html>", "http_5xx"),
        (200, {}, b'{"hits": [', "invalid_json"),
        (200, {}, b'{"message": "oops"}', "invalid_payload"),
    ],
)
async def test_failures_publish_nothing_and_are_counted_by_kind(
    make_app: Callable[..., Any],
    http_server: LoopbackServer,
    nats_server: NatsServerProcess,
    status: int,
    headers: dict[str, str],
    body: bytes,
    kind: str,
) -> None:
    """429/503 honour Retry-After, 5xx and malformed bodies fail the poll with a clear kind, a log line and a metric."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers)

    http_server.route(PATH, handler)
    app = await make_app()
    with capture_logs() as logs:
        [outcome] = await app.poll_all()
    assert outcome.error is not None and outcome.error.kind == kind
    if "Retry-After" in headers:
        assert outcome.next_in >= float(headers["Retry-After"])
    assert any(e["event"] == "ingest.fetch_failed" and e["kind"] == kind for e in logs)
    assert metric(app.metrics, "veille_ingest_errors_total", source="hackernews", kind=kind) == 1
    assert await read_mentions(nats_server.url) == []


async def test_a_failing_second_page_publishes_nothing_and_keeps_the_cursor(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A 500 on page 2 fails the whole poll, so the next poll starts again from the same cursor and misses nothing."""
    fail = [True]

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("page") == "1" and fail[0]:
            fail[0] = False
            return web.Response(status=500)
        name = "hn_page1.json" if request.query.get("page") == "1" else "hn_page0.json"
        return web.Response(body=payload(name), content_type="application/json")

    http_server.route(PATH, handler)
    app = await make_app()
    first = (await app.poll_all())[0]
    assert first.outcome == "error" and await read_mentions(nats_server.url) == []
    second = (await app.poll_all())[0]
    assert second.published == 3
    assert all("numericFilters" not in r.query for r in http_server.requests_to(PATH))


async def test_a_poll_stopped_at_max_pages_counts_what_it_left(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Algolia says how many hits matched (nbHits, nbPages): a poll capped at max_pages counts the rest as skipped
    and shows the condition in veille_source_backlog_pending until a poll reaches the cursor."""
    http_server.route("/api/v1/search_by_date", algolia({"0": payload("hn_page0.json")}))
    app = await make_app(extra="    max_pages: 1")
    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok"
    m = app.metrics
    assert metric(m, "veille_source_backlog_truncated_total", source="hackernews", target="acme") == 1
    assert metric(m, "veille_source_backlog_skipped_total", source="hackernews") == 2  # nbHits 4, 2 read
    assert metric(m, "veille_source_backlog_pending", source="hackernews", target="acme") == 1
