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
from services.notifier.render import alert_facts, more_line, one_line, slack_escape, title_of
from veille.config import ChatReceiver

__all__ = ["SlackIntegration", "slack_message"]

MAX_ALERTS = 5
MAX_SAMPLES = 2


def _link(url: str | None, text: str) -> str:
    if url and url.startswith(("http://", "https://")) and not any(c in url for c in "<>| "):
        return f"<{url}|{slack_escape(text)}>"
    return slack_escape(text)


def slack_message(notification: Notification) -> dict[str, Any]:
    """The Block Kit message for a notification."""
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
                "text": {"type": "mrkdwn", "text": f"{icon} *{slack_escape(one_line(alert.summary, 280))}* ({state})"},
            }
        )
        facts = " · ".join(f"{k}: {slack_escape(one_line(v, 80))}" for k, v in alert_facts(alert)[1:6])
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]})
        for sample in alert.samples[:MAX_SAMPLES]:
            headline = one_line(sample.title or sample.text, 120)
            body = one_line(sample.text, 280) if sample.title else ""
            text = f"> {_link(sample.url, headline)}" + (f"\n> {slack_escape(body)}" if body else "")
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}})
        blocks.append({"type": "divider"})
    if hidden > 0:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more_line(hidden)}]})
    return {"text": slack_escape(title), "blocks": blocks[:50]}


class SlackIntegration:
    """Posts notifications to one Slack incoming webhook."""

    kind: IntegrationKind = "slack"

    def __init__(self, config: ChatReceiver, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client

    async def send(self, notification: Notification) -> None:
        """POST the Block Kit message once; raise DeliveryError on failure."""
        body = encode(slack_message(notification))
        await post(
            self.client,
            str(self.config.url),
            content=body,
            headers={"content-type": "application/json"},
            timeout=self.config.timeout.total_seconds(),
            what="slack",
        )
