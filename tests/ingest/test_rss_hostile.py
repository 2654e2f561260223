"""Hostile and oversized feeds against the RSS ingestor: real nats-server, loopback feeds and probes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from ingest_helpers import FIXED_NOW, LoopbackServer, config_from, metric, payload, read_mentions, settings_for
from structlog.testing import capture_logs
from test_ingest_rss import feeds_yaml, serve_bytes

from services.ingest_rss.app import create_app
from veille.health import HealthServer
from veille.ingest.runner import IngestService
from veille.natsserver import NatsServerProcess

pytestmark = pytest.mark.integration

PROBE_TIMEOUT = 10.0  # a kubelet would give up far sooner; a blocked event loop never answers


def attribute_bomb(attributes: int = 100_000) -> bytes:
    """An RSS feed whose one item carries ``attributes`` attributes (about 1 MB for 100,000)."""
    attrs = " ".join(f'a{i}="x"' for i in range(attributes))
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>bomb</title>'
        f"<item {attrs}><title>Bomb item</title><link>http://127.0.0.1/bomb</link></item></channel></rss>"
    ).encode()


def markup_flood(elements: int = 160_000) -> bytes:
    """A well-formed feed with a few MB of inline markup in one description: slow to parse, nothing absurd."""
    markup = b'<b a="1" b="2" c="3">x</b>' * elements
    return (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>flood</title><item><title>Flood item</title>'
        b"<link>http://127.0.0.1/flood</link><description>" + markup + b"</description></item></channel></rss>"
    )


def big_feed(entries: int) -> bytes:
    """An RSS feed of ``entries`` items, oldest first, one minute apart."""
    start = datetime(2025, 6, 1, tzinfo=UTC)
    items = "".join(
        f"<item><title>Acme item {i}</title><link>https://big.example/items/{i}</link>"
        f"<pubDate>{(start + timedelta(minutes=i)).strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate></item>"
        for i in range(entries)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>big</title>{items}</channel></rss>'.encode()


class Prober:
    """Probes /healthz and /readyz from a thread of its own, as a kubelet would, until stopped."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.answers: list[tuple[str, int]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=PROBE_TIMEOUT) as client:
            while not self._stop.is_set():
                for path in ("/healthz", "/readyz"):
                    try:
                        self.answers.append((path, client.get(self.base_url + path).status_code))
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{path}: {type(exc).__name__}")
                self._stop.wait(0.1)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=PROBE_TIMEOUT * 3)


@pytest.fixture
async def make_app(nats_server: NatsServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """Build RSS ingestors (extra create_app options allowed) with a health server; stop them at the end."""
    apps: list[tuple[IngestService, HealthServer]] = []

    async def factory(yaml_text: str, **options: Any) -> tuple[IngestService, str]:
        app = create_app(
            settings_for(nats_server.url), config=config_from(yaml_text), clock=lambda: FIXED_NOW, **options
        )
        server = HealthServer(app.name, app.metrics, app.health)
        port = await server.start("127.0.0.1", 0)
        apps.append((app, server))
        await app.connect()
        return app, f"http://127.0.0.1:{port}"

    yield factory
    for app, server in apps:
        await app.stop()
        await server.stop()


@pytest.fixture
def prober() -> Iterator[Callable[[str], Prober]]:
    """Start probers; stop them at the end even if the test failed."""
    started: list[Prober] = []

    def start(base_url: str) -> Prober:
        probe = Prober(base_url)
        started.append(probe)
        return probe.__enter__()

    yield start
    for probe in started:
        probe.__exit__()


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait until ``predicate()`` holds (polling: the conditions live in other processes)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling state fed by other processes
            await asyncio.sleep(0.05)


async def mentions_titled(nats_url: str, prefix: str) -> int:
    """How many mentions on the bus have a title starting with ``prefix``."""
    return sum(1 for _, m in await read_mentions(nats_url) if (m.title or "").startswith(prefix))


async def test_a_100k_attribute_feed_is_refused_without_freezing_probes_or_other_feeds(
    make_app: Callable[..., Any],
    http_server: LoopbackServer,
    nats_server: NatsServerProcess,
    prober: Callable[[str], Prober],
) -> None:
    """100,000 attributes on one element: a counted error, probes and another feed go on, the next poll works."""
    http_server.route("/bomb.xml", serve_bytes(attribute_bomb()))
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml")))
    app, base_url = await make_app(
        feeds_yaml(
            f"{{url: '{http_server.url}/bomb.xml', name: bomb, interval: 200ms}}",
            f"{{url: '{http_server.url}/feed.xml', name: blog, interval: 200ms}}",
        )
    )
    probe = prober(base_url)
    with capture_logs() as logs:
        await app.start()
        await until(lambda: metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="unsafe_xml") >= 1)
        await until(lambda: metric(app.metrics, "veille_ingest_mentions_published_total", source="rss") >= 3)
        http_server.route("/bomb.xml", serve_bytes(payload("atom_blog.xml"), content_type="application/atom+xml"))
        await until(lambda: metric(app.metrics, "veille_ingest_mentions_published_total", source="rss") >= 5)
    probe.__exit__()
    assert probe.failures == []
    assert {path for path, status in probe.answers if status == 200} == {"/healthz", "/readyz"}
    refused = [e for e in logs if e["event"] == "ingest.fetch_failed" and e["target"] == "bomb"]
    assert refused and "100000 attributes" in refused[0]["error"]
    assert len(await read_mentions(nats_server.url)) == 5


async def test_a_document_over_its_parse_budget_is_stopped_while_other_feeds_are_published(
    make_app: Callable[..., Any],
    http_server: LoopbackServer,
    nats_server: NatsServerProcess,
    prober: Callable[[str], Prober],
) -> None:
    """A too-slow parse is stopped at its budget (counted, logged) while another feed is published; next poll works."""
    http_server.route("/flood.xml", serve_bytes(markup_flood()))
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml")))
    app, base_url = await make_app(
        feeds_yaml(
            f"{{url: '{http_server.url}/flood.xml', name: flood, interval: 200ms}}",
            f"{{url: '{http_server.url}/feed.xml', name: blog, interval: 200ms}}",
        ),
        parse_budget=3.0,
    )
    probe = prober(base_url)

    def timeouts() -> float:
        return metric(app.metrics, "veille_ingest_errors_total", source="rss", kind="parse_timeout")

    with capture_logs() as logs:
        await app.start()
        await until(lambda: len(http_server.requests_to("/flood.xml")) >= 1)
        await until(lambda: metric(app.metrics, "veille_ingest_mentions_published_total", source="rss") >= 3)
        published_before_the_budget_ran_out = timeouts() == 0
        await until(lambda: timeouts() >= 1)
        http_server.route("/flood.xml", serve_bytes(payload("atom_blog.xml"), content_type="application/atom+xml"))
        await until(lambda: metric(app.metrics, "veille_ingest_mentions_published_total", source="rss") >= 5)
    probe.__exit__()
    assert published_before_the_budget_ran_out
    assert probe.failures == []
    failed = [e for e in logs if e["event"] == "ingest.fetch_failed" and e["target"] == "flood"]
    assert failed and failed[0]["kind"] == "parse_timeout" and "parser process was stopped" in failed[0]["error"]
    assert metric(app.metrics, "veille_ingest_parser_restarts_total", source="rss", reason="over_budget") >= 1
    assert await mentions_titled(nats_server.url, "Flood") == 0  # nothing half-parsed from the flood


async def test_a_feed_bigger_than_the_seen_set_is_published_once_and_not_again(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """A 6,000-entry feed (over the 5,000-id seen-set) publishes its newest 1,000 once, nothing on the next poll."""
    http_server.route("/big.xml", serve_bytes(big_feed(6000)))
    app, _ = await make_app(feeds_yaml(f"{{url: '{http_server.url}/big.xml', name: big}}"))
    with capture_logs() as logs:
        [first] = await app.poll_all()
        [second] = await app.poll_all()
    assert (second.published, second.duplicates) == (0, 0)
    assert (first.published, first.rejected) == (1000, 5000)
    stored = await read_mentions(nats_server.url)
    assert {m.title for _, m in stored} == {f"Acme item {i}" for i in range(5000, 6000)}
    assert metric(app.metrics, "veille_ingest_entries_rejected_total", source="rss", reason="too_many_entries") == 10000
    capped = [e for e in logs if e["event"] == "ingest.entries_rejected"]
    assert capped and capped[0]["reasons"] == {"too_many_entries": 5000}


async def test_one_dead_feed_of_three_leaves_readiness_green_and_all_dead_turns_it_red(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """One feed of three answering 500 forever keeps /readyz at 200; all three failing turns it 503."""

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(status=500, text="upstream down")

    http_server.route("/dead.xml", broken)
    http_server.route("/feed.xml", serve_bytes(payload("rss_blog.xml")))
    http_server.route("/atom.xml", serve_bytes(payload("atom_blog.xml"), content_type="application/atom+xml"))
    app, base_url = await make_app(
        feeds_yaml(
            f"{{url: '{http_server.url}/dead.xml', name: dead}}",
            f"{{url: '{http_server.url}/feed.xml', name: blog}}",
            f"{{url: '{http_server.url}/atom.xml', name: eng}}",
        )
    )
    for _ in range(4):
        await app.poll_all()
    async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
        assert (await client.get(f"{base_url}/readyz")).status_code == 200
        assert metric(app.metrics, "veille_ingest_consecutive_failures", source="rss", target="dead") == 4
        http_server.route("/feed.xml", broken)
        http_server.route("/atom.xml", broken)
        for _ in range(3):
            await app.poll_all()
        answer = await client.get(f"{base_url}/readyz")
    assert answer.status_code == 503
    assert all(name in answer.json()["problems"]["sources"] for name in ("'dead'", "'blog'", "'eng'"))
