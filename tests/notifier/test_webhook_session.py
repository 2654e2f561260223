"""The webhooks' aiohttp session does what the service's httpx client did: the environment's proxies
(``trust_env``), no ``.netrc`` credentials, long answer headers accepted.

On real loopback servers: a forward proxy that answers any absolute-form request (RFC 9112 section
3.2.2: a client sends ``POST http://host/path HTTP/1.1`` to an HTTP proxy), and the webhook receiver's
host ``hooks.invalid``, which never resolves (RFC 6761), so a delivery that went direct fails.
"""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from services.notifier.delivery import DeliveryError, post
from services.notifier.http import WebhookSession
from veille.httpclient import make_http_client

_PROXY_VARIABLES = ("ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUEST_METHOD", "NETRC")


class ForwardProxy:
    """Answers 200 to every request and records the absolute URL it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.authorizations: list[str | None] = []
        self.extra_headers: dict[str, str] = {}
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._answer)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def _answer(self, request: web.Request) -> web.Response:
        self.asked.append(f"{request.method} {request.url}")
        self.authorizations.append(request.headers.get("Authorization"))
        return web.Response(text="ok", headers=self.extra_headers)


@pytest.fixture
async def proxy(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ForwardProxy]:
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    server = ForwardProxy()
    await server.start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


async def _deliver(url: str) -> None:
    session = WebhookSession(user_agent="veille-test")
    try:
        await post(session, url, content=b"{}", headers={"content-type": "application/json"}, timeout=5, what="webhook")
    finally:
        await session.aclose()


@pytest.mark.parametrize("variable", ["ALL_PROXY", "all_proxy"])
async def test_all_proxy_carries_webhooks(proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """ALL_PROXY alone (httpx honours it): the webhook goes through the proxy, not straight to its host.

    Before: aiohttp's environment lookup knows only HTTP(S)_PROXY, so the POST went direct and failed
    on the name (a deployment whose egress is through that proxy got every webhook dead-lettered)."""
    monkeypatch.setenv(variable, f"http://127.0.0.1:{proxy.port}")
    await _deliver("http://hooks.invalid/alerts")
    assert proxy.asked == ["POST http://hooks.invalid/alerts"]


async def test_no_proxy_still_bypasses_all_proxy(proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host NO_PROXY names is reached directly even with ALL_PROXY set (the proxy sees nothing)."""
    monkeypatch.setenv("ALL_PROXY", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "hooks.invalid")
    with pytest.raises(DeliveryError, match="unreachable"):
        await _deliver("http://hooks.invalid/alerts")
    assert proxy.asked == []


async def test_netrc_credentials_are_not_sent_to_receivers(
    proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A ``.netrc`` on the notifier's host (its ``default`` entry matches any host) gives receivers nothing.

    httpx >= 0.28 (what the service's client and the webhooks used before) never reads ``.netrc``;
    before this fix the aiohttp session sent ``default``'s login as Basic credentials to every webhook
    receiver. The receiver here is the loopback server, reached directly (no proxy variable set)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine git.internal login deploy password s3cret\ndefault login ops password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    await _deliver(f"http://127.0.0.1:{proxy.port}/alerts")
    assert proxy.asked == [f"POST http://127.0.0.1:{proxy.port}/alerts"]
    assert proxy.authorizations == [None]


@pytest.mark.parametrize("size", [9_000, 30_000])
async def test_a_2xx_with_a_long_header_is_a_delivery(proxy: ForwardProxy, size: int) -> None:
    """A receiver that took the POST and answered 200 with a long header field (a Content-Security-Policy of
    9,000 or 30,000 bytes) has the notification: the POST succeeds, once (httpx, before, took it too).

    Before: aiohttp's 8,190-byte limit on a header field made it "unreachable" (retryable), so the same
    notification was sent again at each attempt and finally dead-lettered, though each one was received."""
    proxy.extra_headers = {"Content-Security-Policy": "default-src 'self' " + "a" * size}
    await _deliver(f"http://127.0.0.1:{proxy.port}/alerts")
    assert proxy.asked == [f"POST http://127.0.0.1:{proxy.port}/alerts"]


@pytest.fixture
def unanswering_port() -> Iterator[int]:
    """A loopback port whose accept queue is full (never accepted): Linux drops further connection attempts
    (SYNs, with ``tcp_abort_on_overflow`` 0, the default), so a new connect hangs, as to a host that drops them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_a_connection_that_never_opens_fails_within_the_connect_bound(unanswering_port: int) -> None:
    """A receiver whose host drops connection attempts: the POST fails (retryable) once the connect bound is over,
    not only at the webhook's whole time-out (httpx's client gave up connecting after ``connect_timeout``).

    Before: the aiohttp session had no connect bound; the attempt hung until the whole time-out (here 30 s)."""
    session = WebhookSession(user_agent="veille-test", connect_timeout=0.5)
    try:
        with pytest.raises(DeliveryError) as caught:
            await post(
                session, f"http://127.0.0.1:{unanswering_port}/alerts", content=b"{}", headers={}, timeout=30, what="x"
            )
    finally:
        await session.aclose()
    assert caught.value.retryable and "connect time-out" in caught.value.reason
    default = inspect.signature(make_http_client).parameters["connect_timeout"].default
    assert WebhookSession(user_agent="veille-test").connect_timeout == default


async def test_a_closed_session_stays_closed(proxy: ForwardProxy) -> None:
    """A delivery finishing after the notifier closed its session fails, retryable, and opens no connection
    (another replica sends it once the claim's lease runs out). Before: the POST reopened a connection pool
    that nothing closed again, and went out from a notifier that had stopped."""
    session = WebhookSession(user_agent="veille-test")
    await post(session, f"http://127.0.0.1:{proxy.port}/a", content=b"{}", headers={}, timeout=5, what="webhook")
    await session.aclose()
    with pytest.raises(DeliveryError) as caught:
        await post(session, f"http://127.0.0.1:{proxy.port}/b", content=b"{}", headers={}, timeout=5, what="webhook")
    assert caught.value.retryable and "closed" in caught.value.reason
    assert proxy.asked == [f"POST http://127.0.0.1:{proxy.port}/a"]
    await session.aclose()  # closing twice is harmless
