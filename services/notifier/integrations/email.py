"""Email over SMTP: multipart text and HTML from Jinja2 templates a user can override.

- Security: ``none``, ``starttls`` or implicit ``tls``; optional authentication; several recipients.
  Under ``starttls`` and ``tls`` the server certificate is verified (the system's CAs, or
  ``ca_file`` for a private CA; ``insecure_skip_verify`` turns that off and is dangerous), and a
  failed handshake or a server that does not offer STARTTLS fails the attempt: never a fallback to
  clear text. A certificate that fails verification is not retried (dead-lettered at once, with the
  reason; ``veille dlq replay`` once the configuration is fixed).
- Escaping: the HTML template is rendered with autoescaping (mention text can carry no markup).
- Headers: nothing from a mention or an alert reaches a header unneutralised. The subject is
  rendered then passed through :func:`~services.notifier.render.header_text`: one line (CR, LF,
  control characters and Unicode line separators become spaces) and no RFC 2047 encoded word
  (``=?`` becomes ``= ?``), because the email package decodes an encoded word in a value it is
  given and Pythons without the fix of CVE-2024-6923 (before 3.11.10, 3.12.5; 3.13.0 has it) fold
  the decoded CR/LF into the header block as they are. Then the serialized message is checked
  (:func:`verify_header_block`): exactly the headers set, no stray CR or LF, or the mail is not sent
  (dead-lettered at once, with the reason). Those bytes are the ones sent.
  :func:`python_header_gaps` probes the interpreter; the notifier warns at startup and exports
  ``veille_notifier_python_vulnerable{cve}`` on one that lacks the fix.
- User templates are rendered in Jinja2's sandbox.
- ``Message-ID`` is derived from the notification id (stable across retries and replays) and
  ``References`` from the group key, so mail clients thread a group and can drop a repeat; both end
  in the From address's domain. The HTML ``lang`` is the alerts' language
  when they agree on one (a French mention's mail is marked French), else ``en`` (the template's).
- Errors: 4xx replies, disconnections and time-outs are retried; 5xx replies (including a refused
  login or recipient) are not.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import smtplib
import ssl
from collections import Counter
from collections.abc import Sequence
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import SMTP, default
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any

import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from services.notifier.delivery import DeliveryError
from services.notifier.model import Clock, IntegrationKind, Notification
from services.notifier.render import (
    alert_facts,
    header_hazards,
    header_text,
    linkable_url,
    one_line,
    title_of,
    veille_url,
)
from veille.config import EmailReceiver

__all__ = [
    "HEADER_CVES",
    "EmailIntegration",
    "message_domain",
    "notification_lang",
    "python_header_gaps",
    "render_email",
    "tls_context",
    "verify_header_block",
]

log = structlog.get_logger("notifier")

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MAX_ALERTS = 20
TIMEOUT = 30.0


_LANG = re.compile(r"[a-z]{2,3}")
_DOMAIN = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
FALLBACK_DOMAIN = "veille.invalid"


def notification_lang(notification: Notification) -> str | None:
    """The language of a notification's alerts when they agree on one (``fr``), else ``None``.

    Alerts without a language (surges) do not vote; a mixed group has no single language.
    """
    langs = {a.lang.lower() for a in notification.alerts if a.lang}
    if len(langs) == 1:
        lang = langs.pop()
        if _LANG.fullmatch(lang):
            return lang
    return None


def message_domain(sender: str) -> str:
    """The domain of ``Message-ID`` and ``References``: the From address's (IDNA), or ``veille.invalid``.

    RFC 5322 wants the right side of a message id to be unique to the sender: the sender's domain
    is, where a bare ``@veille`` is not (and spam filters score it).
    """
    _, address = parseaddr(sender)
    domain = address.rpartition("@")[2].strip().rstrip(".")
    if domain and not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return FALLBACK_DOMAIN
    return domain.lower() if domain and _DOMAIN.fullmatch(domain) else FALLBACK_DOMAIN


def _environment(path: Path | None, *, html: bool) -> tuple[Environment, str]:
    if path is None:
        env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        return env, "email.html.j2" if html else "email.txt.j2"
    env = SandboxedEnvironment(loader=FileSystemLoader(path.parent), autoescape=html, keep_trailing_newline=True)
    return env, path.name


def render_email(config: EmailReceiver, notification: Notification, *, external_url: str = "") -> tuple[str, str, str]:
    """Return (subject, text body, HTML body) for ``notification``; ``external_url`` is linked ("…and N more")."""
    alerts, hidden = notification.listed(MAX_ALERTS)
    context: dict[str, Any] = {
        "notification": notification,
        "alerts": alerts,
        "hidden": hidden,
        "title": title_of(notification),
        "facts": alert_facts,
        "one_line": one_line,
        "safe_url": linkable_url,
        "lang": notification_lang(notification) or "en",
        "external_url": veille_url(external_url),
    }
    text_env, text_name = _environment(config.text_template, html=False)
    html_env, html_name = _environment(config.html_template, html=True)
    text = text_env.get_template(text_name).render(context)
    html = html_env.get_template(html_name).render(context)
    if config.subject_template:
        subject = SandboxedEnvironment(autoescape=False).from_string(config.subject_template).render(context)
    else:
        subject = context["title"]
    hazards = header_hazards(subject)
    if hazards:
        log.warning(
            "notifier.email_header_neutralised", header="Subject", hazards=hazards, notification_id=notification.id
        )
    return header_text(subject, 200), text, html


_PROBE_HEADER = "X-Veille-Probe"
HEADER_CVES = ("CVE-2024-6923",)
"""The interpreter flaws :func:`python_header_gaps` probes for."""


def python_header_gaps() -> list[str]:
    """The email-header CVEs this interpreter's email package is open to, found by trying them.

    CVE-2024-6923: an encoded word decoding to CR/LF in a header value is written out as a real line
    break (fixed in 3.8.20, 3.9.20, 3.10.15, 3.11.10, 3.12.5 and 3.13.0). veille's own
    neutralisation keeps its mails safe either way; this only tells operators to upgrade.
    """
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = f"=?utf-8?q?probe=0D=0A{_PROBE_HEADER}:_1?="
    try:
        raw = msg.as_bytes()
    except Exception:  # a fixed interpreter may refuse to write it at all: not open to it
        return []
    return ["CVE-2024-6923"] if BytesHeaderParser(policy=default).parsebytes(raw)[_PROBE_HEADER] is not None else []


_HEADER_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def verify_header_block(raw: bytes, expected: Sequence[str]) -> None:
    """Raise a non-retryable DeliveryError unless ``raw``'s header block holds exactly ``expected``.

    Each line of the block (up to the first empty line) ends with CRLF and carries no other CR or LF,
    and is either a continuation (starts with a space or a tab) or ``Name:`` with ``Name`` one of the
    headers the notifier set, each as many times as it set it. An injected header, a blank line
    that would push headers into the body, a bare CR or LF: each is refused, named in the reason.
    """
    head, sep, _ = raw.partition(b"\r\n\r\n")
    if not sep:
        raise DeliveryError("header injection refused: the serialized message has no end of headers", retryable=False)
    names: list[str] = []
    for line in head.split(b"\r\n"):
        if b"\r" in line or b"\n" in line:
            raise DeliveryError(f"header injection refused: a bare line break in {line[:80]!r}", retryable=False)
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise DeliveryError(f"header injection refused: not a header line: {line[:80]!r}", retryable=False)
        names.append(name.decode("ascii").lower())
    got, want = Counter(names), Counter(n.lower() for n in expected)
    if got != want:
        extra, missing = sorted((got - want).elements()), sorted((want - got).elements())
        raise DeliveryError(f"header injection refused: unexpected headers {extra}, missing {missing}", retryable=False)


def tls_context(config: EmailReceiver) -> ssl.SSLContext:
    """The client TLS context for ``config``: verifying against the system's CAs or ``ca_file``."""
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file is not None else None)
    if config.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _classify(exc: BaseException) -> DeliveryError:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"SMTP server certificate not trusted: {exc.verify_message or exc} (set ca_file for a private CA)",
            retryable=False,
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        retryable = all(400 <= code < 500 for code in codes)
        return DeliveryError(
            f"SMTP refused the recipients: {codes}", retryable=retryable, status=codes[0] if codes else None
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        message = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return DeliveryError(
            f"SMTP {exc.smtp_code}: {one_line(message, 200)}",
            retryable=400 <= exc.smtp_code < 500,
            status=exc.smtp_code,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"SMTP server does not support it: {exc}", retryable=False)
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError | TimeoutError):
        return DeliveryError(f"SMTP server unreachable: {type(exc).__name__}: {exc}", retryable=True)
    if isinstance(exc, smtplib.SMTPException):
        return DeliveryError(f"SMTP error: {type(exc).__name__}: {exc}", retryable=True)
    return DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)


class EmailIntegration:
    """Sends notifications to the recipients of one email receiver."""

    kind: IntegrationKind = "email"

    def __init__(self, config: EmailReceiver, *, password: str | None, clock: Clock, external_url: str = "") -> None:
        self.config = config
        self.password = password
        self.clock = clock
        self.external_url = external_url
        host, _, port = config.smarthost.rpartition(":")
        self.host = host or config.smarthost
        self.port = int(port) if port.isdigit() else (465 if config.security == "tls" else 25)
        self.context = tls_context(config)

    def message(self, notification: Notification) -> EmailMessage:
        """The multipart message for ``notification``."""
        subject, text, html = render_email(self.config, notification, external_url=self.external_url)
        msg = EmailMessage(policy=SMTP)
        msg["Subject"] = subject
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = formatdate(self.clock().timestamp(), usegmt=True)
        notification_id = header_text(notification.id, 200)  # from the bus (a replay): neutralised too
        domain = message_domain(self.config.sender)
        msg["Message-ID"] = f"<{notification_id}@{domain}>"
        thread = hashlib.sha256(f"{notification.target}\x1f{notification.group_key}".encode()).hexdigest()[:24]
        msg["References"] = f"<group-{thread}@{domain}>"
        msg["X-Veille-Notification-Id"] = notification_id
        msg["X-Veille-Status"] = header_text(notification.status, 20)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text, subtype="plain", charset="utf-8")
        msg.add_alternative(html, subtype="html", charset="utf-8")
        return msg

    def serialize(self, msg: EmailMessage) -> tuple[bytes, list[str]]:
        """The bytes to send and the MAIL options, as ``smtplib.send_message`` makes them, header block verified."""
        international = any(not address.isascii() for address in (self.config.sender, *self.config.to))
        raw = msg.as_bytes(policy=SMTP.clone(utf8=True)) if international else msg.as_bytes()
        verify_header_block(raw, msg.keys())
        return raw, (["SMTPUTF8", "BODY=8BITMIME"] if international else [])

    def _send_blocking(self, raw: bytes, options: list[str]) -> None:
        context = self.context
        client: smtplib.SMTP
        if self.config.security == "tls":
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT)
        with client:
            client.ehlo()
            if self.config.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if self.config.username:
                client.login(self.config.username, self.password or "")
            client.sendmail(self.config.sender, list(self.config.to), raw, mail_options=options)

    async def send(self, notification: Notification) -> None:
        """Render, verify and send the email once; raise DeliveryError on failure."""
        try:
            raw, options = self.serialize(self.message(notification))
        except DeliveryError:
            raise
        except Exception as exc:  # a template or the email package refusing the message: no retry helps
            raise DeliveryError(
                f"email not built: {type(exc).__name__}: {one_line(str(exc), 200)}", retryable=False
            ) from exc
        try:
            await asyncio.to_thread(self._send_blocking, raw, options)
        except Exception as exc:
            raise _classify(exc) from exc
