"""JetStream out of space: readiness says so, nothing is lost, and the services recover by themselves."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest
from nats.js.errors import APIError

from tests.faults.harness import Receiver, Stack, connect, eventually, make_mentions, read_stream, write_config
from veille import bus
from veille.models import MentionIngested
from veille.natsserver import NatsServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

BUDGET = 512 * 1024


def _filler(i: int, size: int) -> MentionIngested:
    [base] = make_mentions(1, seed=i, prefix=f"filler{size}")
    return base.model_copy(update={"id": f"filler:{size}:{i}", "text": base.text + " " + "x" * size})


async def test_full_mentions_stream_turns_readiness_503_and_recovers_without_restarting_services(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """With VEILLE_MENTIONS at its size budget, /readyz says 503 with the reason, a new mention is refused
    (not dropped), and once ops purge what the classifier has read, readiness is back and the mention is
    classified, no service restarted."""
    receiver = Receiver()
    await receiver.start()
    stack = Stack([nats_server.url], write_config(tmp_path / "veille.yaml", receiver.url), tmp_path)
    nc = await connect([nats_server.url])
    js = nc.jetstream()
    await bus.ensure_topology(js)
    await stack.start(["classifier"])
    port = stack.children()["classifier"].http_port
    # A small budget stands for the deploy's: the same stream, the same discard policy, fewer bytes.
    small = bus.MENTIONS.config()
    small.max_bytes = BUDGET
    await js.update_stream(small)
    retrying: asyncio.Task[None] | None = None
    try:
        refused: list[str] = []
        for size in (16_000, 2_000, 200):  # fill to within a few hundred bytes of the budget
            for i in range(BUDGET // size + 10):
                mention = _filler(i, size)
                try:
                    await js.publish(
                        bus.mention_subject("rss"),
                        mention.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": mention.id},
                        timeout=5,
                    )
                except APIError as exc:
                    refused.append(str(exc))
                    break
        assert refused, "VEILLE_MENTIONS at its budget refuses new messages instead of dropping old ones"

        async with httpx.AsyncClient(timeout=5) as client:

            async def readyz() -> httpx.Response:
                return await client.get(f"http://127.0.0.1:{port}/readyz")

            async def not_ready() -> bool:
                return (await readyz()).status_code == 503

            await eventually(not_ready, timeout=30, what="classifier /readyz 503 while VEILLE_MENTIONS is full")
            body = (await readyz()).json()
            assert "VEILLE_MENTIONS" in body["problems"]["jetstream"], body
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'veille_jetstream_available{service="classifier"} 0.0' in metrics

            # A mention arriving now is refused, not silently dropped; its publisher retries as an ingestor does.
            [late] = make_mentions(1, seed=99, prefix="late", match_share=1.0)
            data = late.model_dump_json().encode()
            with pytest.raises(APIError):
                await js.publish(bus.mention_subject("rss"), data, headers={"Nats-Msg-Id": late.id}, timeout=5)

            async def retry() -> None:
                delay = 0.2
                while True:
                    try:
                        await js.publish(bus.mention_subject("rss"), data, headers={"Nats-Msg-Id": late.id}, timeout=5)
                        return
                    except (APIError, TimeoutError):
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 2.0)

            retrying = asyncio.create_task(retry())

            # The runbook: purge what the classifier has already read (nothing unread is lost).
            async def all_read() -> bool:
                info = await js.consumer_info(bus.MENTIONS.name, "classifier")
                return info.num_pending == 0 and info.num_ack_pending == 0

            await eventually(all_read, timeout=60, what="the classifier to read every filler mention")
            floor = (await js.consumer_info(bus.MENTIONS.name, "classifier")).ack_floor.stream_seq
            await js.purge_stream(bus.MENTIONS.name, seq=floor + 1)

            async def ready() -> bool:
                return (await readyz()).status_code == 200

            await eventually(ready, timeout=30, what="classifier /readyz 200 once space is freed")
            await asyncio.wait_for(retrying, timeout=30)

            async def classified() -> bool:
                msgs = await read_stream(js, bus.CLASSIFIED.name, "veille.mentions.classified.>")
                return any(m.headers and m.headers.get("Nats-Msg-Id", "").startswith(late.id) for m in msgs) or any(
                    late.id.encode() in m.data for m in msgs
                )

            await eventually(classified, timeout=60, what="the late mention classified", interval=1.0)
            metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'veille_jetstream_available{service="classifier"} 1.0' in metrics
    finally:
        if retrying is not None:
            retrying.cancel()
            with contextlib.suppress(BaseException):
                await retrying
        await stack.stop()
        await nc.close()
        await receiver.stop()
    assert stack.deaths("classifier") == 0, "the classifier recovered without a restart"
