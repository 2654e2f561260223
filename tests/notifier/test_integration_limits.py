"""The integrations' limits: Teams' 28 KB, Slack's text cut, one URL rule, the email's language and ids."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest
from nats.js import JetStreamContext

from services.notifier.integrations import teams
from services.notifier.integrations.email import EmailIntegration
from services.notifier.integrations.slack import slack_message
from services.notifier.integrations.teams import teams_message
from services.notifier.model import Notification
from services.notifier.payload import encode, veille_body
from tests.notifier.conftest import SCHEMA, T0, AppFactory, make_alert, publish_alert, validate_payload
from tests.notifier.test_email import Inbox, mail_config, smtp  # noqa: F401 - the SMTP server fixture
from veille.models import AlertRaised, SampleMention

LONG = "https://news.example/" + "a" * 2020
"""A URL longer than the shared rule links (the models already drop those over 2,048 characters)."""


def notification(alerts: list[AlertRaised], integration: str = "slack") -> Notification:
    """A firing notification carrying ``alerts``."""
    return Notification.model_validate(
        {
            "id": "msg_0123abcd",
            "target": "crisis/0",
            "receiver": "crisis",
            "integration": integration,
            "group_key": "{}:{watch=acme}",
            "status": "firing",
            "seq": 1,
            "alerts": alerts,
            "created_at": T0,
        }
    )


def heavy_alert(i: int, url: str, text: str) -> AlertRaised:
    """A spike alert with every field at its longest: long terms and sources, five samples with ``url``."""
    samples = [
        SampleMention(id=f"rss:{i}:{j}", source="rss", url=url, title=text, text=text).model_dump() for j in range(5)
    ]
    return make_alert(
        f"alert-heavy-{i}",
        kind="negative_spike",
        text=text,
        observed=500,
        expected=20,
        negative_share=0.9,
        mention_count=500,
        top_terms=[text[:80]] * 10,
        top_sources=[text[:80]] * 10,
        samples=samples,
    )


def mrkdwn_texts(message: dict[str, Any]) -> list[str]:
    """Every mrkdwn text of a Block Kit message."""
    out = []
    for block in message["blocks"]:
        if block["type"] == "section":
            out.append(block["text"]["text"])
        elif block["type"] == "context":
            out.extend(e["text"] for e in block["elements"])
    return out


def test_a_teams_card_too_big_lists_fewer_alerts_and_counts_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the card would pass the size limit it lists fewer alerts, samples and buttons, and says how many more."""
    monkeypatch.setattr(teams, "MAX_BYTES", 8000)
    text = "*_[x](y)|" * 200
    alerts = [heavy_alert(i, "https://news.example/" + "a" * 1900 + str(i), text) for i in range(5)]
    body = encode(teams_message(notification(alerts, "teams")))
    assert len(body) <= 8000, len(body)
    assert "more alert(s)" in body.decode()
    monkeypatch.undo()
    worst = [heavy_alert(i, "https://news.example/" + "a" * 1970 + str(i), "危機" * 400) for i in range(5)]
    assert len(encode(teams_message(notification(worst, "teams")))) <= teams.MAX_BYTES < 28 * 1024


@pytest.mark.parametrize("url_length", range(1990, 1995))
def test_slack_cuts_text_before_building_links_and_entities(url_length: int) -> None:
    """Every mrkdwn text fits 2,900 characters with its `<url|title>` links and `&amp;` entities whole."""
    text = "&" * 300
    url = "https://news.example/" + "b" * (url_length - 21)
    message = slack_message(notification([heavy_alert(0, url, text), heavy_alert(1, LONG, "Acme & Co <x> " * 30)]))
    for mrkdwn in mrkdwn_texts(message):
        assert len(mrkdwn) <= 2900
        assert re.fullmatch(r"(?:[^&]|&amp;|&lt;|&gt;)*", mrkdwn, re.S), mrkdwn[-40:]
        unquoted = re.sub(r"^> ", "", mrkdwn, flags=re.M)
        opened = unquoted.count("<")
        assert opened == unquoted.count(">") == len(re.findall(r"<https?://[^<>|]+\|[^<>]*>", unquoted))


@pytest.mark.parametrize("url", ["https://news.example/a|b", "https://news.example/a>b", "javascript:alert(1)", LONG])
async def test_one_url_rule_for_email_slack_and_teams(url: str) -> None:
    """A URL Slack cannot link (`|`, `>`, not http(s), too long) is a link in no integration."""
    alert = make_alert(
        "alert-url", samples=[SampleMention(id="rss:u", source="rss", url=url, text="Acme").model_dump()]
    )
    slack = slack_message(notification([alert]))
    assert not any(f"<{url}|" in t for t in mrkdwn_texts(slack))
    card = teams_message(notification([alert], "teams"))["attachments"][0]["content"]
    assert "actions" not in card
    config = mail_config(25).receivers[0].email[0]
    html = EmailIntegration(config, password=None, clock=lambda: T0).message(notification([alert], "email"))
    body = html.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "href=" not in body


async def test_a_french_alert_mails_in_french_with_the_senders_domain(
    js: JetStreamContext,
    smtp: tuple[Inbox, int],  # noqa: F811 - the fixture imported above
    notifier_factory: AppFactory,
) -> None:
    """Over real SMTP, a French alert's mail says lang="fr" and its Message-ID ends in the From domain."""
    inbox, port = smtp
    await notifier_factory(mail_config(port))
    await publish_alert(js, make_alert("alert-fr", lang="fr", text="Acme : la panne est une catastrophe"))
    await inbox.wait(1)
    [msg] = inbox.messages()
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert '<html lang="fr">' in html
    assert msg["Message-ID"].startswith("<msg_") and msg["Message-ID"].endswith("@example.org>")
    assert msg["References"].endswith("@example.org>")
    assert "@veille>" not in str(msg)


def test_payloads_are_checked_for_date_time_formats() -> None:
    """The tests' schema check refuses an impossible date-time that a format-blind check lets through."""
    payload = json.loads(encode(veille_body(notification([make_alert("alert-format")], "webhook"))))
    validate_payload(payload)
    for field in ("timestamp", "started_at"):
        bad = copy.deepcopy(payload)
        if field == "timestamp":
            bad["timestamp"] = "2026-02-30T25:00:00Z"
        else:
            bad["data"]["alerts"][0]["started_at"] = "yesterday"
        jsonschema.validate(bad, SCHEMA)  # format-blind: passes
        with pytest.raises(jsonschema.ValidationError, match="date-time"):
            validate_payload(bad)
