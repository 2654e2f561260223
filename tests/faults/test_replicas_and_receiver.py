"""Two classifier replicas against one, and a webhook receiver that goes away for a while."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import (
    Receiver,
    Stack,
    assert_exactly_once,
    connect,
    drive,
    make_mentions,
    read_stream,
    write_config,
)
from veille import bus
from veille.models import AlertRaised
from veille.natsserver import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def _run(tmp_path: Path, classifiers: list[str], mentions_seed: int) -> tuple[set[str], set[str], list[float]]:
    server = NatsServerProcess(store_dir=tmp_path / "store", log_file=tmp_path / "nats.log")
    server.start()
    receiver = Receiver()
    await receiver.start()
    stack = Stack([server.url], write_config(tmp_path / "veille.yaml", receiver.url), tmp_path)
    nc = await connect([server.url])
    js = nc.jetstream()
    try:
        await bus.ensure_topology(js)
        await stack.start([*classifiers, "notifier"])
        mentions = make_mentions(4_000, seed=mentions_seed)
        audit = await drive(js, receiver, mentions, [])
        assert_exactly_once(audit, mentions, receiver)
        shares = []
        async with httpx.AsyncClient() as client:
            for name in classifiers:
                text = (await client.get(f"http://127.0.0.1:{stack.children()[name].http_port}/metrics")).text
                shares.append(
                    sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in text.splitlines()
                        if line.startswith("veille_mentions_classified_total{")
                    )
                )
        alerts = {AlertRaised.model_validate_json(m.data).id for m in await read_stream(js, bus.ALERTS.name, ">")}
        return alerts, set(audit.delivered), shares
    finally:
        await stack.stop()
        await nc.close()
        await receiver.stop()
        server.stop()


async def test_two_classifier_replicas_raise_the_same_alerts_as_one(tmp_path: Path) -> None:
    """The same mentions through one classifier and through two replicas sharing the consumer give the same alerts."""
    one_alerts, one_delivered, _ = await _run(tmp_path / "one", ["classifier"], 41)
    two_alerts, two_delivered, shares = await _run(tmp_path / "two", ["classifier", "classifier#2"], 41)
    assert all(share > 0 for share in shares), f"both replicas took part: {shares}"
    assert sum(shares) >= 4_000
    assert one_alerts == two_alerts
    assert one_delivered == two_delivered == one_alerts


async def test_webhook_receiver_down_then_back_gets_everything_once_in_order(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """A receiver with its port closed, then answering 503, then back: each alert arrives once, groups in order."""
    receiver = Receiver()
    await receiver.start()
    stack = Stack([nats_server.url], write_config(tmp_path / "veille.yaml", receiver.url), tmp_path)
    nc = await connect([nats_server.url])
    js = nc.jetstream()
    await bus.ensure_topology(js)
    await stack.start(["classifier", "notifier"])
    mentions = make_mentions(4_000, seed=51)

    async def outage() -> None:
        await receiver.stop()  # connection refused
        await asyncio.sleep(5)
        receiver.failing = True  # listening again, but 503 Service Unavailable
        await receiver.start()
        await asyncio.sleep(4)
        receiver.failing = False

    try:
        audit = await drive(js, receiver, mentions, [(1_000, outage)])
        sequences = {
            AlertRaised.model_validate_json(m.data).id: m.metadata.sequence.stream
            for m in await read_stream(js, bus.ALERTS.name, ">")
        }
    finally:
        await stack.stop()
        await nc.close()
        await receiver.stop()
    assert receiver.refused > 0, "the receiver did refuse deliveries for a while"
    assert_exactly_once(audit, mentions, receiver)
    # In order within a group: notifications arrive in the order the group made them (a retried one
    # before any later one), and the alerts they carry follow the alerts stream's order, since the
    # notifier records alerts one at a time in stream order.
    by_group: dict[str, list[tuple[str, list[int]]]] = {}
    for delivery in receiver.deliveries:
        seqs = sorted(sequences[alert_id] for alert_id, status in delivery.alerts if status == "firing")
        by_group.setdefault(delivery.group, []).append((delivery.body["timestamp"], seqs))
    assert len(by_group) >= 5
    for group, notifications in by_group.items():
        made = [when for when, _ in notifications]
        assert made == sorted(made), f"group {group}: notifications arrived out of the order they were made"
        told = [seq for _, seqs in notifications for seq in seqs]
        assert told == sorted(told), f"group {group}: alerts told out of stream order: {told}"
