"""Who may do what, in a real browser (Playwright driving Debian's chromium, as test_browser.py): an
admin promotes a viewer on the Users page and the promoted person's open page can then acknowledge;
a disabled person's next click lands on the login page; a viewer opening the Users page is refused;
single sign-on through a real reverse proxy logs a person in without a password, while the same
header sent from elsewhere does not. Screenshots of a failing page are saved beside tmp_path."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from tests.console.conftest import PASSWORD, alert, seed
from tests.console.sso_proxy import Identity, IdentityProxy
from tests.console.test_browser import AXE, PHONE, _shot, chromium  # noqa: F401 - the fixture
from veille import bus


async def _login(page: Any, base: str, name: str, then: str) -> None:
    await page.goto(f"{base}/login?next={then}")
    await page.get_by_label("Name").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{base}{then}")


async def test_admin_promotes_then_disables_a_viewer_in_the_browser(
    db_url: str,
    start_console: Any,
    chromium: Any,  # noqa: F811 - the fixture imported above
    js: JetStreamContext,
    tmp_path: Path,
) -> None:
    await bus.ensure_topology(js)
    await seed(db_url, alerts=[alert(1)], users={"ada": "admin", "victor": "viewer"})
    app = await start_console()
    base = f"http://127.0.0.1:{app.port}"
    admin_ctx = await chromium.new_context(locale="en-GB")
    viewer_ctx = await chromium.new_context(locale="en-GB", **PHONE)
    admin, viewer = await admin_ctx.new_page(), await viewer_ctx.new_page()
    try:
        await _login(viewer, base, "victor", "/alerts/alert-1")
        assert await viewer.get_by_role("button", name="Acknowledge").count() == 0, "a viewer is offered no action"
        assert await viewer.get_by_role("link", name="Users").count() == 0
        refused = await viewer.goto(f"{base}/users")
        assert refused is not None and refused.status == 403
        assert "Only an administrator" in await viewer.inner_text("main")

        await _login(admin, base, "ada", "/alerts")
        await admin.get_by_role("link", name="Users").click()
        await admin.wait_for_url(f"{base}/users")
        row = admin.locator('li[data-name="victor"]')
        assert await row.locator(".role").inner_text() == "viewer"
        await row.get_by_label("Role").select_option("responder")
        await row.get_by_role("button", name="Change role").click()
        await admin.wait_for_url(f"{base}/users")
        assert await admin.locator('li[data-name="victor"] .role').inner_text() == "responder"
        assert "ada changed the role of victor: viewer -> responder" in await admin.inner_text("#user-history")
        await admin.add_script_tag(path=str(AXE))
        violations = await admin.evaluate(
            "async () => (await axe.run(document)).violations"
            ".filter(v => v.impact === 'critical' || v.impact === 'serious').map(v => v.id + ': ' + v.help)"
        )
        assert violations == [], "the Users page passes axe-core"

        await viewer.goto(f"{base}/alerts/alert-1")
        await viewer.get_by_role("button", name="Acknowledge").click()
        await viewer.wait_for_selector("#history li")
        assert "victor acknowledged" in await viewer.inner_text("#history")

        await admin.locator('li[data-name="victor"]').get_by_role("button", name="Disable").click()
        await admin.wait_for_url(f"{base}/users")
        assert await admin.locator('li[data-name="victor"] .state').inner_text() == "disabled"
        await viewer.get_by_role("link", name="Alerts", exact=True).click()
        await viewer.wait_for_url(re.compile(r"/login\?next="))
        assert await viewer.inner_text("h1") == "Log in", "the disabled account's session ended"
    except BaseException:
        await _shot(admin, tmp_path, "users-admin")
        await _shot(viewer, tmp_path, "users-viewer")
        raise
    finally:
        await admin_ctx.close()
        await viewer_ctx.close()


@pytest.fixture
async def proxies() -> AsyncIterator[list[IdentityProxy]]:
    made: list[IdentityProxy] = []
    yield made
    for proxy in made:
        await proxy.stop()


async def test_single_sign_on_through_the_proxy_in_the_browser(
    db_url: str,
    start_console: Any,
    chromium: Any,  # noqa: F811 - the fixture imported above
    proxies: list[IdentityProxy],
    tmp_path: Path,
) -> None:
    await seed(db_url, alerts=[alert(1)], users={"ada": "admin"})
    app = await start_console(
        console_sso_user_header="X-Forwarded-User",
        console_sso_role_map="crisis-team=responder",
        console_sso_trusted_ips="127.0.0.3/32",  # the proxy's address; chromium connects from 127.0.0.1
    )
    proxy = await IdentityProxy(
        f"http://127.0.0.1:{app.port}",
        Identity("camille", "camille@acme.example", ["crisis-team"]),
        source="127.0.0.3",
    ).start()
    proxies.append(proxy)
    context = await chromium.new_context(locale="fr-FR")
    page = await context.new_page()
    try:
        await page.goto(f"{proxy.url}/alerts/alert-1")
        assert await page.inner_text("h1") != "Connexion", "no login page behind the proxy"
        assert await page.get_by_role("link", name="Se déconnecter (camille)").get_attribute("href") == (
            "/oauth2/sign_out"
        )
        await page.get_by_role("button", name="Prendre en compte").click()
        await page.wait_for_selector("#history li")
        assert "camille a pris en compte" in await page.inner_text("#history")

        # the browser straight to the console with the header (as a forger would) is not signed in
        direct = await context.new_page()
        await direct.set_extra_http_headers({"X-Forwarded-User": "camille", "X-Forwarded-Groups": "crisis-team"})
        await direct.goto(f"http://127.0.0.1:{app.port}/alerts")
        assert await direct.inner_text("h1") == "Connexion"
        ignored = app.metrics.registry.get_sample_value("veille_console_sso_header_ignored_total")
        assert ignored is not None and ignored >= 1, "counted (the page, its redirect and its stylesheet each)"
    except BaseException:
        await _shot(page, tmp_path, "sso")
        raise
    finally:
        await context.close()
