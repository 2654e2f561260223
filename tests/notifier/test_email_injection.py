"""Header injection through a mention title, on a real SMTP conversation (aiosmtpd on 127.0.0.1).

The email package decodes RFC 2047 encoded words in a value it is given, and Pythons before the fix
of CVE-2024-6923 (3.11.7 here) fold the decoded CR/LF into the header block as they are: a title
``=?utf-8?q?x=0D=0AReply-To:_a@evil.example=0D=0A=0D=0Abody?=`` then delivers a mail with a
forged ``Reply-To`` and a replaced body. Every mail below must arrive with exactly the headers the
notifier meant, whatever the title.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from nats.js import JetStreamContext

from services.notifier.delivery import DeliveryError
from services.notifier.integrations.email import EmailIntegration, python_header_gaps, verify_header_block
from services.notifier.model import Notification
from services.notifier.render import header_text
from tests.notifier.conftest import AppFactory, make_alert, publish_alert
from veille.config import parse_config
from veille.natsserver import free_port

EXPECTED_HEADERS = Counter(
    [
        "auto-submitted",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "references",
        "subject",
        "to",
        "x-veille-notification-id",
        "x-veille-status",
    ]
)
FOOTER = "Sent by veille to crisis"

ENCODED_CRLF = "=?utf-8?q?x=0D=0AReply-To:_a@evil.example=0D=0A=0D=0Abody?="
B64_CRLF = "=?utf-8?b?" + base64.b64encode(b"y\r\nReply-To: b@evil.example\r\n\r\nbody").decode() + "?="
HOSTILE_TITLES = {
    "encoded word with CRLF": ENCODED_CRLF,
    "base64 encoded word with CRLF": B64_CRLF,
    "raw CRLF": "Acme\r\nReply-To: c@evil.example\r\n\r\nbody",
    "bare LF and CR": "Acme\nBcc: d@evil.example\rX-Injected: yes",
    "unicode line separators": "Acme\u2028Reply-To: e@evil.example\u0085\u2029body",
    "encoded word near a fold point": "Acmé " * 9 + "x" * 7 + " " + ENCODED_CRLF + " tail " + "é" * 30,
    "long title then encoded word": "word " * 30 + ENCODED_CRLF,
    "nested encoded word": "=?utf-8?q?=3D=3Futf-8=3Fq=3Fx=3D0D=3D0AReply-To:_f@evil.example=3F=3D?=",
    "encoded LF only": "=?utf-8?q?Acme=0AReply-To:_g@evil.example?=",
    "encoded word in a Latin-1 charset": "=?iso-8859-1?q?z=0D=0AReply-To:_h@evil.example?=",
}


class Inbox:
    """An aiosmtpd handler keeping every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"

    async def wait(self, count: int, timeout: float = 15.0) -> None:
        async def poll() -> None:
            while len(self.envelopes) < count:  # noqa: ASYNC110 - aiosmtpd runs in its own thread
                await asyncio.sleep(0.02)

        await asyncio.wait_for(poll(), timeout)


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Inbox, int]]:
    """An SMTP server on a free loopback port (module-wide: the property test sends many mails)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def mail_yaml(port: int) -> str:
    return f"""
version: 1
watches: [{{name: acme, query: acme}}]
receivers:
  - name: crisis
    email:
      - to: [alice@example.org]
        from: veille@example.org
        smarthost: 127.0.0.1:{port}
route:
  receiver: crisis
  group_by: ["..."]  # every label: the "case" label of each hostile alert makes its own group
  group_wait: 0s
"""


def summary(title: str) -> str:
    """The summary the classifier builds from a negative mention's title."""
    return f"Negative mention of acme on news.example: {title}"


def received(envelope: Envelope) -> tuple[EmailMessage, list[str]]:
    """The message as a mail client parses it, and the names of the raw header lines."""
    content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
    msg = email.message_from_bytes(content, policy=email.policy.default)
    head = content.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0].decode(errors="replace").lower() for line in head.split(b"\r\n")]
    return msg, [n for n in names if n[:1] not in (" ", "\t")]


def assert_intact(envelope: Envelope) -> EmailMessage:
    """Exactly the notifier's headers, one Subject on one logical line, both body parts whole."""
    msg, names = received(envelope)
    assert Counter(k.lower() for k in msg) == EXPECTED_HEADERS, msg.keys()
    assert Counter(names) == EXPECTED_HEADERS, names
    assert msg["Reply-To"] is None and msg["Bcc"] is None and msg["X-Injected"] is None
    subject = str(msg["Subject"])
    assert not any(c in subject for c in "\r\n\x85\u2028\u2029"), subject
    assert subject.startswith("[veille] FIRING: acme")
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert text.startswith("[veille] FIRING: acme") and FOOTER in text
    assert html.startswith("<!doctype html>") and FOOTER in html
    return msg


async def test_hostile_titles_arrive_with_exactly_the_notifier_headers(
    js: JetStreamContext, smtp: tuple[Inbox, int], notifier_factory: AppFactory
) -> None:
    """Each hostile mention title goes through the notifier and arrives with no forged header and its body whole."""
    inbox, port = smtp
    start = len(inbox.envelopes)
    await notifier_factory(parse_config(mail_yaml(port)))
    for i, title in enumerate(HOSTILE_TITLES.values()):
        await publish_alert(
            js, make_alert(f"hostile-{i}", text=title, summary=summary(title), labels={"case": f"c{i}"})
        )
    await inbox.wait(start + len(HOSTILE_TITLES))
    subjects = []
    for envelope in inbox.envelopes[start:]:
        subjects.append(str(assert_intact(envelope)["Subject"]))
    assert any("Reply-To:_a@evil.example" in s for s in subjects), "the hostile text is shown, inert"


def notification(title: str) -> Notification:
    """A notification of one negative mention whose title is ``title``."""
    alert = make_alert("prop", text="body text", summary=summary(title))
    return Notification(
        id="msg_0123456789abcdef0123456789",
        target="crisis.email.0",
        receiver="crisis",
        integration="email",
        group_key="{}:{}",
        status="firing",
        seq=1,
        alerts=[alert],
        created_at=datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
    )


FRAGMENTS = st.sampled_from(
    [
        "=?utf-8?q?",
        "=?utf-8?b?",
        "=?iso-8859-1?q?",
        "?=",
        "=0D=0A",
        "=0A",
        "DQo=",
        "Reply-To: a@evil.example",
        "Reply-To:_a@evil.example",
        "\r\n",
        "\n",
        "\r",
        "\u2028",
        "\u2029",
        "\x85",
        "\x0b\x0c\x1c",
        " ",
        "é",
        "😀",
        "x" * 40,
        ":",
        "=",
        "?",
        ENCODED_CRLF,
        B64_CRLF,
    ]
)
TITLES = st.one_of(
    st.text(),
    st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=30).map("".join),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3000, exclude_categories=())),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(title=TITLES)
@example(title=ENCODED_CRLF)
@example(title="Acme " * 14 + ENCODED_CRLF)
def test_no_title_changes_the_header_set(smtp: tuple[Inbox, int], title: str) -> None:
    """Whatever a mention title holds, the mail sent over SMTP has exactly the notifier's headers."""
    inbox, port = smtp
    config = parse_config(mail_yaml(port)).receivers[0].email[0]
    integration = EmailIntegration(config, password=None, clock=lambda: datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    start = len(inbox.envelopes)
    asyncio.run(integration.send(notification(title)))
    assert len(inbox.envelopes) == start + 1
    assert_intact(inbox.envelopes[-1])


@given(title=TITLES)
@settings(max_examples=300, deadline=None)
def test_header_text_is_one_line_without_encoded_words(title: str) -> None:
    """The neutralised header text has no line break, control character or encoded-word opener."""
    text = header_text(title, 200)
    assert "=?" not in text
    assert len(text) <= 200
    assert text.splitlines() in ([text], [])
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def test_a_broken_header_block_is_refused_before_sending() -> None:
    """A serialized header block with an extra or missing header is refused, naming the difference."""
    good = b"Subject: a\r\nFrom: v@example.org\r\n\r\nbody"
    verify_header_block(good, ["Subject", "From"])
    with pytest.raises(DeliveryError, match=r"unexpected headers \[.reply-to.\], missing \[.from.\]") as info:
        verify_header_block(
            b"Subject: x\r\nReply-To: a@evil.example\r\n\r\nbody\r\nFrom: v@example.org\r\n\r\n", ["Subject", "From"]
        )
    assert info.value.retryable is False
    with pytest.raises(DeliveryError, match="line break"):
        verify_header_block(b"Subject: x\nReply-To: a@evil.example\r\nFrom: v@example.org\r\n\r\n", ["Subject", "From"])


def test_the_interpreter_probe_matches_the_email_package() -> None:
    """The probe names CVE-2024-6923 exactly when the email package lacks its fix (verify_generated_headers)."""
    fixed = hasattr(email.policy.compat32, "verify_generated_headers")
    assert python_header_gaps() == ([] if fixed else ["CVE-2024-6923"])


async def test_a_vulnerable_python_is_reported_at_startup(
    js: JetStreamContext, smtp: tuple[Inbox, int], notifier_factory: AppFactory
) -> None:
    """On a Python without the fix the notifier exports it as a metric (and warns); with it, the gauge is 0."""
    _, port = smtp
    app = await notifier_factory(parse_config(mail_yaml(port)))
    value = app.metrics.registry.get_sample_value("veille_notifier_python_vulnerable", {"cve": "CVE-2024-6923"})
    assert value == (1.0 if python_header_gaps() else 0.0)
