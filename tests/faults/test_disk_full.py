"""JetStream out of room: readiness says so, nothing is lost, and the services recover by themselves.

The pipeline's streams (mentions, classified, alerts) drop their oldest, long-read messages when they
reach their budget; the dead-letter stream refuses new letters instead, so a dead letter is never
dropped unseen. These tests run a real nats-server and the classifier as a child process.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from nats.js.errors import APIError

from tests.faults.harness import Receiver, Stack, connect, eventually, make_mentions, write_config
from tests.helpers.deadletters import dead_letters
from veille import bus
from veille.natsserver import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BUDGET = 512 * 1024


async def test_a_full_dead_letter_stream_turns_readiness_503_and_keeps_the_poison_until_ops_make_room(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """With VEILLE_DEADLETTER at its budget, /readyz says 503 naming it, a poison mention is kept (not
    acked, not dropped) while its letter is refused, and once ops purge the dead letters readiness is
    back and the poison mention's letter is stored, no service restarted."""
    receiver = Receiver()
    await receiver.start()
    stack = Stack([nats_server.url], write_config(tmp_path / "veille.yaml", receiver.url), tmp_path)
    nc = await connect([nats_server.url])
    js = nc.jetstream()
    await bus.ensure_topology(js)
    await stack.start(["classifier"])
    port = stack.children()["classifier"].http_port
    # A small budget stands for the deploy's: the same stream and discard policy, fewer bytes.
    small = bus.DEADLETTER.config()
    small.max_bytes = BUDGET
    await js.update_stream(small)
    try:
        refused: list[str] = []
        for size in (16_000, 2_000, 200):  # fill to within a few hundred bytes of the budget
            for _ in range(BUDGET // size + 10):
                try:
                    await js.publish(bus.deadletter_subject("filler"), b"x" * size, timeout=5)
                except APIError as exc:
                    refused.append(str(exc))
                    break
        assert refused, "VEILLE_DEADLETTER at its budget refuses new letters instead of dropping old ones"

        async with httpx.AsyncClient(timeout=5) as client:

            async def readyz() -> httpx.Response:
                return await client.get(f"http://127.0.0.1:{port}/readyz")

            async def not_ready() -> bool:
                return (await readyz()).status_code == 503

            await eventually(not_ready, timeout=30, what="classifier /readyz 503 while VEILLE_DEADLETTER is full")
            body = (await readyz()).json()
            assert "VEILLE_DEADLETTER" in body["problems"]["jetstream"], body
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'veille_jetstream_available{service="classifier"} 0.0' in metrics

            # A poison mention now: its dead letter is refused, so the classifier must keep it for later.
            await js.publish(bus.mention_subject("rss"), b"this is not json", headers={"Nats-Msg-Id": "poison-late"})
            await eventually(
                lambda: "dead_letter_failed" in stack.log("classifier"),
                timeout=30,
                what="the classifier to try to dead-letter the poison mention",
            )
            info = await js.consumer_info(bus.MENTIONS.name, "classifier")
            assert info.num_ack_pending + info.num_pending >= 1, "the poison mention is not acked while unkept"

            # The runbook: export the dead letters, then purge them.
            await js.purge_stream(bus.DEADLETTER.name)

            async def ready() -> bool:
                return (await readyz()).status_code == 200

            await eventually(ready, timeout=30, what="classifier /readyz 200 once the dead letters are purged")
            letters = await dead_letters(js, 1, timeout=60)
            assert [letter.headers.get("Nats-Msg-Id") for letter in letters] == ["poison-late"]
            assert letters[0].error_kind == "invalid_json"
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'veille_jetstream_available{service="classifier"} 1.0' in metrics
    finally:
        await stack.stop()
        await nc.close()
        await receiver.stop()
    assert stack.deaths("classifier") == 0, "the classifier recovered without a restart"


async def test_a_full_mentions_stream_keeps_taking_mentions_and_the_classifier_stays_ready(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """A mentions stream at its budget (one ops lowered by hand, which ensure_topology keeps) drops its
    oldest, already classified mentions: new ones are accepted and classified, and /readyz stays 200."""
    receiver = Receiver()
    await receiver.start()
    stack = Stack([nats_server.url], write_config(tmp_path / "veille.yaml", receiver.url), tmp_path)
    nc = await connect([nats_server.url])
    js = nc.jetstream()
    await bus.ensure_topology(js)
    small = bus.MENTIONS.config()
    small.max_bytes = BUDGET
    await js.update_stream(small)
    await bus.ensure_topology(js)  # a service starting again keeps the lowered budget
    assert (await js.stream_info(bus.MENTIONS.name)).config.max_bytes == BUDGET
    await stack.start(["classifier"])
    port = stack.children()["classifier"].http_port
    try:
        mentions = make_mentions(1_500, seed=3, prefix="full")
        for mention in mentions:  # about three budgets' worth: every publish is accepted
            await js.publish(
                bus.mention_subject("rss"), mention.model_dump_json().encode(), headers={"Nats-Msg-Id": mention.id}
            )
        state = (await js.stream_info(bus.MENTIONS.name)).state
        assert state.bytes <= BUDGET and state.first_seq > 1, "the oldest mentions made room"

        async def all_read() -> bool:
            info = await js.consumer_info(bus.MENTIONS.name, "classifier")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await eventually(all_read, timeout=120, what="the classifier to read the mentions")
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{port}/readyz")
            assert response.status_code == 200, response.text
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'veille_jetstream_available{service="classifier"} 1.0' in metrics
    finally:
        await stack.stop()
        await nc.close()
        await receiver.stop()


async def test_streams_fit_a_server_with_less_room_than_their_budgets(tmp_path: Path) -> None:
    """On a server with 1 GB of JetStream storage (a laptop's small disk), every stream is created with its
    budget scaled down in proportion, and a second start changes nothing."""
    conf = tmp_path / "js.conf"
    conf.write_text("jetstream { max_file_store: 1GB }\n", encoding="utf-8")
    server = NatsServerProcess(store_dir=tmp_path / "store", extra_args=["-c", str(conf)])
    server.start()
    nc = await connect([server.url])
    try:
        js = nc.jetstream()
        await bus.ensure_topology(js)
        budgets = {s.name: (await js.stream_info(s.name)).config.max_bytes for s in bus.STREAMS}
        assert sum(budgets.values()) <= 1_000_000_000
        wanted = {s.name: s.max_bytes for s in bus.STREAMS}
        scale = {wanted[name] // budget for name, budget in budgets.items()}
        assert len(scale) == 1 and scale.pop() > 1, budgets  # one factor for every stream
        await bus.ensure_topology(js)
        assert {s.name: (await js.stream_info(s.name)).config.max_bytes for s in bus.STREAMS} == budgets
    finally:
        await nc.close()
        server.stop()
