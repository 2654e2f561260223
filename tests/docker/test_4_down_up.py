"""`docker compose down` then `up`: the JetStream volume and everything in it survive."""

from __future__ import annotations

from typing import Any

from tests.docker.conftest import Stack, docker
from tests.docker.test_3_alerts import alerted_links, let_it_settle, stream_counts
from tests.helpers.kv import live_kv_keys
from veille import bus


async def _state(js: Any) -> dict[str, Any]:
    consumer = await js.consumer_info(bus.CLASSIFIER_CONSUMER.stream, bus.CLASSIFIER_CONSUMER.durable)
    return {
        "mentions": (await js.stream_info(bus.MENTIONS.name)).state.messages,
        "classified": (await js.stream_info(bus.CLASSIFIED.name)).state.messages,
        "alerts": (await js.stream_info(bus.ALERTS.name)).state.messages,
        "classifier_acked": consumer.ack_floor.stream_seq,
        "cursors": await live_kv_keys(js, bus.CURSORS.name),
    }


def test_down_then_up_keeps_the_jetstream_volume_and_its_state(stack: Stack) -> None:
    """Streams, consumers' progress and the ingestors' cursors come back; nothing is ingested or sent again."""
    before = stack.nats_call(_state)
    assert before["mentions"] > 0 and before["cursors"], before
    delivered = alerted_links(stack)
    volume = f"{stack.project}_nats-data"
    nats_container = stack.container("nats")

    stack.run("down", "--timeout", "30")
    assert docker("ps", "-a", "-q", "--filter", f"id={nats_container}").stdout.strip() == "", "containers removed"
    assert docker("volume", "inspect", volume, check=False).returncode == 0, "down keeps the named volume"

    stack.run("up", "-d", "--no-build")
    stack.wait_healthy()
    after = stack.nats_call(_state)
    assert after == before
    # The restarted ingestor reads the same feed again: its cursor keeps it from republishing, and the
    # notification log keeps the notifier from sending anything twice.
    let_it_settle(stack)
    assert stream_counts(stack) == {bus.MENTIONS.name: before["mentions"], bus.CLASSIFIED.name: before["classified"]}
    assert alerted_links(stack) == delivered
