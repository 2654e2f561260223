"""Slack: an incoming webhook with a Block Kit message, short enough to read on a phone.

Mention text is escaped for mrkdwn (``&``, ``<``, ``>``), so it cannot forge links or ``@channel``.
Slack answers 200 ``ok`` on success, 4xx with a reason (not retried), 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.notifier.delivery import post
from services.notifier.model import IntegrationKind, Notification
from services.notifier.payload import encode
from services.notifier.render import (
    OPEN_VEILLE,
    alert_facts,
    linkable_url,
    more_line,
    one_line,
    slack_fit,
    title_of,
    veille_url,
)
from veille.config import ChatReceiver

__all__ = ["SlackIntegration", "slack_message"]

MAX_ALERTS = 5
MAX_SAMPLES = 2


TEXT_LIMIT = 2900
"""Most characters in one mrkdwn text (Slack allows 3,000 in a section)."""
CONTEXT_LIMIT = 1900
"""Most characters in one context element's text (Slack allows 2,000)."""


def _link(url: str | None, text: str) -> str:
    """``text`` escaped, as a ``<url|text>`` link when the URL passes the shared rule (``linkable_url``)."""
    if linkable_url(url):
        return f"<{url}|{slack_fit(text, 600)}>"
    return slack_fit(text, 600)


def _sample_text(url: str | None, headline: str, body: str) -> str:
    """A quoted sample within :data:`TEXT_LIMIT`: the link is whole, the body cut before it is escaped."""
    first = f"> {_link(url, headline)}"
    room = TEXT_LIMIT - len(first) - len("\n> ")
    if body and room > 20:
        return f"{first}\n> {slack_fit(body, room)}"
    return first


def slack_message(notification: Notification, *, external_url: str = "") -> dict[str, Any]:
    """The Block Kit message for a notification; "…and N more" links to ``external_url`` when set."""
    icon = ":white_check_mark:" if notification.status == "resolved" else ":rotating_light:"
    title = title_of(notification)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": one_line(title, 150), "emoji": True}}
    ]
    shown, hidden = notification.listed(MAX_ALERTS)
    for alert in shown:
        state = "resolved" if alert.status == "resolved" else alert.severity
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{icon} *{slack_fit(one_line(alert.summary, 280), 2000)}* ({state})",
                },
            }
        )
        facts = " · ".join(f"{k}: {slack_fit(one_line(v, 80), 300)}" for k, v in alert_facts(alert)[1:6])
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]})
        for sample in alert.samples[:MAX_SAMPLES]:
            headline = one_line(sample.title or sample.text, 120)
            body = one_line(sample.text, 280) if sample.title else ""
            text = _sample_text(sample.url, headline, body)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
        blocks.append({"type": "divider"})
    url = veille_url(external_url)
    if hidden > 0:
        more = f"<{url}|{slack_fit(more_line(hidden), 200)}>" if url else more_line(hidden)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
    elif url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{url}|{OPEN_VEILLE}>"}]})
    return {"text": slack_fit(title, TEXT_LIMIT), "blocks": blocks[:50]}


class SlackIntegration:
    """Posts notifications to one Slack incoming webhook."""

    kind: IntegrationKind = "slack"

    def __init__(self, config: ChatReceiver, client: httpx.AsyncClient, *, external_url: str = "") -> None:
        self.config = config
        self.client = client
        self.external_url = external_url

    async def send(self, notification: Notification) -> None:
        """POST the Block Kit message once; raise DeliveryError on failure."""
        body = encode(slack_message(notification, external_url=self.external_url))
        await post(
            self.client,
            str(self.config.url),
            content=body,
            headers={"content-type": "application/json"},
            timeout=self.config.timeout.total_seconds(),
            what="slack",
        )
