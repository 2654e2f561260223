"""Single sign-on through a trusted reverse proxy (oauth2-proxy): a real HTTP proxy on 127.0.0.1 adds
the signed-in person's headers (tests/console/sso_proxy.py, as oauth2-proxy's --pass-user-headers
does); the console believes them from that address only. A client on 127.0.0.2 (another machine, as
far as the console can tell) forging the same headers is not logged in, and is counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from services.archive.db import make_engine
from services.console.app import ConsoleSettings
from services.console.store import ConsoleStore
from tests.console.conftest import alert, seed
from tests.console.sso_proxy import Identity, IdentityProxy
from veille import bus

SSO = {
    "console_sso_user_header": "X-Forwarded-User",
    "console_sso_role_map": "crisis-team=responder,comms-leads=admin",
    "console_sso_default_role": "viewer",
    "console_sso_trusted_ips": "127.0.0.1/32",
}
ELSEWHERE = "127.0.0.2"  # another loopback address: not the proxy


@pytest.fixture
async def proxies() -> AsyncIterator[list[IdentityProxy]]:
    made: list[IdentityProxy] = []
    yield made
    for proxy in made:
        await proxy.stop()


async def account(db_url: str, name: str) -> Any:
    engine = make_engine(make_url(db_url), write=False)
    try:
        return await ConsoleStore(engine).account(name)
    finally:
        await engine.dispose()


def ignored(app: Any) -> float:
    return app.metrics.registry.get_sample_value("veille_console_sso_header_ignored_total") or 0.0


async def test_sso_from_the_trusted_proxy_logs_in_and_a_forged_header_does_not(
    db_url: str, start_console: Any, browser: Any, proxies: list[IdentityProxy], js: Any
) -> None:
    await bus.ensure_topology(js)
    await seed(db_url, alerts=[alert(1)], users={"rita": "responder"})
    app = await start_console(**SSO)
    proxy = await IdentityProxy(
        f"http://127.0.0.1:{app.port}", Identity("camille", "camille@acme.example", ["staff", "crisis-team"])
    ).start()
    proxies.append(proxy)

    camille = browser(app, base=proxy.url)
    status, body = await camille.get("/alerts")
    assert status == 200 and "alert-1" in body, "signed in through the proxy, no login page"
    assert 'href="/oauth2/sign_out"' in body and "(camille)" in body, "log out goes to the proxy's sign-out"
    status, body = await camille.get("/alerts/alert-1")
    status, body = await camille.post("/alerts/alert-1/acknowledge")
    assert status == 200 and "camille</strong> acknowledged" in body, "crisis-team maps to responder"
    made = await account(db_url, "camille")
    assert (made.source, made.role, made.email, made.password_hash) == ("sso", "responder", "camille@acme.example", "")
    assert made.last_login is not None

    # the same headers sent straight to the console from another address are not believed
    forger = browser(app, source=ELSEWHERE)
    before = ignored(app)
    forged = {"X-Forwarded-User": "camille", "X-Forwarded-Groups": "comms-leads"}
    status, _ = await forger.get("/alerts", headers=forged, allow_redirects=False)
    assert status == 302, "sent to the login page"
    status, _ = await forger.get("/users", headers={**forged, "X-Forwarded-User": "mallory"}, allow_redirects=False)
    assert status == 302
    assert ignored(app) == before + 2, "each ignored header is counted"
    assert await account(db_url, "mallory") is None, "no account made from a forged header"
    # an SSO account has no password: the dummy hash's password does not open it
    await forger.get("/login")
    status, body = await forger.post("/login", {"name": "camille", "password": "not a password"})
    assert status == 401 and "Wrong name or password" in body

    # local login still works beside single sign-on
    rita = browser(app, source=ELSEWHERE)
    status, body = await rita.login("rita")
    assert status == 200 and "alert-1" in body

    # groups changed at the identity provider: the role follows at the next request
    proxy.identity = Identity("camille", "camille@acme.example", ["staff"])
    status, body = await camille.get("/alerts/alert-1")
    assert 'id="acknowledge"' not in body, "a viewer now"
    status, _ = await camille.post("/alerts/alert-1/comment", {"comment": "still here"})
    assert status == 403
    assert (await account(db_url, "camille")).role == "viewer"
    proxy.identity = Identity("lea", "lea@acme.example", ["comms-leads", "crisis-team"])
    lea = browser(app, base=proxy.url)
    status, body = await lea.get("/users")
    assert status == 200 and "camille" in body and "single sign-on" in body, "comms-leads maps to admin"

    # the proxy naming a local account is refused, not merged into it
    proxy.identity = Identity("rita", "", ["comms-leads"])
    status, body = await browser(app, base=proxy.url).get("/alerts")
    assert status == 403 and "local account already has this name" in body
    assert (await account(db_url, "rita")).role == "responder"


async def test_a_disabled_sso_account_is_refused_even_from_the_proxy(
    db_url: str, start_console: Any, browser: Any, proxies: list[IdentityProxy]
) -> None:
    await seed(db_url, users={"ada": "admin"})
    app = await start_console(**{**SSO, "console_sso_default_role": "none"})
    proxy = await IdentityProxy(f"http://127.0.0.1:{app.port}", Identity("sam", "", ["crisis-team"])).start()
    proxies.append(proxy)
    sam = browser(app, base=proxy.url)
    status, _ = await sam.get("/alerts")
    assert status == 200
    ada = browser(app, source=ELSEWHERE)
    await ada.login("ada")
    await ada.get("/users")
    status, body = await ada.post("/users/sam/disable")
    assert status == 200 and "ada</strong> disabled <strong>sam" in body
    status, body = await sam.get("/alerts")
    assert status == 403 and "disabled" in body
    # in no mapped group, with no default role: refused
    proxy.identity = Identity("nobody", "", ["staff"])
    status, body = await browser(app, base=proxy.url).get("/alerts")
    assert status == 403 and "no role" in body
    assert await account(db_url, "nobody") is None


def test_sso_settings_read_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEILLE_CONSOLE_SSO_USER_HEADER", "X-Forwarded-User")
    monkeypatch.setenv("VEILLE_CONSOLE_SSO_ROLE_MAP", "crisis-team=responder, comms leads=admin")
    monkeypatch.setenv("VEILLE_CONSOLE_SSO_TRUSTED_IPS", "10.0.0.0/8, ::1")
    proxy = ConsoleSettings().trusted_proxy()
    assert proxy is not None
    assert proxy.trusts("10.1.2.3") and proxy.trusts("::1") and proxy.trusts("::ffff:10.0.0.1")
    assert not proxy.trusts("192.168.1.1") and not proxy.trusts(None) and not proxy.trusts("nonsense")
    assert proxy.identity("lea", None, ["staff,comms leads", "crisis-team"]).role == "admin", "the highest role"
    assert proxy.identity("x", None, []).role == "viewer"
    monkeypatch.delenv("VEILLE_CONSOLE_SSO_TRUSTED_IPS")
    with pytest.raises(ValueError, match="VEILLE_CONSOLE_SSO_TRUSTED_IPS"):
        ConsoleSettings().trusted_proxy()
    monkeypatch.setenv("VEILLE_CONSOLE_SSO_TRUSTED_IPS", "127.0.0.1")
    monkeypatch.setenv("VEILLE_CONSOLE_SSO_ROLE_MAP", "crisis-team=boss")
    with pytest.raises(ValueError, match="'boss' is not one of viewer, responder, admin"):
        ConsoleSettings().trusted_proxy()
    monkeypatch.delenv("VEILLE_CONSOLE_SSO_USER_HEADER")
    assert ConsoleSettings().trusted_proxy() is None
