"""Who may do what, managed: the admin-only Users page (role, disable, enable; CSRF; each change recorded
with who made it) and ``veille users`` list / set-role / disable / enable / passwd, on a real
nats-server and real SQLite and PostgreSQL. A role change applies at the session's next request; a
disabled account's open session ends there."""

from __future__ import annotations

import asyncio
from typing import Any

from click.testing import CliRunner

from services.console.cli import users
from tests.console.conftest import PASSWORD, alert, seed
from veille import bus


async def run(*args: str, input: str | None = None) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, users, list(args), input=input)


async def test_admin_promotes_a_viewer_who_can_then_act_and_disables_them(
    db_url: str, start_console: Any, browser: Any, js: Any
) -> None:
    await bus.ensure_topology(js)
    await seed(db_url, alerts=[alert(1)], users={"ada": "admin", "victor": "viewer", "rita": "responder"})
    app = await start_console()
    victor = browser(app)
    await victor.login("victor")
    status, body = await victor.get("/users")
    assert status == 403 and "Only an administrator" in body
    rita = browser(app)
    await rita.login("rita")
    status, _ = await rita.get("/users")
    assert status == 403, "a responder is not an admin either"
    status, _ = await rita.post("/users/victor/role", {"role": "admin"})
    assert status == 403
    assert 'href="/users"' not in (await rita.get("/alerts"))[1], "the menu offers Users to admins only"

    await victor.get("/alerts/alert-1")
    status, _ = await victor.post("/alerts/alert-1/acknowledge")
    assert status == 403

    ada = browser(app)
    await ada.login("ada")
    status, body = await ada.get("/users")
    assert status == 200 and 'href="/users"' in body
    users_list = body.split('id="users"')[1]
    for name in ("ada", "rita", "victor"):
        assert f'data-name="{name}"' in users_list
    assert "local account" in users_list and "never" not in users_list.split('data-name="ada"')[1][:600]
    status, _ = await ada.post("/users/victor/role", {"role": "responder"}, csrf=False)
    assert status == 403, "no change without the CSRF token"
    status, body = await ada.post("/users/victor/role", {"role": "responder"})
    assert status == 200
    changed = 'ada</strong> changed the role of <strong>victor</strong>: <span class="detail">viewer -&gt; responder'
    assert changed in body

    # victor's session, opened as a viewer, acts as a responder at its next request
    status, body = await victor.get("/alerts/alert-1")
    assert 'id="acknowledge"' in body
    status, body = await victor.post("/alerts/alert-1/acknowledge")
    assert status == 200 and "victor</strong> acknowledged" in body

    status, body = await ada.post("/users/ada/disable")
    assert status == 400 and "own role or disable yourself" in body
    status, body = await ada.post("/users/victor/role", {"role": "boss"})
    assert status == 400
    status, _ = await ada.post("/users/nobody/disable")
    assert status == 404
    status, body = await ada.post("/users/victor/disable")
    assert status == 200 and "ada</strong> disabled <strong>victor" in body

    # the disabled account's open session ends at its next request, and it cannot log in again
    status, _ = await victor.get("/alerts", allow_redirects=False)
    assert status == 302
    assert "veille_session" not in {c.key for c in victor.session.cookie_jar}, "its cookie is deleted"
    status, body = await victor.login("victor")
    assert status == 403 and "This account is disabled" in body
    await ada.post("/users/victor/enable")
    status, body = await victor.login("victor")
    assert status == 200 and "alert-1" in body
    status, body = await ada.get("/users")
    assert "ada</strong> enabled <strong>victor" in body


async def test_users_command_line_list_role_disable_passwd(db_url: str, start_console: Any, browser: Any) -> None:
    db = ["--database-url", db_url]
    assert (await run("add", "rita", "--role", "viewer", "--password", PASSWORD, *db)).exit_code == 0
    assert (await run("add", "ada", "--role", "admin", "--password", PASSWORD, *db)).exit_code == 0
    app = await start_console()
    rita = browser(app)
    await rita.login("rita")

    listed = await run("list", *db)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    header = ["NAME", "ROLE", "SOURCE", "STATE", "CREATED", "(UTC)", "LAST", "LOGIN", "(UTC)", "EMAIL"]
    assert lines[0].split() == header
    ada_row, rita_row = lines[1].split(), lines[2].split()
    assert ada_row[:4] == ["ada", "admin", "local", "active"] and ada_row[-1] == "never"
    assert rita_row[:4] == ["rita", "viewer", "local", "active"] and rita_row[-1] != "never", "rita logged in"

    changed = await run("set-role", "rita", "responder", *db)
    assert changed.exit_code == 0 and "viewer -> responder" in changed.output
    status, _ = await rita.post("/mentions/rss:1/correct", {"label": "positive", "predicted": "negative", "text": "x"})
    assert status == 200, "the session acts with the new role"
    bad = await run("set-role", "nobody", "admin", *db)
    assert bad.exit_code != 0 and "no account named nobody" in bad.output

    assert (await run("disable", "rita", *db)).exit_code == 0
    status, _ = await rita.get("/alerts", allow_redirects=False)
    assert status == 302, "disabled on the command line: the session ends"
    assert "disabled" in (await run("list", *db)).output.splitlines()[2]
    assert (await run("enable", "rita", *db)).exit_code == 0

    short = await run("passwd", "rita", "--password-stdin", *db, input="short\n")
    assert short.exit_code != 0 and "at least 8 characters" in short.output
    reset = await run("passwd", "rita", "--password-stdin", *db, input="a brand new secret\n")
    assert reset.exit_code == 0, reset.output
    prompted = await run("passwd", "ada", *db, input="another new secret\nanother new secret\n")
    assert prompted.exit_code == 0, prompted.output
    again = browser(app)
    status, _ = await again.login("rita")
    assert status == 401, "the old password no longer works"
    status, body = await again.login("rita", "a brand new secret")
    assert status == 200 and "Alerts" in body

    await again.session.close()
    admin = browser(app)
    await admin.login("ada", "another new secret")
    status, body = await admin.get("/users")
    history = body.split('id="user-history"')[1]
    for words in ("reset the password of <strong>rita", "enabled <strong>rita", "disabled <strong>rita"):
        assert words in history, words
    assert "<strong>cli:" in history, "command-line changes say who made them"


async def test_a_disabled_account_s_live_stream_ends(db_url: str, start_console: Any, browser: Any) -> None:
    await seed(db_url, users={"victor": "viewer"})
    app = await start_console()
    app.keepalive = 0.2
    victor = browser(app)
    await victor.login("victor")
    async with victor.session.get(f"{victor.base}/live/acme/events") as stream:
        assert (await stream.content.readline()).startswith(b": connected")
        assert (await run("disable", "victor", "--database-url", db_url)).exit_code == 0
        # read() returns only when the console closes the stream (before the fix it never did)
        await asyncio.wait_for(stream.content.read(), 60)
    status, _ = await victor.get("/live/acme/events")
    assert status == 401
