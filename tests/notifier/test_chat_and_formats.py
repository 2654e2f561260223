"""Slack, Teams, Alertmanager-format and templated webhooks, received by a real loopback server."""

from __future__ import annotations

import json

from nats.js import JetStreamContext

from tests.notifier.conftest import AppFactory, ScriptedReceiver, make_alert, publish_alert
from veille.config import parse_config

HOSTILE = "<!channel> <http://evil.example|click here> & **bold** [link](http://evil.example)"


def config_for(receiver: ScriptedReceiver) -> object:
    return parse_config(
        f"""
version: 1
watches: [{{name: acme, query: acme}}]
receivers:
  - name: chat
    slack: [{{url: "{receiver.url("slack")}"}}]
    teams: [{{url: "{receiver.url("teams")}"}}]
    webhook:
      - url: {receiver.url("am")}
        format: alertmanager
      - url: {receiver.url("tpl")}
        body_template: '{{"text": {{{{ data.alerts[0].summary | tojson }}}}, "n": {{{{ data.firing_count }}}}}}'
route:
  receiver: chat
  group_wait: 0s
""",
        env={},
    )


async def test_each_integration_gets_its_own_readable_escaped_body(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """One alert reaches Slack (Block Kit), Teams (Adaptive Card), Alertmanager v4 and a templated webhook."""
    await notifier_factory(config_for(receiver))
    await publish_alert(js, make_alert("alert-chat", text=HOSTILE))
    hits = {hit.path: hit for hit in await receiver.wait_for(4)}
    assert set(hits) == {"/slack", "/teams", "/am", "/tpl"}

    slack = hits["/slack"].json()
    assert "webhook-signature" not in hits["/slack"].headers
    assert slack["blocks"][0]["type"] == "header" and len(slack["blocks"]) <= 50
    mrkdwn = json.dumps([b for b in slack["blocks"] if b["type"] != "header"])  # header is plain_text: inert
    assert "<!channel>" not in mrkdwn and "&lt;!channel&gt;" in mrkdwn
    assert "<http://evil.example|" not in mrkdwn
    assert "<https://news.example/a|Acme down>" in mrkdwn

    teams = hits["/teams"].json()
    card = teams["attachments"][0]["content"]
    assert teams["type"] == "message" and card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    texts = json.dumps(card["body"])
    assert "\\\\[link" in texts and "\\\\*\\\\*bold\\\\*\\\\*" in texts
    assert card["actions"][0] == {"type": "Action.OpenUrl", "title": "Acme down", "url": "https://news.example/a"}

    am = hits["/am"].json()
    assert am["version"] == "4" and am["alerts"][0]["labels"]["alertname"] == "negative_mention"

    tpl = hits["/tpl"].json()
    assert tpl["n"] == 1 and tpl["text"].startswith("Negative mention of acme")
