"""The webhooks' HTTP client: one kept-alive aiohttp session, a third of httpx's CPU per POST.

With each alert its own group, a webhook POST per alert, httpx (with httpcore, anyio and h11) was
about 22 % of the notifier's CPU. :class:`WebhookSession` keeps what :func:`delivery.post` promised
with httpx: one deadline for the whole exchange (:func:`delivery.post` wraps it), redirects never
followed (a 3xx is the answer), at most ``limit`` bytes of any answer read (the connection is dropped
rather than drained when more was sent; a gzip or deflate body is inflated to ``limit`` at most),
a connection opened within :data:`CONNECT_TIMEOUT` (httpx's ``connect`` time-out), a closed session staying closed,
TLS verified against the same certificates httpx used (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when
set, else certifi's), proxies (``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``, ...) from the environment as
httpx's ``trust_env`` reads them (and, as httpx >= 0.28, no ``.netrc`` credentials: its ``default``
entry would hand one login to every receiver), the service's ``User-Agent``, and a bounded pool. No
cookie is kept between deliveries.

The environment is read once per URL, not per request: aiohttp's own ``trust_env`` looks the proxy
and ``.netrc`` up in a worker thread for every request, two thread hand-offs per POST.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import httpx
from httpx._utils import URLPattern, get_environment_proxies  # httpx's own trust_env proxy lookup
from yarl import URL

__all__ = ["HttpAnswer", "WebhookSession"]

MAX_HEADER_FIELD = 32 * 1024
"""Longest status line or header field of an answer read (aiohttp's default, 8190 bytes, failed a receiver's
2xx carrying a long ``Content-Security-Policy`` or ``Set-Cookie`` as unreachable, and the delivery, received,
was sent again; httpx took them). Bounded: at most aiohttp's 128 fields of this size an answer."""
CONNECT_TIMEOUT = 5.0
"""Seconds to open a connection to a receiver (or its proxy), as ``connect_timeout`` of the service's httpx
client (``veille.httpclient.make_http_client``): a receiver whose host drops connection attempts fails fast
(retryable) instead of holding a send slot for the webhook's whole time-out."""
MAX_ROUTES = 1000
"""URLs whose proxy is remembered (a webhook receiver's URL is fixed by the config)."""


@dataclass(frozen=True)
class _Route:
    proxy: URL | None
    proxy_auth: aiohttp.BasicAuth | None


@dataclass(frozen=True)
class HttpAnswer:
    """What a receiver answered: status, headers (case-insensitive) and the start of the body."""

    status_code: int
    headers: Mapping[str, str]
    body: bytes


def _env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy httpx's ``trust_env`` gives ``url``, looked up as httpx does (its patterns, most specific first):
    ``ALL_PROXY`` and ``https://`` proxy URLs included, which aiohttp's own lookup ignores, and ``NO_PROXY``."""
    target = httpx.URL(url)
    patterns = sorted(((URLPattern(k), v) for k, v in get_environment_proxies().items()), key=lambda kv: kv[0])
    for pattern, proxy in patterns:
        if pattern.matches(target):
            if proxy is None:
                return None, None
            address = URL(proxy)
            if address.user is None:
                return address, None
            return address.with_user(None), aiohttp.BasicAuth(address.user, address.password or "")
    return None, None


class WebhookSession:
    """A lazily opened aiohttp session for webhook deliveries (opened on the first POST, in the running loop)."""

    def __init__(self, *, user_agent: str, max_connections: int = 50, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.user_agent = user_agent
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._routes: dict[str, _Route] = {}

    def _route(self, url: str) -> _Route:
        """The proxy the environment gives ``url`` (read once per URL)."""
        route = self._routes.get(url)
        if route is None:
            proxy, proxy_auth = _env_proxy(url)
            if len(self._routes) >= MAX_ROUTES:
                self._routes.clear()
            route = self._routes[url] = _Route(proxy, proxy_auth)
        return route

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:  # the notifier is stopping: a late delivery must not open a pool nothing closes again
            raise aiohttp.ClientConnectionError("webhook session closed (the notifier is stopping)")
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.max_connections,
                ssl=httpx.create_ssl_context(trust_env=True),  # the trust store the httpx client had
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"User-Agent": self.user_agent},
                auto_decompress=False,  # bounded inflating below, never a whole compressed bomb
                cookie_jar=aiohttp.DummyCookieJar(),
                # the caller's asyncio.timeout bounds the exchange; opening a connection, as httpx's connect
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout),
                skip_auto_headers=("Accept-Encoding",),
                max_line_size=MAX_HEADER_FIELD,
                max_field_size=MAX_HEADER_FIELD,
            )
        return self._session

    async def post(self, url: str, *, content: bytes, headers: dict[str, str], limit: int) -> HttpAnswer:
        """POST once, without following a redirect; read at most ``limit`` bytes of the answer."""
        session = self._open()
        route = self._route(url)
        async with session.post(
            url,
            data=content,
            headers=headers,
            allow_redirects=False,
            proxy=route.proxy,
            proxy_auth=route.proxy_auth,
        ) as response:
            chunks: list[bytes] = []
            size = 0
            while size < limit:
                chunk = await response.content.read(limit - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if not response.content.at_eof():
                response.close()  # more than we read: drop the connection instead of draining it
            raw = b"".join(chunks)
            coding = response.headers.get("content-encoding", "").strip().lower()
            if coding in ("gzip", "x-gzip", "deflate"):
                for wbits in (47, zlib.MAX_WBITS, -zlib.MAX_WBITS) if coding == "deflate" else (47,):
                    try:
                        raw = zlib.decompressobj(wbits).decompress(raw, limit)
                        break
                    except zlib.error:
                        continue
            return HttpAnswer(response.status, response.headers, raw)

    async def aclose(self) -> None:
        """Close the session and its connections for good (a later POST fails, retryable, without connecting)."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
