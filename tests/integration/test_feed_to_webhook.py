"""One path end to end on real parts: an Atom feed to a signed webhook, through the three services
run as child processes exactly as `veille up` runs them, on a real nats-server."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import nats
import pytest

from tests.helpers.servers import FeedServer, WebhookReceiver
from veille import bus
from veille.embedded import ChildService, Supervisor
from veille.natsserver import NatsServerProcess, free_port

pytestmark = pytest.mark.integration

SECRET = "whsec_dGVzdC1zZWNyZXQtZm9yLWxvb3BiYWNrLW9ubHk="

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Industry news</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2026-11-26T09:00:00Z</updated>
  <link href="{base}/"/>
  <entry>
    <title>Acme Corp outage leaves customers furious</title>
    <link href="{base}/posts/acme-outage"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <updated>2026-11-26T08:30:00Z</updated>
    <author><name>Jane Reporter</name></author>
    <summary>Terrible service, awful support: the worst week ever for Acme Corp customers.</summary>
  </entry>
  <entry>
    <title>Acme Corp publishes its quarterly report</title>
    <link href="{base}/posts/acme-report"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6b</id>
    <updated>2026-11-26T08:00:00Z</updated>
    <summary>The report is due on Tuesday.</summary>
  </entry>
  <entry>
    <title>Acme Corp wins an award</title>
    <link href="{base}/posts/acme-award"/>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6c</id>
    <updated>2026-11-26T07:00:00Z</updated>
    <summary>Excellent, wonderful customer care, say the judges.</summary>
  </entry>
</feed>
"""

CONFIG = """\
version: 1
watches:
  - name: acme
    query: '"acme corp" OR acme'
    # This test is about the plumbing: one negative entry, one signed webhook, nothing republished. The
    # learned sentiment model scores the neutral "quarterly report ... due on Tuesday" entry about -0.5
    # ("due" leans negative in its training tweets; a known weakness, see issue 12), the furious one
    # -0.99: a stricter threshold keeps the test independent of such borderline scores.
    negative_threshold: -0.8
sources:
  rss:
    interval: 1s
    jitter: 0
    feeds:
      - url: {feed}
        name: industry
receivers:
  - name: crm
    webhook:
      - url: {hook}
        secret: {secret}
route:
  receiver: crm
  group_by: [watch, kind]
  group_wait: 0s
  group_interval: 1s
"""


async def eventually(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true, failing with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def metric_total(text: str, name: str) -> float:
    """Sum every sample of metric ``name`` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_one_negative_entry_gives_exactly_one_signed_webhook(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """Of three feed entries only the negative one alerts, once, signed; a restarted ingestor republishes nothing."""
    feed = FeedServer()
    await feed.start()
    hook = WebhookReceiver(secret=SECRET)
    await hook.start()
    feed.serve("/feed.atom", ATOM.format(base=feed.base_url).encode())
    config = tmp_path / "veille.yaml"
    config.write_text(
        CONFIG.format(feed=f"{feed.base_url}/feed.atom", hook=f"{hook.base_url}/hooks/crm", secret=SECRET)
    )
    children = []
    for name in ("ingest-rss", "classifier", "notifier"):
        port = free_port()
        env = {
            "VEILLE_NATS_URL": nats_server.url,
            "VEILLE_CONFIG": str(config),
            "VEILLE_HTTP_PORT": str(port),
            "VEILLE_LOG_FORMAT": "json",
            "VEILLE_DATA_DIR": str(tmp_path / "var"),
        }
        children.append(ChildService(name, env, port))
    supervisor = Supervisor(children, tmp_path / "logs", backoff_initial=0.2)
    await supervisor.start()
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    try:
        await asyncio.wait_for(hook.arrived.wait(), 90)
        # Give every service time to (wrongly) send more: several polls, group intervals and redeliveries.
        await eventually(lambda: len(feed.requests) >= 4, what="further polls of the feed")
        await asyncio.sleep(3)
        assert len(hook.deliveries) == 1, [d.json() for d in hook.deliveries]
        delivery = hook.deliveries[0]
        assert delivery.verified, "the webhook signature verifies with the shared secret"
        body = delivery.json()
        links = str(body)
        assert "/posts/acme-outage" in links
        assert "/posts/acme-report" not in links and "/posts/acme-award" not in links
        assert (await js.stream_info(bus.MENTIONS.name)).state.messages == 3

        # Restart the ingestor with a feed server that no longer answers 304: the cursor alone must
        # keep it from publishing the three entries again.
        feed.etag = False
        ingestor = children[0]
        assert ingestor.process is not None
        old_pid = ingestor.process.pid
        os.killpg(old_pid, signal.SIGTERM)
        await eventually(
            lambda: ingestor.process is not None and ingestor.process.pid != old_pid, what="ingestor restart"
        )
        polled_before = len(feed.requests)
        await eventually(lambda: len(feed.requests) >= polled_before + 2, what="polls after the restart")
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"http://127.0.0.1:{ingestor.http_port}/metrics")).text
        assert metric_total(text, "veille_ingest_fetches_total") >= 1
        assert metric_total(text, "veille_ingest_mentions_published_total") == 0
        assert (await js.stream_info(bus.MENTIONS.name)).state.messages == 3
        await asyncio.sleep(2)
        assert len(hook.deliveries) == 1
        assert supervisor.deaths.labels("ingest-rss")._value.get() == 1
    finally:
        await nc.close()
        await supervisor.stop()
        await feed.stop()
        await hook.stop()
