"""Microsoft Teams: a workflow webhook ("Post to a channel when a webhook request is received") with an
Adaptive Card (version 1.4, full width, wrapped text: readable on a phone).

Mention text is Markdown-escaped; links are only emitted as ``Action.OpenUrl`` for http(s) URLs.
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
    teams_escape,
    title_of,
    veille_url,
)
from veille.config import ChatReceiver

__all__ = ["MAX_BYTES", "TeamsIntegration", "teams_message"]

MAX_ALERTS = 5
MAX_SAMPLES = 2
MAX_ACTIONS = 4
MAX_BYTES = 27_000
"""Largest body posted: Teams refuses a message over 28 KB, so the card lists fewer alerts until it fits."""
_SHAPES = ((MAX_ALERTS, MAX_SAMPLES, MAX_ACTIONS), (3, 1, 2), (1, 1, 1), (1, 0, 0))


def teams_message(notification: Notification, *, external_url: str = "") -> dict[str, Any]:
    """The workflow-webhook body: one message carrying one Adaptive Card, at most :data:`MAX_BYTES` encoded.

    Every text is cut (and a URL longer than the shared rule allows is not made a button); when the
    card is still too big (many long facts, non-Latin scripts take three bytes a character), it is
    rebuilt listing fewer alerts, samples and buttons, the rest told as "…and N more". With an
    ``external_url``, an "Open in veille" button links to it.
    """
    message: dict[str, Any] = {}
    for alerts, samples, actions in _SHAPES:
        message = _message(notification, alerts, samples, actions, veille_url(external_url))
        if len(encode(message)) <= MAX_BYTES:
            break
    return message


def _message(
    notification: Notification, max_alerts: int, max_samples: int, max_actions: int, url: str = ""
) -> dict[str, Any]:
    resolved = notification.status == "resolved"
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": teams_escape(title_of(notification)),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "color": "Good" if resolved else "Attention",
        }
    ]
    actions: list[dict[str, Any]] = []
    shown, hidden = notification.listed(max_alerts)
    for alert in shown:
        body.append(
            {
                "type": "TextBlock",
                "text": teams_escape(one_line(alert.summary, 300)),
                "wrap": True,
                "separator": True,
                "weight": "Bolder",
            }
        )
        facts = [{"title": one_line(k, 40), "value": teams_escape(one_line(v, 120))} for k, v in alert_facts(alert)]
        body.append({"type": "FactSet", "facts": facts})
        for sample in alert.samples[:max_samples]:
            text = one_line(sample.title or sample.text, 200)
            body.append({"type": "TextBlock", "text": "“" + teams_escape(text) + "”", "wrap": True, "isSubtle": True})
            if sample.url and linkable_url(sample.url) and len(actions) < max_actions:
                actions.append({"type": "Action.OpenUrl", "title": one_line(text, 40), "url": sample.url})
    if hidden > 0:
        body.append({"type": "TextBlock", "text": more_line(hidden), "isSubtle": True, "wrap": True})
    if url:
        actions.insert(0, {"type": "Action.OpenUrl", "title": OPEN_VEILLE, "url": url})
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


class TeamsIntegration:
    """Posts notifications to one Teams workflow webhook."""

    kind: IntegrationKind = "teams"

    def __init__(self, config: ChatReceiver, client: httpx.AsyncClient, *, external_url: str = "") -> None:
        self.config = config
        self.client = client
        self.external_url = external_url

    async def send(self, notification: Notification) -> None:
        """POST the Adaptive Card once; raise DeliveryError on failure (workflows answer 202)."""
        body = encode(teams_message(notification, external_url=self.external_url))
        await post(
            self.client,
            str(self.config.url),
            content=body,
            headers={"content-type": "application/json"},
            timeout=self.config.timeout.total_seconds(),
            what="teams",
        )
