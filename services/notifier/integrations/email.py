"""Email over SMTP: multipart text and HTML from Jinja2 templates a user can override.

- Security: ``none``, ``starttls`` or implicit ``tls``; optional authentication; several recipients.
  Under ``starttls`` and ``tls`` the server certificate is verified (the system's CAs, or
  ``ca_file`` for a private CA; ``insecure_skip_verify`` turns that off and is dangerous), and a
  failed handshake or a server that does not offer STARTTLS fails the attempt: never a fallback to
  clear text. A certificate that fails verification is not retried (dead-lettered at once, with the
  reason; ``veille dlq replay`` once the configuration is fixed).
- Escaping: the HTML template is rendered with autoescaping (mention text can carry no markup), the
  subject is rendered then collapsed to one line (no header injection: CR, LF and other control
  characters become spaces, and :mod:`email.policy` refuses any line break that would remain).
- User templates are rendered in Jinja2's sandbox.
- ``Message-ID`` is derived from the notification id (stable across retries and replays) and
  ``References`` from the group key, so mail clients thread a group and can drop a repeat.
- Errors: 4xx replies, disconnections and time-outs are retried; 5xx replies (including a refused
  login or recipient) are not.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from services.notifier.delivery import DeliveryError
from services.notifier.model import Clock, IntegrationKind, Notification
from services.notifier.render import alert_facts, one_line, title_of
from veille.config import EmailReceiver

__all__ = ["EmailIntegration", "render_email", "tls_context"]

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MAX_ALERTS = 20
TIMEOUT = 30.0


def _safe_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("http://", "https://"))


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


def render_email(config: EmailReceiver, notification: Notification) -> tuple[str, str, str]:
    """Return (subject, text body, HTML body) for ``notification``."""
    alerts, hidden = notification.listed(MAX_ALERTS)
    context: dict[str, Any] = {
        "notification": notification,
        "alerts": alerts,
        "hidden": hidden,
        "title": title_of(notification),
        "facts": alert_facts,
        "one_line": one_line,
        "safe_url": _safe_url,
    }
    text_env, text_name = _environment(config.text_template, html=False)
    html_env, html_name = _environment(config.html_template, html=True)
    text = text_env.get_template(text_name).render(context)
    html = html_env.get_template(html_name).render(context)
    if config.subject_template:
        subject = SandboxedEnvironment(autoescape=False).from_string(config.subject_template).render(context)
    else:
        subject = context["title"]
    return one_line(subject, 200), text, html


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

    def __init__(self, config: EmailReceiver, *, password: str | None, clock: Clock) -> None:
        self.config = config
        self.password = password
        self.clock = clock
        host, _, port = config.smarthost.rpartition(":")
        self.host = host or config.smarthost
        self.port = int(port) if port.isdigit() else (465 if config.security == "tls" else 25)
        self.context = tls_context(config)

    def message(self, notification: Notification) -> EmailMessage:
        """The multipart message for ``notification``."""
        subject, text, html = render_email(self.config, notification)
        msg = EmailMessage(policy=SMTP)
        msg["Subject"] = subject
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.to)
        msg["Date"] = formatdate(self.clock().timestamp(), usegmt=True)
        msg["Message-ID"] = f"<{notification.id}@veille>"
        thread = hashlib.sha256(f"{notification.target}\x1f{notification.group_key}".encode()).hexdigest()[:24]
        msg["References"] = f"<group-{thread}@veille>"
        msg["X-Veille-Notification-Id"] = notification.id
        msg["X-Veille-Status"] = notification.status
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text, subtype="plain", charset="utf-8")
        msg.add_alternative(html, subtype="html", charset="utf-8")
        return msg

    def _send_blocking(self, msg: EmailMessage) -> None:
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
            client.send_message(msg, from_addr=self.config.sender, to_addrs=list(self.config.to))

    async def send(self, notification: Notification) -> None:
        """Render and send the email once; raise DeliveryError on failure."""
        msg = self.message(notification)
        try:
            await asyncio.to_thread(self._send_blocking, msg)
        except Exception as exc:
            raise _classify(exc) from exc
