"""Loopback HTTP servers for tests: a feed server with ETag support and a verifying webhook receiver."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FeedServer", "WebhookDelivery", "WebhookReceiver", "sign_standard_webhook", "verify_standard_webhook"]


def sign_standard_webhook(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Compute the Standard Webhooks ``v1,<base64>`` signature (the reference algorithm)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard_webhook(secret: str, headers: Any, body: bytes) -> bool:
    """Whether the request carries a valid Standard Webhooks signature."""
    msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    signatures = (headers.get("webhook-signature") or "").split()
    if not msg_id or not timestamp or not signatures:
        return False
    expected = sign_standard_webhook(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, sig) for sig in signatures)


class _Server:
    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class FeedServer(_Server):
    """Serves feed documents by path; honours If-None-Match when ``etag`` is on."""

    def __init__(self) -> None:
        super().__init__()
        self.documents: dict[str, tuple[bytes, str]] = {}
        self.etag = True
        self.requests: list[dict[str, str]] = []
        self.not_modified = 0
        self.websockets: set[str] = set()

    def serve(self, path: str, body: bytes, content_type: str = "application/atom+xml") -> None:
        self.documents[path] = (body, content_type)

    def serve_websocket(self, path: str) -> None:
        """Accept WebSocket connections on ``path`` and keep them open, silent (an idle firehose)."""
        self.websockets.add(path)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{path:.*}", self._get)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.headers))
        if "/" + request.match_info["path"] in self.websockets:
            socket = web.WebSocketResponse(heartbeat=10)
            await socket.prepare(request)
            async for _ in socket:
                pass
            return socket
        doc = self.documents.get("/" + request.match_info["path"])
        if doc is None:
            return web.Response(status=404)
        body, content_type = doc
        tag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.etag and request.headers.get("If-None-Match") == tag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": tag})
        headers = {"ETag": tag} if self.etag else {}
        return web.Response(body=body, content_type=content_type, headers=headers)


@dataclass
class WebhookDelivery:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver(_Server):
    """Records deliveries, verifying their Standard Webhooks signature; can fail on purpose."""

    secret: str = ""
    fail_first: int = 0
    status_when_failing: int = 503
    deliveries: list[WebhookDelivery] = field(default_factory=list)
    attempts: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        super().__init__()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.attempts <= self.fail_first:
            return web.Response(status=self.status_when_failing)
        delivery = WebhookDelivery(
            dict(request.headers), body, verify_standard_webhook(self.secret, request.headers, body)
        )
        self.deliveries.append(delivery)
        self.arrived.set()
        return web.json_response({"ok": True})
