"""The console over HTTP, on a real nats-server and a real archive database (SQLite and PostgreSQL):
login, roles and CSRF refusals; every alert action recorded and shown in the alert's history;
acknowledging puts a silence in the notifier's bucket (the one ``veille silence`` and every notifier
read), resolving expires it; silences created and expired; live mentions over server-sent events;
sentiment corrections stored and exported."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import socket
from datetime import UTC, datetime
from typing import Any

import aiohttp
from click.testing import CliRunner
from nats.js import JetStreamContext
from sqlalchemy import select
from sqlalchemy.engine import make_url

from services.archive.db import make_engine
from services.console.cli import corrections, users
from services.console.store import alert_actions
from services.notifier.silences import SilenceStore, silenced_by
from tests.console.conftest import PASSWORD, alert, classified, seed
from veille import bus


async def actions_in_db(db_url: str) -> list[tuple[str, str, str, str]]:
    engine = make_engine(make_url(db_url), write=False)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(alert_actions).order_by(alert_actions.c.id))).mappings().all()
    finally:
        await engine.dispose()
    return [(r["alert_id"], r["actor"], r["action"], r["detail"]) for r in rows]


async def test_login_required_throttled_and_roles_enforced(db_url: str, start_console: Any, browser: Any) -> None:
    await seed(db_url, alerts=[alert(1)], users={"rita": "responder", "victor": "viewer"})
    app = await start_console()
    assert app.local_only is False
    anonymous = browser(app)
    status, body = await anonymous.get("/alerts/alert-1", allow_redirects=False)
    assert status == 302
    status, body = await anonymous.get("/alerts/alert-1")
    assert 'name="password"' in body, "an anonymous visitor is sent to the login page"
    for _ in range(3):
        status, body = await anonymous.post("/login", {"name": "rita", "password": "wrong"})
        assert status == 401 and "Wrong name or password" in body
    status, body = await anonymous.post("/login", {"name": "rita", "password": PASSWORD})
    assert status == 429, "a fourth try within the window is refused even with the right password"

    viewer = browser(app)
    status, body = await viewer.login("victor")
    assert status == 200 and "alert-1" in body
    status, body = await viewer.get("/alerts/alert-1")
    assert 'id="acknowledge"' not in body, "a viewer is not offered the actions"
    status, body = await viewer.post("/alerts/alert-1/acknowledge")
    assert status == 403
    status, body = await viewer.post("/silences", {"matchers": 'watch="acme"', "duration": "1h"})
    assert status == 403
    assert await actions_in_db(db_url) == []

    responder = browser(app)
    await responder.login("rita")
    await responder.get("/alerts/alert-1")
    status, body = await responder.post("/alerts/alert-1/acknowledge", csrf=False)
    assert status == 403 and "reload the page" in body
    status, _ = await responder.post("/alerts/alert-1/acknowledge", {"csrf": "forged"})
    assert status == 403
    assert await actions_in_db(db_url) == [], "no action without a valid CSRF token"

    # a session cookie with a forged role is not a session
    forged = browser(app)
    forged.session.cookie_jar.update_cookies(
        {"veille_session": "eyJ1IjoieCIsInIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.bad"}
    )
    status, _ = await forged.get("/alerts", allow_redirects=False)
    assert status == 302


async def test_alert_actions_recorded_shown_and_silencing_the_group(
    db_url: str, start_console: Any, browser: Any, js: JetStreamContext
) -> None:
    await bus.ensure_topology(js)
    firing = alert(1, title="<script>alert('x')</script>")
    await seed(db_url, alerts=[firing, alert(2, watch="globex")], users={"rita": "responder"})
    app = await start_console()
    rita = browser(app)
    status, body = await rita.login("rita")
    assert status == 200 and "acme" in body and "globex" in body

    status, body = await rita.get("/alerts/alert-1")
    assert "42" in body and "6.2" in body and "recall, kettle, fire" in body and "70 %" in body
    assert "<script>alert(" not in body and "&lt;script&gt;alert(" in body, "mention text is escaped"

    status, body = await rita.post("/alerts/alert-1/acknowledge")
    assert status == 200 and "rita</strong> acknowledged" in body
    silences = await (await SilenceStore.open(js)).all()
    assert len(silences) == 1
    now = datetime.now(UTC)
    assert silenced_by(firing, silences, now) is not None, "the notifier now finds the group silenced"
    assert silenced_by(alert(2, watch="globex"), silences, now) is None, "other groups still notify"

    await rita.post("/alerts/alert-1/assign", {"assignee": "Camille"})
    await rita.post("/alerts/alert-1/comment", {"comment": "Press office drafting a statement"})
    status, body = await rita.post("/alerts/alert-1/resolve")
    assert status == 200
    history = body.split('id="history"')[1]
    for words in ("acknowledged", 'assigned to: <span class="detail">Camille', "Press office drafting", "resolved"):
        assert words in history, words
    assert "resolved" in body.split('id="state"')[1][:60]
    assert [a[1:3] for a in await actions_in_db(db_url)] == [
        ("rita", "acknowledge"),
        ("rita", "assign"),
        ("rita", "comment"),
        ("rita", "resolve"),
    ]
    later = datetime.now(UTC)
    assert silenced_by(firing, await (await SilenceStore.open(js)).all(), later) is None, "resolving ends the silence"
    status, body = await rita.get("/alerts")
    assert "Camille" in body


async def test_silences_created_from_an_alert_and_expired(
    db_url: str, start_console: Any, browser: Any, js: JetStreamContext
) -> None:
    await bus.ensure_topology(js)
    await seed(db_url, alerts=[alert(1)], users={"rita": "responder"})
    app = await start_console()
    rita = browser(app)
    await rita.login("rita")
    status, body = await rita.get("/silences?alert=alert-1")
    assert "watch=&#34;acme&#34;\nkind=&#34;volume_spike&#34;" in body, "the form is pre-filled from the alert"
    status, body = await rita.post("/silences", {"matchers": 'watch=~"("', "duration": "1h"})
    assert status == 400 and "bad regular expression" in body
    status, body = await rita.post(
        "/silences",
        {
            "matchers": 'watch="acme"\nkind="volume_spike"',
            "duration": "90m",
            "comment": "statement out",
            "alert": "alert-1",
        },
    )
    assert status == 200 and "statement out" in body and "active" in body
    store = await SilenceStore.open(js)
    (silence,) = await store.all()
    assert silence.created_by == "rita" and silence.matchers == ['watch="acme"', 'kind="volume_spike"']
    assert (await actions_in_db(db_url))[0][:3] == ("alert-1", "rita", "silence")
    status, body = await rita.post(f"/silences/{silence.id}/expire")
    assert status == 200 and "expired" in body
    expired = await store.get(silence.id)
    assert expired is not None and not expired.active(datetime.now(UTC))


async def test_live_page_streams_classified_mentions_of_its_watch(
    db_url: str, start_console: Any, browser: Any, js: JetStreamContext
) -> None:
    await bus.ensure_topology(js)
    await seed(db_url, users={"victor": "viewer"})
    app = await start_console()
    victor = browser(app)
    await victor.login("victor")
    status, body = await victor.get("/live/acme")
    assert status == 200 and "/live/acme/events" in body
    async with victor.session.get(f"{victor.base}/live/acme/events", timeout=aiohttp.ClientTimeout(total=30)) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert (await stream.content.readline()).startswith(b": connected")
        assert await stream.content.readline() == b"\n"
        await js.publish(bus.classified_subject("rss"), classified(1, watches=["globex"]).model_dump_json().encode())
        await js.publish(
            bus.classified_subject("rss"),
            classified(2, watches=["acme"], text="<b>kettle</b> fire").model_dump_json().encode(),
        )
        await js.publish(bus.classified_subject("rss"), b"not json")
        lines: list[bytes] = []
        while not any(line.startswith(b"data:") for line in lines):
            lines.append(await asyncio.wait_for(stream.content.readline(), 10))
    assert lines[0] == b"event: mention\n"
    event = json.loads(lines[1][len(b"data:") :])
    assert event["id"] == "rss:2", "the other watch's mention is not sent"
    assert event["text"] == "<b>kettle</b> fire" and event["sentiment"] == "negative"
    assert event["lang"] == "en" and event["source"] == "rss" and event["story_size"] == 1
    assert event["url"] == "https://news.example/2"

    anonymous = browser(app)
    status, _ = await anonymous.get("/live/acme/events")
    assert status == 401


async def test_corrections_stored_and_exported(db_url: str, start_console: Any, browser: Any, tmp_path: Any) -> None:
    mention = classified(7, watches=["acme"], text="Acme's new kettle is great, no fire at all")
    await seed(db_url, mentions=[mention], users={"rita": "responder", "victor": "viewer"})
    app = await start_console()
    victor = browser(app)
    await victor.login("victor")
    status, _ = await victor.post("/mentions/rss:7/correct", {"label": "positive"})
    assert status == 403
    rita = browser(app)
    await rita.login("rita")
    status, _ = await rita.post("/mentions/rss:7/correct", {"label": "nonsense"})
    assert status == 400
    status, _ = await rita.post("/mentions/rss:7/correct", {"label": "positive", "next": "/alerts"})
    assert status == 200
    result = await asyncio.to_thread(CliRunner().invoke, corrections, ["export", "--database-url", db_url])
    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.output))) == [
        ["text", "label"],
        ["Story 7 Acme's new kettle is great, no fire at all", "positive"],
    ]


async def test_without_accounts_the_console_is_loopback_only(db_url: str, start_console: Any, browser: Any) -> None:
    await seed(db_url, alerts=[alert(1)])
    app = await start_console()
    assert app.local_only and app.host == "127.0.0.1"
    local = browser(app)
    status, body = await local.get("/alerts/alert-1")
    assert status == 200 and "answers on this machine only" in body
    status, body = await local.post("/alerts/alert-1/comment", {"comment": "on it"})
    assert status == 200 and "local</strong> commented" in body
    assert [a[1:] for a in await actions_in_db(db_url)] == [("local", "comment", "on it")]


async def test_a_taken_port_is_said_in_readiness_and_taken_when_free(
    db_url: str, start_console: Any, browser: Any
) -> None:
    await seed(db_url, alerts=[alert(1)])
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    app = await start_console(port=port)
    await app.health.refresh()
    assert "cannot listen on 127.0.0.1:" in app.health.problems()["http"]
    holder.close()
    for _ in range(200):
        if app.port:
            break
        await asyncio.sleep(0.05)
    assert app.port == port and "http" not in app.health.problems()
    status, _ = await browser(app).get("/alerts")
    assert status == 200


async def test_users_added_on_the_command_line_log_in_with_their_role(
    db_url: str, start_console: Any, browser: Any
) -> None:
    runner = CliRunner()
    short = await asyncio.to_thread(
        runner.invoke, users, ["add", "rita", "--role", "responder", "--password", "short", "--database-url", db_url]
    )
    assert short.exit_code != 0 and "at least 8 characters" in short.output
    added = await asyncio.to_thread(
        runner.invoke, users, ["add", "rita", "--role", "viewer", "--password", PASSWORD, "--database-url", db_url]
    )
    assert added.exit_code == 0, added.output
    app = await start_console()
    assert not app.local_only
    rita = browser(app)
    status, body = await rita.login("rita")
    assert status == 200 and "Alerts" in body
    status, _ = await rita.post("/mentions/rss:1/correct", {"label": "positive", "predicted": "negative", "text": "x"})
    assert status == 403, "a viewer"


async def test_search_highlights_escapes_pages_and_exports_csv(db_url: str, start_console: Any, browser: Any) -> None:
    await seed(
        db_url,
        mentions=[
            classified(1, watches=["acme"], text="Acme announces a recall of its kettles <script>alert(1)</script>"),
            classified(2, watches=["acme"], text="Acme opens a new shop"),
            classified(3, watches=["acme"], text='=HYPERLINK("http://evil.example","recall details")'),
        ],
        users={"victor": "viewer"},
    )
    app = await start_console()
    victor = browser(app)
    await victor.login("victor")
    status, body = await victor.get("/search?q=recall&watch=acme&since=7d")
    assert status == 200
    results = body.split('id="results"')[1]
    assert results.count('class="mention"') == 2 and "new shop" not in results
    assert "<mark>recall</mark> of its kettles &lt;script&gt;alert(1)&lt;/script&gt;" in results
    assert "<script>alert(1)" not in body

    status, body = await victor.get('/search?q="unclosed')
    assert status == 400 and "That did not work" in body
    status, body = await victor.get("/search?q=recall&since=soon")
    assert status == 400 and "neither a duration" in body

    async with victor.session.get(f"{victor.base}/search?q=recall&format=csv") as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0][:3] == ["id", "ts", "watches"] and len(rows) == 3
    texts = {row[0]: row[rows[0].index("text")] for row in rows[1:]}
    assert texts["rss:3"].startswith("'=HYPERLINK("), "a formula is exported as text, not run by a spreadsheet"
    assert texts["rss:1"].startswith("Acme announces a recall")

    status, body = await browser(app).get("/search?q=recall", allow_redirects=False)
    assert status == 302, "no search without a login"


async def test_watch_overview_counts_tops_and_alerts(db_url: str, start_console: Any, browser: Any) -> None:
    mentions = [classified(i, watches=["acme"], text=f"Acme kettle recall number {i}") for i in range(5)]
    mentions.append(classified(9, watches=["globex"], text="Globex news"))
    await seed(db_url, mentions=mentions, alerts=[alert(1)], users={"victor": "viewer"})
    app = await start_console()
    victor = browser(app)
    await victor.login("victor")
    status, body = await victor.get("/watches/acme?range=24h")
    assert status == 200
    assert 'id="total">5<' in body, "five acme mentions in the last 24 h (globex's not counted)"
    series = json.loads(body.split('<script id="series" type="application/json">')[1].split("</script>")[0])
    assert sum(b["total"] for b in series["buckets"]) == 5
    assert [a["id"] for a in series["alerts"]] == ["alert-1"]
    assert '>news.example</a> <span class="meta">(5)</span>' in body and "kettle" in body.split("Terms")[1]
    assert "/static/uPlot.iife.min.js" in body
    status, body = await victor.get("/watches/acme?range=custom&since=2d&until=1d")
    assert status == 200 and 'id="total">0<' in body
    status, body = await victor.get("/watches/acme?range=1y")
    assert status == 400 and "24h, 7d, 30d, custom" in body
    status, _ = await victor.get("/watches/nope")
    assert status == 404
