"""Email on a real SMTP conversation: an aiosmtpd server on 127.0.0.1 receives the notification."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope
from nats.js import JetStreamContext

from tests.notifier.conftest import AppFactory, ManualClock, RecordingSleep, make_alert, publish_alert, settled
from veille.config import parse_config
from veille.natsserver import free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


class Inbox:
    """An aiosmtpd handler keeping every envelope; can answer 451 a few times first."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.fail_first = 0
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        if self.fail_first > 0:
            self.fail_first -= 1
            return "451 4.3.0 try again later"
        self.envelopes.append(envelope)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((login, password))
        return AuthResult(success=(login, password) == ("veille", "s3cret"))

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(e.content, policy=default) for e in self.envelopes]  # type: ignore[misc]

    async def wait(self, count: int, timeout: float = 15.0) -> None:
        async def poll() -> None:
            while len(self.envelopes) < count:  # noqa: ASYNC110 - aiosmtpd runs in its own thread
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server with AUTH (allowed without TLS on loopback) on a free port."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mail_config(port: int, extra: str = "") -> Any:
    return parse_config(
        f"""
version: 1
watches: [{{name: acme, query: acme}}]
receivers:
  - name: crisis
    email:
      - to: [alice@example.org, bob@example.org]
        from: veille@example.org
        smarthost: 127.0.0.1:{port}
        username: veille
        password: ${{SMTP_PASSWORD}}
{extra}
route:
  receiver: crisis
  group_wait: 0s
""",
        env={"SMTP_PASSWORD": "s3cret"},
    )


HOSTILE = '<script>alert("x")</script> Acme\r\nBcc: victim@evil.example\r\nX-Injected: yes'


async def test_email_carries_both_parts_escaped_and_no_injected_header(
    js: JetStreamContext, smtp: tuple[Inbox, int], notifier_factory: AppFactory
) -> None:
    """The email reaches both recipients with text and HTML parts; mention markup is escaped, CR/LF inert."""
    inbox, port = smtp
    await notifier_factory(mail_config(port))
    await publish_alert(js, make_alert("alert-mail", text=HOSTILE))
    await inbox.wait(1)
    envelope = inbox.envelopes[0]
    assert sorted(envelope.rcpt_tos) == ["alice@example.org", "bob@example.org"]
    assert inbox.logins == [("veille", "s3cret")]
    [msg] = inbox.messages()
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Subject"].startswith("[veille] FIRING: acme")
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert msg["Message-ID"].startswith("<msg_")
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Negative mention of acme" in text and "https://news.example/a" in text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert 'href="https://news.example/a"' in html
    raw = envelope.content.decode() if isinstance(envelope.content, bytes) else str(envelope.content)
    header_block = raw.split("\r\n\r\n", 1)[0]
    header_names = [line.split(":", 1)[0].lower() for line in header_block.split("\r\n") if not line[:1].isspace()]
    assert "bcc" not in header_names and "x-injected" not in header_names
    assert "\nBcc:" not in text  # the summary is shown on one line in the text part too


async def test_temporary_smtp_failure_is_retried(
    js: JetStreamContext, smtp: tuple[Inbox, int], notifier_factory: AppFactory
) -> None:
    """A 451 reply is retried and the email is then delivered once."""
    inbox, port = smtp
    inbox.fail_first = 2
    sleep = RecordingSleep()
    app = await notifier_factory(mail_config(port), sleep=sleep)
    await publish_alert(js, make_alert("alert-451"))
    await inbox.wait(1)
    await app.dispatcher.drain()
    assert len(sleep.delays) == 2
    assert app.notifier_metrics.notifications.labels("crisis", "email", "sent")._value.get() == 1


async def test_user_templates_override_the_defaults(
    js: JetStreamContext, smtp: tuple[Inbox, int], notifier_factory: AppFactory, tmp_path: Any
) -> None:
    """A user's text and HTML templates and subject template are used, HTML still autoescaped."""
    inbox, port = smtp
    (tmp_path / "mail.txt").write_text("TEXT {{ alerts[0].samples[0].text }}")
    (tmp_path / "mail.html").write_text("<p>HTML {{ alerts[0].samples[0].text }}</p>")
    extra = f"""        text_template: {tmp_path / "mail.txt"}
        html_template: {tmp_path / "mail.html"}
        subject_template: "Alerte {{{{ notification.group_labels.watch }}}}: {{{{ alerts[0].samples[0].text }}}}"
"""
    await notifier_factory(mail_config(port, extra))
    await publish_alert(js, make_alert("alert-tpl", text="<b>bad</b>\nSubject: forged"))
    await inbox.wait(1)
    [msg] = inbox.messages()
    assert msg["Subject"] == "Alerte acme: <b>bad</b> Subject: forged"
    assert msg.get_body(("plain",)).get_content().startswith("TEXT <b>bad</b>")  # type: ignore[union-attr]
    assert "<p>HTML &lt;b&gt;bad&lt;/b&gt;" in msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


async def test_digest_mode_sends_one_email_per_interval_per_group(
    js: JetStreamContext, smtp: tuple[Inbox, int], notifier_factory: AppFactory
) -> None:
    """With `digest: 1h`, alerts of one group within the hour arrive together in one email, at the hour."""
    inbox, port = smtp
    clock = ManualClock()
    app = await notifier_factory(mail_config(port, "        digest: 1h\n"), clock=clock)

    async def flush() -> None:
        await settled(js)
        await app.flush_due()
        await app.dispatcher.drain()

    await publish_alert(js, make_alert("digest-1", text="first acme mention"))
    await flush()
    clock.advance(minutes=20)
    await publish_alert(js, make_alert("digest-2", text="second acme mention"))
    await flush()
    clock.advance(minutes=30)
    await flush()
    assert inbox.envelopes == [], "nothing before the digest interval is over"
    clock.advance(minutes=11)
    await flush()
    await inbox.wait(1)
    [msg] = inbox.messages()
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "first acme mention" in text and "second acme mention" in text

    clock.advance(minutes=10)
    await publish_alert(js, make_alert("digest-3", text="third acme mention"))
    await flush()
    clock.advance(minutes=30)
    await flush()
    assert len(inbox.envelopes) == 1, "the next digest waits for the next interval"
    clock.advance(minutes=35)
    await flush()
    await inbox.wait(2)
    latest = inbox.messages()[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "third acme mention" in latest and "first acme mention" not in latest
