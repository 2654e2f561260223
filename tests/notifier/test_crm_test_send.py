"""`veille test-send RECEIVER`: one sample notification through the receiver's real integrations, once.

Against loopback receivers: a scripted HTTP server (webhook, Slack's incoming-webhook answer "ok")
and an aiosmtpd SMTP server. The command is invoked with click's CliRunner in a worker thread (it
runs its own event loop, as on the command line) while the servers run on the test's loop.
"""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from click.testing import CliRunner, Result

from services.notifier import test_send as test_send_module
from tests.helpers.servers import verify_standard_webhook
from tests.notifier.conftest import SECRET, ScriptedReceiver, validate_payload
from veille.natsserver import free_port

COMMAND = test_send_module.test_send


def _config(tmp_path: Path, receivers: str) -> Path:
    path = tmp_path / "veille.yaml"
    path.write_text(
        f"""
version: 1
watches:
  - name: acme
    query: acme
receivers:
{receivers}
route:
  receiver: {receivers.split("name:")[1].split()[0]}
""",
        encoding="utf-8",
    )
    return path


async def _invoke(*args: str) -> Result:
    runner = CliRunner()
    return await asyncio.to_thread(runner.invoke, COMMAND, list(args), catch_exceptions=False)


async def test_a_webhook_gets_one_signed_sample_marked_as_a_test(tmp_path: Path, receiver: ScriptedReceiver) -> None:
    config = _config(
        tmp_path,
        f"""
  - name: crm
    webhook:
      - url: {receiver.url("veille")}
        secret: {SECRET}
        headers: {{Authorization: Bearer crm-token}}
""",
    )
    result = await _invoke("crm", "--config", str(config))

    assert result.exit_code == 0, result.output
    [hit] = receiver.hits
    assert hit.path == "/veille"
    assert verify_standard_webhook(SECRET, hit.headers, hit.body), "signed exactly as the notifier signs"
    assert hit.headers["Authorization"] == "Bearer crm-token"
    body = hit.json()
    validate_payload(body)
    data = body["data"]
    assert hit.headers["webhook-id"] == data["notification_id"]
    [alert] = data["alerts"]
    assert alert["kind"] == "negative_mention" and alert["status"] == "firing"
    assert alert["watch"] == "acme", "the configuration's first watch"
    assert alert["summary"].startswith("[TEST] ")
    assert alert["labels"]["test"] == "true"
    assert data["common_labels"]["test"] == "true" and data["group_labels"]["test"] == "true"
    line = result.output.strip()
    assert "\n" not in line
    assert line.startswith("crm.webhook.0: sent — HTTP 200 'ok' (id " + data["notification_id"])


async def test_kind_status_and_language_shape_the_sample(tmp_path: Path, receiver: ScriptedReceiver) -> None:
    config = _config(tmp_path, f"  - name: crm\n    webhook: [{{url: {receiver.url()}}}]\n")
    for args in (["--kind", "volume_spike", "--status", "resolved"], ["--lang", "fr"], ["--lang", "fr"]):
        result = await _invoke("crm", "--config", str(config), *args)
        assert result.exit_code == 0, result.output
    bodies = [hit.json() for hit in receiver.hits]
    for body in bodies:
        validate_payload(body)
    spike, french, again = (body["data"] for body in bodies)
    assert spike["status"] == "resolved"
    assert spike["alerts"][0]["kind"] == "volume_spike" and spike["alerts"][0]["ends_at"] is not None
    assert spike["alerts"][0]["observed"] > spike["alerts"][0]["expected"]
    assert french["alerts"][0]["lang"] == "fr"
    assert "Mention de test" in french["alerts"][0]["samples"][0]["title"]
    # each run is a new notification: a receiver that drops repeats by webhook-id keeps both
    assert french["notification_id"] != again["notification_id"]


async def test_a_failing_receiver_is_tried_once_and_the_command_fails(
    tmp_path: Path, receiver: ScriptedReceiver
) -> None:
    receiver.always = 503
    config = _config(tmp_path, f"  - name: crm\n    webhook: [{{url: {receiver.url()}}}]\n")
    result = await _invoke("crm", "--config", str(config))

    assert result.exit_code == 1
    assert len(receiver.attempts) == 1, "a test sends once: no retry"
    assert "crm.webhook.0: FAILED — webhook answered HTTP 503: nope (the notifier would retry this)" in result.output


async def test_a_rejecting_receiver_says_it_would_not_be_retried(tmp_path: Path, receiver: ScriptedReceiver) -> None:
    receiver.always = 401
    config = _config(tmp_path, f"  - name: crm\n    webhook: [{{url: {receiver.url()}}}]\n")
    result = await _invoke("crm", "--config", str(config))

    assert result.exit_code == 1
    assert "crm.webhook.0: FAILED — webhook answered HTTP 401: nope" in result.output
    assert "would retry" not in result.output


async def test_an_unreachable_receiver_fails_with_a_clear_line(tmp_path: Path) -> None:
    config = _config(tmp_path, f"  - name: crm\n    webhook: [{{url: 'http://127.0.0.1:{free_port()}/hook'}}]\n")
    result = await _invoke("crm", "--config", str(config))

    assert result.exit_code == 1
    assert "crm.webhook.0: FAILED — webhook unreachable: ConnectError" in result.output


async def test_every_integration_of_the_receiver_or_the_one_chosen(tmp_path: Path, receiver: ScriptedReceiver) -> None:
    """A Slack incoming webhook answers "ok"; a receiver's webhook and Slack entries are each sent one sample."""
    config = _config(
        tmp_path,
        f"""
  - name: ops
    webhook: [{{url: {receiver.url("hook")}}}]
    slack: [{{url: {receiver.url("slack")}}}]
""",
    )
    result = await _invoke("ops", "--config", str(config), "--kind", "negative_spike")
    assert result.exit_code == 0, result.output
    assert sorted(hit.path for hit in receiver.hits) == ["/hook", "/slack"]
    slack = next(hit for hit in receiver.hits if hit.path == "/slack").json()
    assert "[TEST]" in slack["blocks"][0]["text"]["text"]
    lines = result.output.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["ops.webhook.0", "ops.slack.0"]

    result = await _invoke("ops", "--config", str(config), "--integration", "slack")
    assert result.exit_code == 0, result.output
    assert [hit.path for hit in receiver.hits[2:]] == ["/slack"]

    result = await _invoke("ops", "--config", str(config), "--integration", "teams")
    assert result.exit_code == 2
    assert "receiver 'ops' has no integration 'teams' (its integrations: webhook.0, slack.0)" in result.output


class _Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    """A plain SMTP server on a free loopback port."""
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


async def test_an_email_receiver_gets_a_test_mail_in_french(tmp_path: Path, smtp: tuple[_Inbox, int]) -> None:
    inbox, port = smtp
    config = _config(
        tmp_path,
        f"""
  - name: crisis
    email:
      - to: [crisis@example.com]
        from: veille@alerts.example.com
        smarthost: 127.0.0.1:{port}
""",
    )
    result = await _invoke("crisis", "--config", str(config), "--lang", "fr")

    assert result.exit_code == 0, result.output
    assert result.output.startswith("crisis.email.0: sent — accepted by the SMTP server")
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["crisis@example.com"]
    message = email.message_from_bytes(envelope.content, policy=default)  # type: ignore[arg-type]
    assert "[TEST]" in message["Subject"]
    html = message.get_body(("html",))
    assert html is not None and 'lang="fr"' in html.get_content()


def test_configuration_mistakes_and_unknown_receivers_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    config = _config(tmp_path, "  - name: crm\n    webhook: [{url: 'http://127.0.0.1:9/x'}]\n")
    result = runner.invoke(COMMAND, ["nobody", "--config", str(config)])
    assert result.exit_code == 2
    assert f"no receiver 'nobody' in {config} (receivers: crm)" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nreceivers:\n  - name: crm\n    webhook: [{url: x, secret: my-secret}]\n")
    result = runner.invoke(COMMAND, ["crm", "--config", str(bad)])
    assert result.exit_code == 2
    assert "veille secret new" in result.output
    assert "Traceback" not in result.output
