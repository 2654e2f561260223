"""The HTTP client factory: one long-lived ``httpx.AsyncClient`` per service, explicit time-outs."""

from __future__ import annotations

import httpx

__all__ = ["make_http_client"]


def make_http_client(
    *,
    user_agent: str,
    timeout: float = 20.0,
    connect_timeout: float = 5.0,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 50,
) -> httpx.AsyncClient:
    """Build the service's HTTP client: time-outs on every phase, bounded pool, redirects followed."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections // 2),
        headers={"User-Agent": user_agent},
        follow_redirects=True,
        max_redirects=5,
        transport=transport,
        trust_env=True,
    )
