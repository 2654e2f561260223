"""The HTTP client factory (one long-lived ``httpx.AsyncClient`` per service, explicit time-outs) and
:func:`read_at_most`, the one way to read a response body whose size the other side decides."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import AsyncGenerator
from typing import cast

import httpx

__all__ = ["make_http_client", "read_at_most"]


def make_http_client(
    *,
    user_agent: str,
    timeout: float = 20.0,
    connect_timeout: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 50,
    follow_redirects: bool = True,
) -> httpx.AsyncClient:
    """Build the service's HTTP client: time-outs on every phase, bounded pool, redirects followed (at most 5)
    unless ``follow_redirects`` is off (the notifier: a delivery never goes anywhere but its configured URL)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections // 2),
        headers={"User-Agent": user_agent},
        follow_redirects=follow_redirects,
        max_redirects=5,
        transport=transport,
        trust_env=True,
    )


async def read_at_most(response: httpx.Response, limit: int) -> bytes:
    """Read at most ``limit`` bytes of a streamed response's body and leave the rest unread.

    Raw bytes are read chunk by chunk (at most ``limit`` plus one network read is ever held), then a
    gzip or deflate body is inflated to at most ``limit`` bytes (a compression bomb stays small); other
    encodings come back as read. Closing the response afterwards (``async with client.stream(...)``)
    drops the connection instead of draining an endless body.
    """
    if response.is_stream_consumed:  # already read whole (a response built in memory, as MockTransport's)
        return response.content[:limit]
    chunks: list[bytes] = []
    size = 0
    async with contextlib.aclosing(cast(AsyncGenerator[bytes, None], response.aiter_raw())) as stream:
        async for chunk in stream:
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
    raw = b"".join(chunks)[:limit]
    coding = response.headers.get("content-encoding", "").strip().lower()
    if coding in ("gzip", "x-gzip", "deflate"):
        for wbits in (47, zlib.MAX_WBITS, -zlib.MAX_WBITS) if coding == "deflate" else (47,):
            try:
                return zlib.decompressobj(wbits).decompress(raw, limit)
            except zlib.error:
                continue
    return raw
