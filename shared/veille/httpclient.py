"""The HTTP client factory (one long-lived ``httpx.AsyncClient`` per service, explicit time-outs) and
:func:`read_at_most`, the one way to read a response body whose size the other side decides.

Redirects (followed for source feeds only) are guarded: a redirect may not lead to a link-local
address (169.254.0.0/16, fe80::/10: cloud metadata services) from anywhere else, nor from a public
address to a non-public one (loopback, private, unique-local, reserved). A feed on the internet thus
cannot make an ingestor fetch the metadata service or another container of the deployment and publish
what it answers. Configured URLs themselves are trusted: ops may watch a feed on their own network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import zlib
from collections.abc import AsyncGenerator
from typing import cast

import httpx

__all__ = ["RedirectRefused", "guard_redirect", "make_http_client", "read_at_most"]


class RedirectRefused(httpx.RequestError):
    """A redirect towards an address a source must not lead the service to (see the module's docstring)."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


async def _addresses(host: str) -> list[Address]:
    """The addresses ``host`` stands for: itself when it is an IP literal, else what the resolver says."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return []  # unresolvable: the request itself will fail with a clear "connect" error
    out: list[Address] = []
    for info in infos:
        with contextlib.suppress(ValueError):
            out.append(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    return out


def _public(address: Address) -> bool:
    return address.is_global and not address.is_multicast


async def guard_redirect(response: httpx.Response) -> None:
    """Response hook: raise :class:`RedirectRefused` for a redirect the module's rules forbid."""
    if not response.has_redirect_location:  # (httpx sets next_request only after the hooks ran)
        return
    try:
        target = response.request.url.join(response.headers["location"]).host
    except (httpx.InvalidURL, ValueError):
        return  # httpx refuses the Location itself, with its own error
    source = response.request.url.host
    if not target or source == target:
        return
    before, after = await _addresses(source), await _addresses(target)
    if any(a.is_link_local for a in after) and not any(a.is_link_local for a in before):
        raise RedirectRefused(
            f"redirect from {source} to {target}, a link-local address (a metadata service?): refused",
            request=response.request,
        )
    if before and all(_public(a) for a in before) and any(not _public(a) for a in after):
        raise RedirectRefused(
            f"redirect from {source}, a public address, to {target}, a private one: refused", request=response.request
        )


def make_http_client(
    *,
    user_agent: str,
    timeout: float = 20.0,
    connect_timeout: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 50,
    follow_redirects: bool = True,
) -> httpx.AsyncClient:
    """Build the service's HTTP client: time-outs on every phase, bounded pool, redirects followed (at most 5,
    never towards a metadata service or from a public host to a private one: :func:`guard_redirect`)
    unless ``follow_redirects`` is off (the notifier: a delivery never goes anywhere but its configured URL)."""
    return httpx.AsyncClient(
        event_hooks={"response": [guard_redirect]} if follow_redirects else None,
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
