"""Reading the dead-letter stream in tests."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from veille import bus
from veille.models import DeadLettered

__all__ = ["dead_letters"]


async def dead_letters(js: JetStreamContext, expected: int, timeout: float = 20.0) -> list[DeadLettered]:
    """Read ``expected`` dead letters (or what arrived before ``timeout``) with an ephemeral consumer."""
    sub = await js.pull_subscribe("veille.dlq.>", stream=bus.DEADLETTER.name)
    out: list[DeadLettered] = []
    deadline = asyncio.get_running_loop().time() + timeout
    try:
        while len(out) < expected and asyncio.get_running_loop().time() < deadline:
            try:
                msgs = await sub.fetch(expected - len(out), timeout=1)
            except TimeoutError:
                continue
            for msg in msgs:
                out.append(DeadLettered.model_validate_json(msg.data))
                await msg.ack()
    finally:
        await sub.unsubscribe()
    return out
