"""Webhooks: a signed JSON POST (Standard Webhooks), veille's schema or Alertmanager's version 4.

Headers sent: ``content-type: application/json``, ``webhook-id`` (the notification id: the same on
every retry, restart and replay, so a receiver can drop a repeat), ``webhook-timestamp`` (the time
of this attempt, Unix seconds) and ``webhook-signature`` when a secret is configured, plus the
receiver's custom headers (which cannot override the signature headers).
"""

from __future__ import annotations

import json

import httpx
from jinja2.sandbox import ImmutableSandboxedEnvironment

from services.notifier.delivery import post
from services.notifier.http import WebhookSession
from services.notifier.model import Clock, IntegrationKind, Notification
from services.notifier.payload import alertmanager_body, encode, veille_body
from services.notifier.signing import sign
from veille.config import WebhookReceiver

__all__ = ["WebhookIntegration", "render_webhook_body"]

_PROTECTED = {"webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "content-length"}


def render_webhook_body(
    config: WebhookReceiver, notification: Notification, *, external_url: str = ""
) -> tuple[bytes, str]:
    """Return the body bytes and content type for ``notification`` (``external_url``: the config's)."""
    if config.format == "alertmanager":
        body = alertmanager_body(notification, external_url=external_url)
    else:
        body = veille_body(notification, external_url=external_url)
    if config.body_template is None:
        return encode(body), "application/json"
    env = ImmutableSandboxedEnvironment(autoescape=False)
    env.filters["tojson"] = lambda value: json.dumps(value, ensure_ascii=False)
    text = env.from_string(config.body_template).render(
        payload=body, data=body.get("data", body), notification=notification.model_dump(mode="json")
    )
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return text.encode(), "text/plain; charset=utf-8"
    return text.encode(), "application/json"


class WebhookIntegration:
    """POSTs notifications to one webhook URL."""

    kind: IntegrationKind = "webhook"

    def __init__(
        self,
        config: WebhookReceiver,
        client: httpx.AsyncClient | WebhookSession,
        *,
        key: bytes | None,
        clock: Clock,
        external_url: str = "",
    ) -> None:
        self.config = config
        self.client = client
        self.key = key
        self.clock = clock
        self.external_url = external_url
        self.timeout = config.timeout.total_seconds()

    def headers(self, notification: Notification, body: bytes, content_type: str) -> dict[str, str]:
        """The request headers for one attempt (timestamp and signature are per attempt)."""
        timestamp = int(self.clock().timestamp())
        headers = {k: v for k, v in self.config.headers.items() if k.lower() not in _PROTECTED}
        headers.update(
            {"content-type": content_type, "webhook-id": notification.id, "webhook-timestamp": str(timestamp)}
        )
        if self.key is not None:
            headers["webhook-signature"] = sign(self.key, notification.id, timestamp, body)
        return headers

    async def send(self, notification: Notification) -> None:
        """POST once; raise :class:`DeliveryError` (retryable on time-outs, 408, 429 and 5xx)."""
        body, content_type = render_webhook_body(self.config, notification, external_url=self.external_url)
        headers = self.headers(notification, body, content_type)
        await post(
            self.client, str(self.config.url), content=body, headers=headers, timeout=self.timeout, what="webhook"
        )
