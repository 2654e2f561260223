"""Email over TLS on a real SMTP conversation: aiosmtpd on 127.0.0.1 with a certificate made in the test.

``trustme`` makes a throwaway CA and a certificate for 127.0.0.1; the notifier trusts that CA
through the receiver's ``ca_file``. A server whose certificate the notifier does not trust must
never receive the mail nor the password, not even in clear text after a failed handshake.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from nats.js import JetStreamContext

from tests.notifier.conftest import AppFactory, RecordingSleep, make_alert, publish_alert, settled
from tests.notifier.test_email import Inbox
from veille.config import parse_config
from veille.natsserver import free_port

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


class TlsInbox(Inbox):
    """An :class:`Inbox` that also notes, for each message and each MAIL command, whether TLS was on."""

    def __init__(self) -> None:
        super().__init__()
        self.tls_versions: list[str | None] = []
        self.mail_commands: list[bool] = []

    @staticmethod
    def _tls_version(server: Any) -> str | None:
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport is not None else None
        return None if ssl_object is None else str(ssl_object.version())

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        self.mail_commands.append(self._tls_version(server) is not None)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.tls_versions.append(self._tls_version(server))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The CA's certificate as a PEM file, for the receiver's ``ca_file``."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server TLS context presenting a certificate for 127.0.0.1 signed by ``ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def starttls_server(ca: trustme.CA) -> Iterator[tuple[TlsInbox, int]]:
    """An SMTP server that requires STARTTLS, and TLS before AUTH."""
    inbox, port = TlsInbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context(ca),
        require_starttls=True,
        authenticator=inbox.authenticate,
        auth_require_tls=True,
        auth_required=True,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def smtps_server(ca: trustme.CA) -> Iterator[tuple[TlsInbox, int]]:
    """An SMTPS server (TLS from the first byte) with AUTH.

    aiosmtpd only counts STARTTLS as TLS for ``auth_require_tls``, so that check is off here; the
    handler checks the transport itself.
    """
    inbox, port = TlsInbox(), free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        ssl_context=server_context(ca),
        authenticator=inbox.authenticate,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def untrusted_servers() -> Iterator[dict[str, tuple[TlsInbox, int]]]:
    """A STARTTLS and an SMTPS server with a certificate from a CA the notifier does not know.

    Neither requires TLS nor authentication: a client that fell back to clear text would get through.
    """
    other = trustme.CA()
    servers: dict[str, tuple[TlsInbox, int]] = {}
    controllers: list[Controller] = []
    for security in ("starttls", "tls"):
        inbox, port = TlsInbox(), free_port()
        context = server_context(other)
        controller = Controller(
            inbox,
            hostname="127.0.0.1",
            port=port,
            ssl_context=context if security == "tls" else None,
            tls_context=context if security == "starttls" else None,
            authenticator=inbox.authenticate,
            auth_require_tls=False,
        )
        controller.start()
        controllers.append(controller)
        servers[security] = (inbox, port)
    try:
        yield servers
    finally:
        for controller in controllers:
            controller.stop()


def tls_config(port: int, security: str, extra: str = "") -> Any:
    """A config with one email receiver on 127.0.0.1:``port`` using ``security``."""
    return parse_config(
        f"""
version: 1
watches: [{{name: acme, query: acme}}]
receivers:
  - name: crisis
    email:
      - to: [alice@example.org]
        from: veille@example.org
        smarthost: 127.0.0.1:{port}
        security: {security}
        username: veille
        password: ${{SMTP_PASSWORD}}
{extra}
route:
  receiver: crisis
  group_wait: 0s
""",
        env={"SMTP_PASSWORD": "s3cret"},
    )


async def test_starttls_with_auth_delivers_over_tls(
    js: JetStreamContext, starttls_server: tuple[TlsInbox, int], ca_file: Path, notifier_factory: AppFactory
) -> None:
    """With ``security: starttls`` and the private CA in ``ca_file``, the email goes after STARTTLS, login too."""
    inbox, port = starttls_server
    await notifier_factory(tls_config(port, "starttls", f"        ca_file: {ca_file}"))
    await publish_alert(js, make_alert("alert-starttls"))
    await inbox.wait(1)
    assert inbox.logins == [("veille", "s3cret")]
    assert inbox.mail_commands == [True]
    [version] = inbox.tls_versions
    assert version is not None and version.startswith("TLS")
    [msg] = inbox.messages()
    assert msg["Subject"].startswith("[veille] FIRING: acme")


async def test_implicit_tls_delivers(
    js: JetStreamContext, smtps_server: tuple[TlsInbox, int], ca_file: Path, notifier_factory: AppFactory
) -> None:
    """With ``security: tls`` (SMTPS) and the private CA in ``ca_file``, the email goes over TLS from byte one."""
    inbox, port = smtps_server
    await notifier_factory(tls_config(port, "tls", f"        ca_file: {ca_file}"))
    await publish_alert(js, make_alert("alert-smtps"))
    await inbox.wait(1)
    assert inbox.logins == [("veille", "s3cret")]
    assert inbox.mail_commands == [True]
    [version] = inbox.tls_versions
    assert version is not None and version.startswith("TLS")


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_untrusted_certificate_is_refused_and_nothing_goes_in_clear(
    js: JetStreamContext,
    untrusted_servers: dict[str, tuple[TlsInbox, int]],
    ca_file: Path,
    notifier_factory: AppFactory,
    security: str,
) -> None:
    """A server certificate from an unknown CA is dead-lettered at once: no mail, no login, no retry."""
    inbox, port = untrusted_servers[security]
    sleep = RecordingSleep()
    app = await notifier_factory(tls_config(port, security, f"        ca_file: {ca_file}"), sleep=sleep)
    await publish_alert(js, make_alert(f"alert-untrusted-{security}"))
    await settled(js)
    await app.dispatcher.drain()
    metrics = app.notifier_metrics
    assert metrics.notifications.labels("crisis", "email", "dead_lettered")._value.get() == 1
    assert metrics.notifications.labels("crisis", "email", "sent")._value.get() == 0
    assert sleep.delays == []  # a certificate that does not verify is not retried
    assert inbox.envelopes == [] and inbox.mail_commands == [] and inbox.logins == []


async def test_starttls_not_offered_is_not_a_fallback_to_clear_text(
    js: JetStreamContext, notifier_factory: AppFactory
) -> None:
    """``security: starttls`` against a server without STARTTLS sends nothing in clear text and dead-letters."""
    inbox, port = TlsInbox(), free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=inbox.authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        app = await notifier_factory(tls_config(port, "starttls"))
        await publish_alert(js, make_alert("alert-no-starttls"))
        await settled(js)
        await app.dispatcher.drain()
        assert app.notifier_metrics.notifications.labels("crisis", "email", "dead_lettered")._value.get() == 1
        assert inbox.envelopes == [] and inbox.mail_commands == [] and inbox.logins == []
    finally:
        controller.stop()


async def test_insecure_skip_verify_accepts_an_unknown_certificate(
    js: JetStreamContext, untrusted_servers: dict[str, tuple[TlsInbox, int]], notifier_factory: AppFactory
) -> None:
    """``insecure_skip_verify: true`` (dangerous, opt-in) encrypts but accepts an unknown certificate."""
    inbox, port = untrusted_servers["tls"]
    await notifier_factory(tls_config(port, "tls", "        insecure_skip_verify: true"))
    await publish_alert(js, make_alert("alert-insecure"))
    await inbox.wait(1)
    assert inbox.tls_versions[0] is not None
