"""The GDELT ingestor against a loopback DOC 2.0 server and a real nats-server."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from ingest_helpers import FIXED_NOW, LoopbackServer, config_from, metric, payload, read_mentions, settings_for
from structlog.testing import capture_logs

from services.ingest_gdelt.app import create_app
from tests.helpers.deadletters import dead_letters
from veille.config import ConfigError
from veille.ingest.http import RateLimiter
from veille.ingest.runner import IngestService
from veille.models import mention_id_for
from veille.natsserver import NatsServerProcess

pytestmark = pytest.mark.integration

PATH = "/api/v2/doc/doc"


@pytest.fixture
async def make_app(nats_server: NatsServerProcess, http_server: LoopbackServer) -> AsyncIterator[Callable[..., Any]]:
    """Build connected GDELT ingestors pointed at the loopback server; stop them at the end."""
    apps: list[IngestService] = []

    async def factory() -> IngestService:
        yaml_text = f"""
watches:
  - name: acme
    query: '"Acme Corp" OR acme.com'
    languages: [en, fr]
sources:
  gdelt:
    base_url: '{http_server.url}{PATH}'
"""
        app = create_app(settings_for(nats_server.url), config=config_from(yaml_text), clock=lambda: FIXED_NOW)
        apps.append(app)
        await app.connect()
        return app

    yield factory
    for app in apps:
        await app.stop()


def serve(*bodies: bytes, status: int = 200, content_type: str = "application/json") -> Any:
    """A handler serving the bodies in turn (the last one repeats)."""
    queue = list(bodies)

    async def handler(request: web.Request) -> web.StreamResponse:
        body = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.Response(status=status, body=body, content_type=content_type)

    return handler


async def test_articles_are_published_once_with_language_site_and_date(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """The article list maps to mentions (language names to ISO codes); unrelated and link-less articles are dropped."""
    http_server.route(PATH, serve(payload("gdelt_artlist.json")))
    app = await make_app()
    [outcome] = await app.poll_all()
    request = http_server.requests_to(PATH)[0]
    assert request.query["query"] == '("Acme Corp" OR "acme.com") (sourcelang:english OR sourcelang:french)'
    assert request.query["mode"] == "artlist" and request.query["format"] == "json"
    assert request.query["sort"] == "datedesc"
    assert (request.query["startdatetime"], request.query["enddatetime"]) == ("20250612110000", "20250612120000")
    assert (outcome.published, outcome.rejected) == (2, 2)
    stored = {msg_id: m for msg_id, m in await read_mentions(nats_server.url)}
    url = "https://www.lemonde.fr/economie/article/2025/06/12/acme-corp-la-panne-geante-qui-a-paralyse-les-services_6612345_3234.html"
    monde = stored[mention_id_for("gdelt", url)]
    assert monde.lang == "fr" and monde.site == "lemonde.fr"
    assert monde.published_at == datetime(2025, 6, 12, 8, 15, tzinfo=UTC)
    assert monde.title == "Acme Corp : la panne géante qui a paralysé les services"
    m = app.metrics
    assert metric(m, "veille_ingest_entries_rejected_total", source="gdelt", reason="no_link") == 1
    assert metric(m, "veille_ingest_entries_rejected_total", source="gdelt", reason="not_matching") == 1


async def test_the_next_poll_starts_from_the_last_seen_date_and_skips_seen_articles_after_a_restart(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """The cursor (last seendate and seen ids) survives a restart: the overlap window repeats nothing."""
    http_server.route(PATH, serve(payload("gdelt_artlist.json"), payload("gdelt_artlist_next.json")))
    app = await make_app()
    await app.poll_all()
    await app.stop()
    nats_server.stop()
    nats_server.start()
    restarted = await make_app()
    [outcome] = await restarted.poll_all()
    assert http_server.requests_to(PATH)[-1].query["startdatetime"] == "20250612080000"
    assert (outcome.published, outcome.duplicates) == (1, 0)
    stored = await read_mentions(nats_server.url)
    assert [m.site for _, m in stored][-1] == "bbc.co.uk" and len(stored) == 3


async def test_an_empty_answer_and_a_refused_query_are_told_apart(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """GDELT's '{}' means no articles (ok); its plain-text refusal is a query_rejected error with the message."""
    http_server.route(PATH, serve(b"{}"))
    app = await make_app()
    assert (await app.poll_all())[0].outcome == "ok"
    app.source.fetcher.limiter.reset()  # type: ignore[attr-defined]  # skip the 5 s spacing in this test
    http_server.route(PATH, serve(b"The specified phrase is too short.\n", content_type="text/html"))
    [outcome] = await app.poll_all()
    assert outcome.error is not None and outcome.error.kind == "query_rejected"
    assert "phrase is too short" in outcome.error.message
    assert metric(app.metrics, "veille_ingest_errors_total", source="gdelt", kind="query_rejected") == 1


async def test_a_429_pauses_every_request_of_the_source_for_retry_after(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """GDELT's 429 with Retry-After pauses the shared rate limiter, not only the target that got it."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(
            status=429, text="Please limit requests to one every 5 seconds", headers={"Retry-After": "60"}
        )

    http_server.route(PATH, handler)
    app = await make_app()
    [outcome] = await app.poll_all()
    assert outcome.error is not None and outcome.error.kind == "rate_limited" and outcome.next_in >= 60
    assert app.source.fetcher.limiter.paused_for() > 55  # type: ignore[attr-defined]


def test_the_config_refuses_more_than_one_request_per_five_seconds() -> None:
    """A GDELT min_interval under 5 s is a configuration error naming the field."""
    with pytest.raises(ConfigError, match=r"sources\.gdelt\.min_interval"):
        config_from("sources:\n  gdelt:\n    min_interval: 1s\n")


async def test_the_rate_limiter_spaces_requests_by_its_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Back-to-back requests wait for the rest of the minimum interval (time and sleep are faked)."""
    now = [100.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    limiter = RateLimiter(min_interval=5.0, clock=lambda: now[0])
    await limiter.acquire()
    now[0] += 1.0
    await limiter.acquire()
    await limiter.acquire()
    assert waits == [4.0, 5.0]


async def test_a_malformed_answer_is_read_leniently_and_only_the_broken_record_is_dead_lettered(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """GDELT's JSON is sometimes invalid: ``\\'`` and ``\\x`` escapes, raw control characters, unescaped quotes.

    Real answers fail ``json.loads`` with "Invalid \\escape" (alex9smith/gdelt-doc-api issues #26 and
    #28, worked around in that client by PR #47); the payload reproduces those defects in DOC 2.0's
    artlist format. The escapes and the tab are repaired; the record with a bare quote in its title
    is dead-lettered on its own; the two others are published and the cursor moves, so the watch
    does not stall on the same answer. A second poll over the same window dead-letters nothing again.
    """
    http_server.route(PATH, serve(payload("gdelt_artlist_bad_escapes.json")))
    app = await make_app()
    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and (outcome.published, outcome.rejected) == (2, 1)
    stored = {m.site: m for _, m in await read_mentions(nats_server.url)}
    assert stored["lemonde.fr"].title == "Acme Corp : l'alerte des clients après la panne"
    assert stored["reuters.com"].title == "Acme Corp restores service after x outage"
    m = app.metrics
    assert metric(m, "veille_ingest_entries_repaired_total", source="gdelt", problem="invalid_json") == 1
    assert metric(m, "veille_ingest_entries_rejected_total", source="gdelt", reason="invalid_json") == 1
    assert metric(m, "veille_dead_letters_total", service="ingest-gdelt", kind="malformed_item") == 1
    js = app.broker.connection.jetstream()
    [letter] = await dead_letters(js, 1, timeout=5)
    assert b"we were not hacked" in base64.b64decode(letter.payload)
    assert "invalid_json" in letter.reason
    app.source.fetcher.limiter.reset()  # type: ignore[attr-defined]  # skip the 5 s spacing in this test
    [again] = await app.poll_all()
    assert (again.outcome, again.published, again.duplicates, again.rejected) == ("ok", 0, 0, 0)
    assert metric(m, "veille_dead_letters_total", service="ingest-gdelt", kind="malformed_item") == 1
    assert http_server.requests_to(PATH)[-1].query["startdatetime"] == "20250612090000"  # 09:15 less the overlap


def article(n: int, seen: str) -> dict[str, str]:
    """One artlist record in DOC 2.0's format (keys as in payloads/gdelt_artlist.json)."""
    return {
        "url": f"https://news.example/acme-corp-{n}",
        "url_mobile": "",
        "title": f"Acme Corp outage, report {n}",
        "seendate": seen,
        "socialimage": "",
        "domain": "news.example",
        "language": "English",
        "sourcecountry": "United States",
    }


def doc_api(articles: list[dict[str, str]]) -> Any:
    """A DOC 2.0 artlist endpoint over ``articles``: those seen within [startdatetime, enddatetime], newest
    first, at most maxrecords — what api.gdeltproject.org answers with sort=datedesc."""

    def gdelt(seen: str) -> str:
        return seen.replace("T", "").replace("Z", "")

    async def handler(request: web.Request) -> web.StreamResponse:
        start, end = request.query["startdatetime"], request.query["enddatetime"]
        hits = sorted((a for a in articles if start <= gdelt(a["seendate"]) <= end), key=lambda a: a["seendate"])
        return web.json_response({"articles": hits[::-1][: int(request.query["maxrecords"])]})

    return handler


async def test_a_window_fuller_than_one_answer_is_read_back_through_its_gap_over_polls(
    nats_server: NatsServerProcess, http_server: LoopbackServer
) -> None:
    """GDELT answers at most maxrecords articles, newest first: the older part of a busy window is asked for
    with an earlier enddatetime (three requests a poll, the rest on the next poll), and a quarter hour holding
    more than one answer is skipped, said and counted, instead of looping."""
    slots = ["20250612T114500Z", "20250612T113000Z", "20250612T113000Z"] + ["20250612T111500Z"] * 4
    articles = [article(n, seen) for n, seen in enumerate([*slots, "20250612T110000Z"])]
    http_server.route(PATH, doc_api(articles))
    yaml_text = f"""
watches:
  - name: acme
    query: '"Acme Corp"'
sources:
  gdelt:
    base_url: '{http_server.url}{PATH}'
    max_records: 3
"""
    app = create_app(settings_for(nats_server.url), config=config_from(yaml_text), clock=lambda: FIXED_NOW)
    app.source.fetcher.limiter.min_interval = 0.0  # type: ignore[union-attr]  # GDELT's 5 s, not tested here
    await app.connect()
    try:
        with capture_logs() as logs:
            [first] = await app.poll_all()
        windows = [(r.query["startdatetime"], r.query["enddatetime"]) for r in http_server.requests_to(PATH)]
        assert windows == [
            ("20250612110000", "20250612120000"),
            ("20250612110000", "20250612113000"),
            ("20250612110000", "20250612111500"),
        ]
        assert first.published == 6  # the 11:45, both 11:30 and three of the four 11:15 articles
        assert any(e["event"] == "ingest.backlog_slot_skipped" for e in logs)
        assert metric(app.metrics, "veille_source_backlog_pending", source="gdelt", target="acme") == 1
        [second] = await app.poll_all()
        assert http_server.requests_to(PATH)[-1].query["enddatetime"] == "20250612111459"
        assert second.published == 1  # the 11:00 article, from the gap left by the first poll
        assert metric(app.metrics, "veille_source_backlog_pending", source="gdelt", target="acme") == 0
        stored = {m.url for _, m in await read_mentions(nats_server.url)}
        assert len(stored) == 7 and "https://news.example/acme-corp-7" in {str(u) for u in stored}
    finally:
        await app.stop()
