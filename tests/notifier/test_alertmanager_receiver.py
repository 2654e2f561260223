"""The alertmanager receiver's configuration and HTTP manners, and external_url in every format.

These need no Alertmanager: check-config's answers, what reaches a loopback server standing in for
one (credentials, redirects), and the links veille puts in webhooks, Slack, Teams and email.
test_alertmanager.py checks the same receiver against the real Alertmanager.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from services.notifier.integrations.email import render_email
from services.notifier.model import Notification
from tests.notifier.conftest import AppFactory, ScriptedReceiver, make_alert, publish_alert, validate_payload
from tests.notifier.test_delivery import wait_dead_letters
from veille.config import ConfigError, parse_config

CONSOLE = "https://veille.example.com/console"


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_check_config_tells_every_alertmanager_and_external_url_mistake_at_once() -> None:
    """A bad external_url, quiet hours on an Alertmanager receiver, an endsAt shorter than the resend
    interval and two kinds of credentials are all told in one pass, each at its line, in words."""
    problems = _problems(
        """version: 1
external_url: ftp://veille.example.com
receivers:
  - name: pager
    quiet_hours: {start: "22:00", end: "07:00"}
    alertmanager:
      - url: http://alertmanager:9093
        resend_interval: 1m
        ends_after: 30s
      - url: http://alertmanager:9093
        basic_auth: {username: veille, password: pw}
        bearer_token: abc
route: {receiver: pager}
"""
    )
    by_field = {field: (line, message) for line, field, message in problems}
    assert by_field["external_url"][0] == 2 and "http" in by_field["external_url"][1]
    assert by_field["receivers[0].quiet_hours"][0] == 5
    assert "cannot wait for quiet hours" in by_field["receivers[0].quiet_hours"][1]
    assert by_field["receivers[0].alertmanager[0]"][0] == 7
    assert "must be longer than resend_interval" in by_field["receivers[0].alertmanager[0]"][1]
    assert "basic_auth or a bearer token, not both" in by_field["receivers[0].alertmanager[1]"][1]


def test_an_unreadable_bearer_token_file_is_a_config_mistake(tmp_path: Path) -> None:
    """check-config reads the token file as the notifier will, and says so when it cannot."""
    problems = _problems(
        f"""version: 1
receivers:
  - name: pager
    alertmanager: [{{url: "http://alertmanager:9093", bearer_token_file: "{tmp_path / "missing"}"}}]
route: {{receiver: pager}}
"""
    )
    assert any("bearer_token_file: cannot read" in message for _, _, message in problems)


async def test_credentials_are_sent_and_a_redirect_is_not_followed(
    tmp_path: Path, js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """Basic auth from a password file reaches the Alertmanager URL's /api/v2/alerts; a 307 is a dead
    letter after one attempt (alerts and credentials never go to another address)."""
    (tmp_path / "am-password").write_text("s3cret\n")
    config = parse_config(
        f"""version: 1
watches: [{{name: acme, query: acme}}]
receivers:
  - name: pager
    alertmanager:
      - url: {receiver.url("prefix")}
        basic_auth: {{username: veille, password_file: "{tmp_path / "am-password"}"}}
        headers: {{X-Scope-OrgID: comms, Authorization: "Bearer forged"}}
route: {{receiver: pager}}
""",
        env={},
    )
    receiver.script = [200, (307, {"location": "http://elsewhere.example/api/v2/alerts"})]
    await notifier_factory(config)
    await publish_alert(js, make_alert("alert-auth", raised_at=datetime.now(UTC)))
    [hit] = await receiver.wait_for(1)
    assert hit.path == "/prefix/api/v2/alerts"
    assert hit.headers["Authorization"] == "Basic " + base64.b64encode(b"veille:s3cret").decode()
    assert hit.headers["X-Scope-OrgID"] == "comms"
    [posted] = hit.json()
    assert set(posted) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert posted["generatorURL"] == "https://news.example/a"  # no external_url: the mention itself
    assert posted["labels"]["alert_id"] == "alert-auth"

    await publish_alert(js, make_alert("alert-moved", watch="acme", kind="volume_spike", raised_at=datetime.now(UTC)))
    [entry] = await wait_dead_letters(js, 1)
    assert "redirecting to http://elsewhere.example" in entry.letter.reason
    assert len(receiver.attempts) == 2


async def test_external_url_reaches_every_format(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """external_url is the veille body's external_url, the Alertmanager body's externalURL and every
    alert's generatorURL, Slack's and Teams' "Open in veille" link."""
    config = parse_config(
        f"""version: 1
external_url: {CONSOLE}
watches: [{{name: acme, query: acme}}]
receivers:
  - name: all
    webhook:
      - url: {receiver.url("veille")}
      - url: {receiver.url("am")}
        format: alertmanager
    slack: [{{url: "{receiver.url("slack")}"}}]
    teams: [{{url: "{receiver.url("teams")}"}}]
route: {{receiver: all, group_wait: 0s}}
""",
        env={},
    )
    await notifier_factory(config)
    await publish_alert(js, make_alert("alert-linked"))
    hits = {hit.path: hit.json() for hit in await receiver.wait_for(4)}
    validate_payload(hits["/veille"])
    assert hits["/veille"]["data"]["external_url"] == CONSOLE
    assert hits["/am"]["externalURL"] == CONSOLE and hits["/am"]["alerts"][0]["generatorURL"] == CONSOLE
    slack_links = [e["text"] for b in hits["/slack"]["blocks"] if b["type"] == "context" for e in b["elements"]]
    assert f"<{CONSOLE}|Open in veille>" in slack_links
    actions = hits["/teams"]["attachments"][0]["content"]["actions"]
    assert {"type": "Action.OpenUrl", "title": "Open in veille", "url": CONSOLE} in actions


def test_the_emails_and_n_more_line_links_to_external_url() -> None:
    """An email leaving alerts out links its "…and N more alert(s)" to external_url, in HTML and text."""
    alerts = [make_alert(f"alert-{i}") for i in range(3)]
    notification = Notification(
        id="msg_0",
        target="crisis.email.0",
        receiver="crisis",
        integration="email",
        group_key="k",
        group_labels={"watch": "acme"},
        status="firing",
        seq=0,
        alerts=alerts,
        truncated=40,
        created_at=alerts[0].raised_at,
    )
    config = parse_config(
        "version: 1\nreceivers: [{name: crisis, email: [{to: [crisis@example.com]}]}]\nroute: {receiver: crisis}\n",
        env={},
    )
    email = config.receivers[0].email[0]
    _, text, html = render_email(email, notification, external_url=CONSOLE)
    assert f'<a href="{CONSOLE}">…and 40 more alert(s)</a>' in html
    assert f"…and 40 more alert(s): {CONSOLE}" in text
    _, text, html = render_email(email, notification)
    assert "…and 40 more alert(s)." in text and CONSOLE not in html
