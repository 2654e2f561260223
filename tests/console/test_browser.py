"""The console in a real browser: Playwright driving Debian's chromium (``apt-get install chromium``,
scripts/ci-deps.sh), on a phone-sized screen in French. Skips, with the reason, when chromium is not
installed or cannot start here. A failing test leaves a screenshot of the page beside its tmp_path."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.js import JetStreamContext

from services.notifier.silences import SilenceStore, silenced_by
from tests.console.conftest import PASSWORD, alert, classified, seed
from veille import bus

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is in the dev extra")

CHROMIUM = "/usr/bin/chromium"
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """Debian's chromium under Playwright; skipped with the launch error when it cannot run."""
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium; scripts/ci-deps.sh does)")
    async with playwright_api.async_playwright() as p:
        try:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        except Exception as exc:
            pytest.skip(f"chromium cannot start here: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            await browser.close()


async def _shot(page: Any, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot of the failing page: {path}")


async def test_acknowledge_in_french_on_a_phone(
    db_url: str, start_console: Any, chromium: Any, js: JetStreamContext, tmp_path: Path
) -> None:
    await bus.ensure_topology(js)
    firing = alert(1)
    await seed(db_url, alerts=[firing], users={"rita": "responder"})
    app = await start_console()
    context = await chromium.new_context(locale="fr-FR", **PHONE)
    page = await context.new_page()
    base = f"http://127.0.0.1:{app.port}"
    try:
        await page.goto(f"{base}/alerts")
        assert await page.inner_text("h1") == "Connexion", "French from the browser's language"
        await page.get_by_label("Nom").fill("rita")
        await page.get_by_label("Mot de passe").fill(PASSWORD)
        await page.get_by_role("button", name="Se connecter").click()
        await page.wait_for_url(f"{base}/alerts")
        assert await page.inner_text("h1") == "Alertes"
        assert "ouverte" in await page.inner_text(".timeline")
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"

        await page.get_by_role("link", name="acme").click()
        await page.wait_for_url(f"{base}/alerts/alert-1")
        assert "recall, kettle, fire" in await page.inner_text(".facts")
        await page.get_by_role("button", name="Prendre en compte").click()
        await page.wait_for_selector("#history li")
        assert "rita a pris en compte" in await page.inner_text("#history")
        assert await page.inner_text("#state") == "prise en compte"
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        silences = await (await SilenceStore.open(js)).all()
        assert silenced_by(firing, silences, datetime.now(UTC)) is not None, "the notifier's repeats stop"

        await page.get_by_role("link", name="English").click()
        await page.wait_for_selector("#history")
        assert "rita acknowledged" in await page.inner_text("#history")
    except BaseException:
        await _shot(page, tmp_path, "acknowledge")
        raise
    finally:
        await context.close()


async def test_live_page_shows_a_new_mention_and_its_script_title_as_text(
    db_url: str, start_console: Any, chromium: Any, js: JetStreamContext, tmp_path: Path
) -> None:
    await bus.ensure_topology(js)
    await seed(db_url, users={"victor": "viewer"})
    app = await start_console()
    context = await chromium.new_context(locale="en-GB", **PHONE)
    page = await context.new_page()
    base = f"http://127.0.0.1:{app.port}"
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    try:
        await page.goto(f"{base}/login?next=/live/acme")
        await page.get_by_label("Name").fill("victor")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Log in").click()
        await page.wait_for_url(f"{base}/live/acme")
        for _ in range(600):  # the page's EventSource is connected once the console holds its queue
            if app.hub.queues.get("acme"):
                break
            await asyncio.sleep(0.05)
        assert app.hub.queues.get("acme"), "the live page never opened its event stream"
        mention = classified(3, watches=["acme"], text="Acme kettles <img src=x onerror=alert(1)>")
        mention = mention.model_copy(
            update={"mention": mention.mention.model_copy(update={"title": "<script>alert('pwned')</script>"})}
        )
        await js.publish(bus.classified_subject("rss"), mention.model_dump_json().encode())
        row = page.locator("#live li").first
        await row.wait_for()
        assert await row.locator(".title").inner_text() == "<script>alert('pwned')</script>"
        assert "<img src=x onerror=alert(1)>" in await row.locator(".text").inner_text()
        assert await row.locator(".sentiment").inner_text() == "negative"
        assert await row.locator(".title").get_attribute("href") == "https://news.example/3"
        assert await page.locator("#live img, #live script").count() == 0
        assert dialogs == []
    except BaseException:
        await _shot(page, tmp_path, "live")
        raise
    finally:
        await context.close()


async def test_watch_overview_draws_its_charts_on_a_phone(
    db_url: str, start_console: Any, chromium: Any, tmp_path: Path
) -> None:
    mentions = [classified(i, watches=["acme"]) for i in range(4)]
    await seed(db_url, mentions=mentions, alerts=[alert(1)], users={"victor": "viewer"})
    app = await start_console()
    context = await chromium.new_context(locale="fr-FR", **PHONE)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    base = f"http://127.0.0.1:{app.port}"
    try:
        await page.goto(f"{base}/login?next=/watches/acme")
        await page.get_by_label("Nom").fill("victor")
        await page.get_by_label("Mot de passe").fill(PASSWORD)
        await page.get_by_role("button", name="Se connecter").click()
        await page.wait_for_url(f"{base}/watches/acme")
        await page.locator("#volume canvas").wait_for()
        assert await page.locator(".chart canvas").count() == 2, "volume and sentiment share drawn"
        assert "Mentions" in await page.inner_text("#volume"), "the legend, in French"
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scroll"
        assert errors == []
    except BaseException:
        await _shot(page, tmp_path, "overview")
        raise
    finally:
        await context.close()


AXE = Path(__file__).resolve().parent / "assets" / "axe.min.js"  # axe-core 4.10.3 from the npm registry (MPL-2.0)


async def test_no_critical_accessibility_violation_on_any_page(
    db_url: str, start_console: Any, chromium: Any, js: JetStreamContext, tmp_path: Path
) -> None:
    await bus.ensure_topology(js)
    await seed(
        db_url,
        mentions=[classified(i, watches=["acme"]) for i in range(3)],
        alerts=[alert(1)],
        users={"rita": "responder"},
    )
    app = await start_console()
    context = await chromium.new_context(locale="fr-FR", **PHONE)
    page = await context.new_page()
    base = f"http://127.0.0.1:{app.port}"
    found: dict[str, list[str]] = {}
    try:
        for path in (
            "/login",
            "/alerts",
            "/alerts/alert-1",
            "/silences?alert=alert-1",
            "/search?q=acme",
            "/watches",
            "/watches/acme",
            "/live/acme",
        ):
            await page.goto(base + path)
            if path == "/login":
                await page.get_by_label("Nom").fill("rita")
                await page.get_by_label("Mot de passe").fill(PASSWORD)
                await page.get_by_role("button", name="Se connecter").click()
                await page.wait_for_url(f"{base}/alerts")
                await page.goto(base + path)
            await page.add_script_tag(path=str(AXE))
            violations = await page.evaluate(
                "async () => (await axe.run(document)).violations"
                ".filter(v => v.impact === 'critical').map(v => v.id + ': ' + v.help)"
            )
            if violations:
                found[path] = violations
        assert found == {}
    except BaseException:
        await _shot(page, tmp_path, "accessibility")
        raise
    finally:
        await context.close()
