"""The RSS/Atom ingestor against loopback feed servers and a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
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
from structlog.testing import capture_logs

from services.ingest_rss.app import create_app
from veille.config import ConfigError
from veille.ingest.runner import IngestService
from veille.models import mention_id_for
from veille.natsserver import NatsServerProcess

pytestmark = pytest.mark.integration

AppFactory = Callable[..., Any]


def serve_bytes(body: bytes, *, content_type: str = "application/rss+xml", etag: str | None = None) -> Any:
    """A handler serving ``body``, answering 304 to a matching ``If-None-Match``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if etag and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        headers = {"ETag": etag} if etag else {}
        return web.Response(body=body, content_type=content_type, headers=headers)

    return handler


@pytest.fixture
async def make_app(nats_server: NatsServerProcess) -> AsyncIterator[AppFactory]:
    """Build connected RSS ingestors for a YAML config; stop them all at the end."""
    apps: list[IngestService] = []

    async def factory(yaml_text: str, *, connect: bool = True) -> IngestService:
        app = create_app(settings_for(nats_server.url), config=config_from(yaml_text), clock=lambda: FIXED_NOW)
        apps.append(app)
        if connect:
            await app.connect()
        return app

    yield factory
    for app in apps:
        await app.stop()


def feeds_yaml(*feeds: str, extra: str = "", watches: str = "") -> str:
    """A config with the given feed entries (YAML flow mappings)."""
    lines = "\n".join(f"      - {feed}" for feed in feeds)
    return f"""
watches:
  - name: acme
    query: '"Acme Corp" OR acme'
{watches}
sources:
  rss:
    interval: 1m
    jitter: 0
{extra}
    feeds:
{lines}
"""


async def test_feed_entries_land_on_the_bus_once_each_with_their_fields(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Each entry of an RSS 2.0 feed is published once, with its stable id as Nats-Msg-Id and every field mapped."""
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml")))
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/feed.xml', name: blog}}"))
    [outcome] = await app.poll_all()
    assert outcome.outcome == "ok" and outcome.published == 3
    again = await app.poll_all()
    assert again[0].published == 0

    stored = await read_mentions(nats_server.url)
    assert len(stored) == 3
    by_title = {m.title: (msg_id, m) for msg_id, m in stored}
    msg_id, first = by_title["Acme Corp : la panne de mardi expliquée"]
    assert msg_id == first.id == mention_id_for("rss", "https://blog.example.fr/2025/06/acme-panne")
    assert first.source == "rss"
    assert str(first.url) == "https://blog.example.fr/2025/06/acme-panne?utm_source=rss&utm_medium=feed"
    assert first.author == "Claire Dupont"
    assert first.lang == "fr"
    assert first.site == "blog.example.fr"
    assert first.published_at == datetime(2025, 6, 12, 7, 15, tzinfo=UTC)
    assert first.text.startswith("Le service d'Acme Corp a été indisponible pendant trois heures mardi.")
    assert "<" not in first.text and "alert(1)" not in first.text
    assert metric(app.metrics, "veille_ingest_mentions_published_total", source="rss") == 3
    assert metric(app.metrics, "veille_ingest_fetches_total", source="rss", outcome="ok") == 2
    assert metric(app.metrics, "veille_ingest_lag_seconds", source="rss", target="blog") == 4 * 3600 + 45 * 60


async def test_conditional_get_sends_the_validators_and_a_304_publishes_nothing(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """The second poll sends If-None-Match and If-Modified-Since; a 304 answer publishes nothing."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(
            body=payload("atom_blog.xml"),
            content_type="application/atom+xml",
            headers={"ETag": '"v1"', "Last-Modified": "Thu, 12 Jun 2025 08:00:00 GMT"},
        )

    http_server.route("/atom.xml", handler)
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/atom.xml', name: eng}}"))
    first = await app.poll_all()
    second = await app.poll_all()
    assert [first[0].published, second[0].outcome, second[0].published] == [2, "not_modified", 0]
    conditional = http_server.requests_to("/atom.xml")[1]
    assert conditional.headers["If-None-Match"] == '"v1"'
    assert conditional.headers["If-Modified-Since"] == "Thu, 12 Jun 2025 08:00:00 GMT"
    assert metric(app.metrics, "veille_ingest_fetches_total", source="rss", outcome="not_modified") == 1
    assert len(await read_mentions(nats_server.url)) == 2


async def test_a_restart_publishes_only_entries_it_had_not_seen(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """After the service and nats-server restart, the cursor in KV makes only the new entry be published."""
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml")))
    yaml_text = feeds_yaml(f"{{url: '{http_server.url}/feed.xml', name: blog}}")
    app = await make_app(yaml_text)
    assert (await app.poll_all())[0].published == 3
    await app.stop()
    nats_server.stop()
    nats_server.start()

    http_server.route("/feed.xml", serve_bytes(payload("rss_blog_updated.xml")))
    restarted = await make_app(yaml_text)
    [outcome] = await restarted.poll_all()
    assert (outcome.published, outcome.duplicates) == (1, 0)
    stored = await read_mentions(nats_server.url)
    assert len(stored) == 4
    assert len({msg_id for msg_id, _ in stored}) == 4
    assert stored[-1][1].title == "Acme Corp présente ses excuses"


async def test_an_atom_feed_resolves_relative_links_and_strips_html_titles(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Atom entries get links resolved against the feed URL, plain titles, xml:lang, and the updated date."""
    http_server.route("/atom.xml", serve_bytes(payload("atom_blog.xml"), content_type="application/atom+xml"))
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/atom.xml'}}"))
    await app.poll_all()
    stored = {m.title: m for _, m in await read_mentions(nats_server.url)}
    queues = stored["Why we moved off Acme queues"]
    assert str(queues.url) == f"{http_server.url}/posts/acme-queues"  # resolved against the feed's own URL
    assert queues.text == "Our Acme cluster kept falling over."
    assert queues.author == "Jane Roe"
    assert queues.lang == "en"
    assert stored["Release notes 4.2"].published_at == datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    assert metric(app.metrics, "veille_ingest_entries_repaired_total", source="rss", problem="html_stripped") == 1


async def test_google_alerts_links_are_unwrapped_highlighting_stripped_and_entries_rechecked(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A Google Alerts feed yields the real article link and plain text; a fuzzy match is dropped by the re-check."""
    http_server.route(
        "/alerts/feeds/06807031914929345698/10604166159629661594",
        serve_bytes(payload("google_alerts.xml"), content_type="application/atom+xml"),
    )
    url = f"{http_server.url}/alerts/feeds/06807031914929345698/10604166159629661594"
    yaml_text = feeds_yaml(
        f"{{url: '{url}', watch: acme-corp}}", watches="  - name: acme-corp\n    query: '\"acme corp\"'"
    )
    app = await make_app(yaml_text)
    [outcome] = await app.poll_all()
    assert outcome.published == 1 and outcome.rejected == 1
    [(_, mention)] = await read_mentions(nats_server.url)
    assert mention.source == "google_alerts"
    assert mention.watch == "acme-corp"
    assert str(mention.url) == "https://www.example-news.com/business/acme-record-quarter"
    assert mention.site == "example-news.com"
    assert mention.title == "Acme Corp announces record quarter despite outage"
    assert "<b>" not in mention.text and mention.text.startswith("The Acme Corp said on Thursday")
    assert metric(app.metrics, "veille_ingest_entries_rejected_total", source="rss", reason="not_matching") == 1


async def test_google_news_search_sends_its_parameters_and_keeps_the_publisher(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A Google News search asks with q/hl/gl/ceid, keeps the publisher from <source> and re-checks each item."""
    http_server.route("/rss/search", serve_bytes(payload("google_news.xml")))
    yaml_text = f"""
watches:
  - name: acme
    query: '"Acme Corp" AND NOT cartoon'
sources:
  rss:
    google_news_url: '{http_server.url}/rss/search'
    google_news:
      - {{watch: acme, hl: en-US, gl: US}}
"""
    app = await make_app(yaml_text)
    [outcome] = await app.poll_all()
    request = http_server.requests_to("/rss/search")[0]
    assert dict(request.query) == {"q": '"Acme Corp"', "hl": "en-US", "gl": "US", "ceid": "US:en"}
    assert (outcome.published, outcome.rejected) == (2, 1)
    stored = {m.title: m for _, m in await read_mentions(nats_server.url)}
    recall = stored["Acme Corp recalls 10,000 routers after fire reports"]
    assert recall.source == "google_news"
    assert recall.site == "Reuters"
    assert recall.watch == "acme"
    assert recall.id == mention_id_for("google_news", "CBMiXkFVX3lxTE1hUjNkZ1pLa2hHb0tZbGx2X0xFbXpVcjF6")
    assert stored["Acme Corp shares slide as recall widens"].site == "The Wall Street Journal"


async def test_google_news_items_failing_the_local_query_are_not_published(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Items the remote search returned but the watch's query rejects are counted as not_matching."""
    http_server.route("/rss/search", serve_bytes(payload("google_news.xml")))
    yaml_text = f"""
watches:
  - name: recall
    query: 'recall* AND routers'
sources:
  rss:
    google_news_url: '{http_server.url}/rss/search'
    google_news:
      - {{watch: recall, q: 'acme recall', hl: fr, gl: FR}}
"""
    app = await make_app(yaml_text)
    [outcome] = await app.poll_all()
    assert dict(http_server.requests_to("/rss/search")[0].query)["ceid"] == "FR:fr"
    assert (outcome.published, outcome.rejected) == (1, 2)
    [(_, mention)] = await read_mentions(nats_server.url)
    assert mention.title == "Acme Corp recalls 10,000 routers after fire reports"


async def test_google_news_editions_get_their_own_ceid_and_an_unknown_one_must_be_given(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Brazil's edition is BR:pt-419 (news.google.com/rss/search?...&hl=pt-BR&gl=BR&ceid=BR:pt-419), not
    'BR:pt', which Google would answer with another edition; Latin American Spanish in the US is
    US:es-419. gl/hl matching no edition is a check-config error asking for ceid, naming the field."""
    http_server.route("/rss/search", serve_bytes(payload("google_news.xml")))
    yaml_text = f"""
watches:
  - name: acme
    query: '"Acme Corp"'
sources:
  rss:
    google_news_url: '{http_server.url}/rss/search'
    google_news:
      - {{watch: acme, hl: pt-BR, gl: BR}}
      - {{watch: acme, hl: es-419, gl: US}}
"""
    app = await make_app(yaml_text)
    await app.poll_all()
    editions = sorted(r.query["ceid"] for r in http_server.requests_to("/rss/search"))
    assert editions == ["BR:pt-419", "US:es-419"]
    with pytest.raises(ConfigError) as refused:
        config_from("watches:\n  - {name: acme, query: acme}\nsources:\n  rss:\n    google_news:\n"
                    "      - {watch: acme, hl: de, gl: BR}\n")  # fmt: skip
    [problem] = refused.value.problems
    assert problem.field == "sources.rss.google_news[0]" and "set ceid" in problem.message
    config_from("watches:\n  - {name: acme, query: acme}\nsources:\n  rss:\n    google_news:\n"
                "      - {watch: acme, hl: de, gl: BR, ceid: 'BR:de'}\n")  # fmt: skip


# ---------------------------------------------------------------------------------------- bad input


async def test_a_body_that_is_not_xml_is_an_error_and_other_feeds_go_on(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """An HTML page or JSON where a feed should be gives a not_xml error, a log line, and the next feed still works."""
    http_server.route(
        "/html", serve_bytes(b"<!DOCTYPE html><html><body><p>Moved</p></body></html>", content_type="text/html")
    )
    http_server.route("/json", serve_bytes(b'{"error": "nope"}', content_type="application/json"))
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml")))
    app = await make_app(
        feeds_yaml(
            f"{{url: '{http_server.url}/html', name: html}}",
            f"{{url: '{http_server.url}/json', name: json}}",
            f"{{url: '{http_server.url}/feed.xml', name: blog}}",
        )
    )
    with capture_logs() as logs:
        outcomes = await app.poll_all()
    assert [o.outcome for o in outcomes] == ["error", "error", "ok"]
    assert [o.error.kind for o in outcomes[:2] if o.error] == ["not_xml", "not_xml"]
    failed = [entry for entry in logs if entry["event"] == "ingest.fetch_failed"]
    assert {entry["target"] for entry in failed} == {"html", "json"}
    assert all("not XML" in entry["error"] or "HTML page" in entry["error"] for entry in failed)
    assert metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="not_xml") == 2
    assert len(await read_mentions(nats_server.url)) == 3


@pytest.mark.parametrize("name", ["xml_bomb.xml", "xml_external.xml"])
async def test_entity_declarations_are_refused(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess, name: str
) -> None:
    """A billion-laughs bomb or an external entity is refused before any parser expands it."""
    http_server.route("/feed.xml", serve_bytes(payload(name)))
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/feed.xml', name: evil}}"))
    with capture_logs() as logs:
        [outcome] = await app.poll_all()
    assert outcome.error is not None and outcome.error.kind == "unsafe_xml"
    assert any(e["event"] == "ingest.fetch_failed" and e["kind"] == "unsafe_xml" for e in logs)
    assert metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="unsafe_xml") == 1
    assert await read_mentions(nats_server.url) == []


@pytest.mark.parametrize("declared", [True, False])
async def test_a_response_over_the_size_cap_is_cut_off(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess, declared: bool
) -> None:
    """A body larger than max_bytes is refused, whether its Content-Length says so or it is streamed in chunks."""
    chunk = b"<!-- " + b"x" * 4000 + b" -->\n"

    async def handler(request: web.Request) -> web.StreamResponse:
        body = payload("rss_blog.xml") + chunk * 50
        if declared:
            return web.Response(body=body, content_type="application/rss+xml")
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(50):
            await response.write(chunk)
        await response.write_eof()
        return response

    http_server.route("/big.xml", handler)
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/big.xml', name: big}}", extra="    max_bytes: 65536"))
    with capture_logs() as logs:
        [outcome] = await app.poll_all()
    assert outcome.error is not None and outcome.error.kind == "too_large"
    assert "65536-byte cap" in outcome.error.message
    assert any(e["event"] == "ingest.fetch_failed" and e["kind"] == "too_large" for e in logs)
    assert metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="too_large") == 1


@pytest.mark.parametrize("mode", ["silent", "drip"])
async def test_a_server_that_never_finishes_answering_times_out(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess, mode: str
) -> None:
    """A server that never answers, or drips bytes forever, hits the deadline; the next feed is still polled."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if mode == "silent":
            await asyncio.Event().wait()
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        await response.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
        while True:
            await response.write(b" ")
            await asyncio.sleep(0.05)

    http_server.route("/slow.xml", handler)
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml")))
    app = await make_app(
        feeds_yaml(
            f"{{url: '{http_server.url}/slow.xml', name: slow}}",
            f"{{url: '{http_server.url}/feed.xml', name: blog}}",
            extra="    timeout: 300ms",
        )
    )
    outcomes = await app.poll_all()
    assert outcomes[0].error is not None and outcomes[0].error.kind == "timeout"
    assert outcomes[1].published == 3
    assert metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="timeout") == 1


async def test_entries_without_link_or_date_are_counted_and_the_rest_published(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """No link (or a non-http one) rejects an entry; no date or an unreadable one publishes it without a date."""
    http_server.route("/feed.xml", serve_bytes(payload("rss_defects.xml")))
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/feed.xml', name: defects}}"))
    with capture_logs() as logs:
        [outcome] = await app.poll_all()
    assert (outcome.published, outcome.rejected) == (3, 2)
    stored = {m.title: m for _, m in await read_mentions(nats_server.url)}
    assert set(stored) == {"A good entry", "An entry with no date", "An entry with a broken date"}
    assert stored["An entry with no date"].published_at is None
    assert stored["An entry with a broken date"].published_at is None
    rejected = [e for e in logs if e["event"] == "ingest.entries_rejected"]
    assert rejected and rejected[0]["reasons"] == {"no_link": 2}
    m = app.metrics
    assert metric(m, "veille_ingest_entries_rejected_total", source="rss", reason="no_link") == 2
    assert metric(m, "veille_ingest_entries_repaired_total", source="rss", problem="no_date") == 1
    assert metric(m, "veille_ingest_entries_repaired_total", source="rss", problem="bad_date") == 1


async def test_invalid_utf8_is_decoded_with_a_fallback_and_counted(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A feed declared UTF-8 with Latin-1 bytes is still read, counted as invalid_utf8 and logged."""
    http_server.route("/feed.xml", serve_bytes(payload("rss_invalid_utf8.xml")))
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/feed.xml', name: bytes}}"))
    with capture_logs() as logs:
        [outcome] = await app.poll_all()
    assert outcome.published == 1
    [(_, mention)] = await read_mentions(nats_server.url)
    assert mention.title is not None and mention.title.startswith("Café crème")
    assert any(e["event"] == "ingest.feed_repaired" for e in logs)
    assert metric(app.metrics, "veille_ingest_entries_repaired_total", source="rss", problem="invalid_utf8") == 1


async def test_429_and_503_honour_retry_after_and_repeated_failures_turn_readiness_red(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Retry-After sets the next poll; three failures in a row make /readyz name the feed; a success clears it."""
    statuses = [(429, "120"), (503, "30"), (500, None)]

    async def handler(request: web.Request) -> web.StreamResponse:
        if statuses:
            status, retry_after = statuses.pop(0)
            return web.Response(status=status, headers={"Retry-After": retry_after} if retry_after else {})
        return web.Response(body=payload("rss_blog.xml"), content_type="application/rss+xml")

    http_server.route("/feed.xml", handler)
    app = await make_app(feeds_yaml(f"{{url: '{http_server.url}/feed.xml', name: flaky}}"))
    first = (await app.poll_all())[0]
    assert first.error is not None and first.error.kind == "rate_limited" and first.next_in >= 120
    for limiter in app.source.fetcher.limiters():  # type: ignore[attr-defined]
        limiter.reset()  # the test does not wait 120 s
    second = (await app.poll_all())[0]
    assert second.error is not None and second.error.kind == "unavailable" and second.next_in >= 30
    for limiter in app.source.fetcher.limiters():  # type: ignore[attr-defined]
        limiter.reset()
    assert "sources" not in app.health.problems()
    third = (await app.poll_all())[0]
    assert third.error is not None and third.error.kind == "http_5xx"
    problems = app.health.problems()
    assert "flaky" in problems["sources"] and "failed 3 times in a row" in problems["sources"]
    assert (await app.poll_all())[0].published == 3
    assert app.health.problems() == {}
    assert metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="rate_limited") == 1
    assert metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="unavailable") == 1


async def test_started_service_polls_feeds_on_its_own_schedule(
    make_app: AppFactory, http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """start() schedules every feed; mentions appear without the test polling, and stop() ends the loops."""
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml"), etag='"e1"'))
    yaml_text = feeds_yaml(f"{{url: '{http_server.url}/feed.xml', name: blog, interval: 100ms}}")
    app = await make_app(yaml_text, connect=False)
    await app.start()

    async def polled_twice() -> bool:
        return len(http_server.requests_to("/feed.xml")) >= 2

    await wait_for(polled_twice)
    await app.stop()
    assert len(await read_mentions(nats_server.url)) == 3
    assert http_server.requests_to("/feed.xml")[-1].headers.get("If-None-Match") == '"e1"'
