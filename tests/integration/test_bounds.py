"""Hostile sizes on a real nats-server: long titles are cut at the edge, and dead letters replay whole or not at all."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from faststream import AckPolicy
from faststream.nats import JStream, PullSub
from nats.js import JetStreamContext

from services.classifier.logic import alert_id
from tests.faults.harness import Receiver, Stack, connect, eventually, read_stream, write_config
from tests.helpers.deadletters import dead_letters
from veille import bus
from veille.messaging import MAX_KEPT_PAYLOAD, DeadLetterSink, dead_letter_middleware, make_broker
from veille.metrics import ServiceMetrics
from veille.models import AlertRaised, MentionIngested
from veille.natsserver import NatsServerProcess
from veille.settings import ServiceSettings
from veille_cli.dlq_cmd import dlq, list_dead_letters

NEGATIVE = "Acme: terrible, awful, the worst service ever, I hate it"
LONG_TITLE = ("Acme terrible awful disaster " * 3500)[:99_000]


def test_a_99000_character_title_is_cut_when_the_mention_is_built() -> None:
    """An ingestor building a mention with a 99,000-character title gets it cut to the bound, with a marker."""
    mention = MentionIngested(id="rss:long", source="rss", title=LONG_TITLE, text=NEGATIVE)
    assert mention.title is not None
    assert len(mention.title) == 1_000 and mention.title.endswith(" [...]")
    assert LONG_TITLE.startswith(mention.title.removesuffix(" [...]"))


@pytest.mark.integration
@pytest.mark.timeout(240)
async def test_alerts_of_mentions_with_huge_titles_all_reach_the_receiver(tmp_path: Path) -> None:
    """19 negative mentions with 99,000-character titles each raise an alert, and all 19 reach the webhook receiver."""
    server = NatsServerProcess(store_dir=tmp_path / "store", log_file=tmp_path / "nats.log")
    server.start()
    receiver = Receiver()
    await receiver.start()
    stack = Stack([server.url], write_config(tmp_path / "veille.yaml", receiver.url, group_interval="10s"), tmp_path)
    nc = await connect([server.url])
    js = nc.jetstream()
    await bus.ensure_topology(js)
    await stack.start(["classifier", "notifier"])
    try:
        ids = [f"rss:huge-title-{i}" for i in range(19)]
        for mention_id in ids:
            # Raw JSON, as any producer on the bus may send it: the classifier bounds it when it reads it.
            body = json.dumps({"id": mention_id, "source": "rss", "title": LONG_TITLE, "text": NEGATIVE}).encode()
            await js.publish(bus.mention_subject("rss"), body, headers={"Nats-Msg-Id": mention_id}, timeout=10)
        expected = {alert_id("acme", "negative_mention", mention_id) for mention_id in ids}
        await eventually(
            lambda: expected <= set(receiver.firing_alerts()),
            timeout=120,
            what=f"19 alerts delivered (got {len(set(receiver.firing_alerts()) & expected)})",
        )
        alerts = [
            AlertRaised.model_validate_json(m.data) for m in await read_stream(js, bus.ALERTS.name, "veille.alerts.>")
        ]
        assert {a.id for a in alerts} == expected
        for alert in alerts:
            assert len(alert.model_dump_json()) < 10_000, "an alert quotes short excerpts only"
        letters = await read_stream(js, bus.DEADLETTER.name, "veille.dlq.>")
        assert letters == [], [json.loads(m.data)["reason"] for m in letters]
        for delivery in receiver.deliveries:
            for sample in (s for a in delivery.body["data"]["alerts"] for s in a.get("samples", [])):
                assert len(sample.get("title") or "") <= 200
    finally:
        await stack.stop()
        await nc.close()
        await receiver.stop()
        server.stop()


async def _dead_letter_big_payloads(
    nats_server: NatsServerProcess, js: JetStreamContext, payloads: list[bytes]
) -> None:
    """Publish ``payloads`` on the mentions stream and let a dead-letter middleware reject them all."""
    metrics = ServiceMetrics("probe")
    sink = DeadLetterSink("probe", metrics)
    middleware = dead_letter_middleware("probe", bus.MENTIONS.name, metrics, sink)
    broker = make_broker(ServiceSettings(nats_url=nats_server.url), "probe", metrics, middlewares=(middleware,))

    @broker.subscriber(
        "veille.mentions.ingested.>",
        stream=JStream(bus.MENTIONS.name, declare=False),
        durable="probe",
        pull_sub=PullSub(batch_size=10, timeout=0.5),
        ack_policy=AckPolicy.MANUAL,
    )
    async def handle(mention: MentionIngested) -> None:  # pragma: no cover - every payload is invalid
        raise AssertionError("not reached")

    await broker.connect()
    sink.bind(broker.connection)
    await broker.start()
    try:
        for i, payload in enumerate(payloads):
            await js.publish(bus.mention_subject("rss"), payload, headers={"Nats-Msg-Id": f"big-{i}"})
        await dead_letters(js, len(payloads))
    finally:
        await broker.stop()


async def test_a_truncated_dead_letter_replays_its_full_original_or_refuses_and_stays(
    nats_server: NatsServerProcess, js: JetStreamContext
) -> None:
    """A letter that kept part of its payload replays the whole original from its stream, or refuses once it is gone."""
    # 800 KB, under the services' 1 MiB limit and NATS's 1 MB max_payload, over what a letter embeds;
    # missing its "source", so it is dead-lettered invalid_schema.
    payloads = [json.dumps({"id": f"big-{i}", "text": f"{i}" * 800_000}).encode() for i in range(2)]
    await _dead_letter_big_payloads(nats_server, js, payloads)
    entries = sorted(await list_dead_letters(js, service="probe"), key=lambda e: e.letter.headers["Nats-Msg-Id"])
    assert len(entries) == 2
    for entry, payload in zip(entries, payloads, strict=True):
        letter = entry.letter
        assert letter.truncated and letter.original_size == len(payload)
        assert letter.original_sha256 == hashlib.sha256(payload).hexdigest()
        assert letter.origin_stream == bus.MENTIONS.name and letter.origin_seq is not None
        assert len(base64.b64decode(letter.payload)) == MAX_KEPT_PAYLOAD
    first, second = entries
    # The second original leaves its stream (retention, a purge): that letter cannot be replayed whole.
    assert second.letter.origin_seq is not None
    await js.delete_msg(bus.MENTIONS.name, second.letter.origin_seq)
    before = (await js.stream_info(bus.MENTIONS.name)).state.last_seq

    url = ["--nats-url", nats_server.url]
    result = await asyncio.to_thread(CliRunner().invoke, dlq, ["replay", str(first.seq), str(second.seq), *url])

    assert result.exit_code == 1, result.output
    assert f"replayed {first.seq}" in result.output
    assert f"refused {second.seq}" in result.output and "no longer in its stream" in result.output
    assert "the dead letter is kept" in result.output
    # The full first original is back on its subject, byte for byte; nothing was published for the second.
    info = await js.stream_info(bus.MENTIONS.name)
    assert info.state.last_seq == before + 1
    replayed = await js.get_msg(bus.MENTIONS.name, info.state.last_seq)
    assert replayed.data == payloads[0]
    remaining = await list_dead_letters(js, service="probe")
    assert [e.seq for e in remaining] == [second.seq]
