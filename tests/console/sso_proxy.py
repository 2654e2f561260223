"""A stand-in for oauth2-proxy in front of the console: a real HTTP reverse proxy on 127.0.0.1.

oauth2-proxy, run with ``--pass-user-headers=true`` (its default, documented in its configuration
overview: "pass X-Forwarded-User, X-Forwarded-Groups, X-Forwarded-Email and
X-Forwarded-Preferred-Username information to upstream") and ``--skip-auth-strip-headers=true``
(also the default), first deletes any copy of those headers the browser sent, then sets them from
the signed-in session, ``X-Forwarded-Groups`` once per group. This proxy does the same with the
identity the test gives it (``None``: nobody signed in, answered 401 as oauth2-proxy's API routes
do), and passes everything else through unchanged in both directions (cookies included). It
connects to the console from 127.0.0.1 (or the ``source`` given), the address the console is told
to trust.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

USER, EMAIL, GROUPS, PREFERRED = (
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Groups",
    "X-Forwarded-Preferred-Username",
)
_STRIPPED = {h.lower() for h in (USER, EMAIL, GROUPS, PREFERRED)}
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
}


@dataclass
class Identity:
    """Who the identity provider says is signed in."""

    user: str
    email: str = ""
    groups: list[str] = field(default_factory=list)


class IdentityProxy:
    """Reverse proxy to ``upstream`` adding the signed-in person's headers, as oauth2-proxy does."""

    def __init__(self, upstream: str, identity: Identity | None = None, *, source: str = "127.0.0.1") -> None:
        """``source``: the loopback address it connects to the console from."""
        self.upstream = upstream.rstrip("/")
        self.source = source
        self.identity = identity
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> IdentityProxy:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(self.source, 0)),
            cookie_jar=aiohttp.DummyCookieJar(),  # the browsers' cookies pass through, none kept here
            auto_decompress=True,
        )
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        if self.identity is None:
            return web.Response(status=401, text="sign in with the identity provider first")
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP and k.lower() not in _STRIPPED
        )
        headers.add(USER, self.identity.user)
        headers.add(PREFERRED, self.identity.user)
        if self.identity.email:
            headers.add(EMAIL, self.identity.email)
        for group in self.identity.groups:
            headers.add(GROUPS, group)
        async with self.session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers=CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP),
            )
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
