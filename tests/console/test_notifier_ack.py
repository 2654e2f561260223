"""Acknowledging an alert in the console stops a real notifier repeating its group (and only its group):
the console's silence goes to the same bucket every notifier replica reads when a group is due."""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext

from tests.console.conftest import seed
from tests.notifier.conftest import (  # noqa: F401 - receiver and notifier_factory are fixtures
    AppFactory,
    ManualClock,
    ScriptedReceiver,
    flush,
    make_alert,
    notifier_factory,
    publish_alert,
    receiver,
    suppressed,
    webhook_config,
)
from veille import bus
from veille.models import utcnow


async def test_acknowledging_stops_the_notifiers_repeats_of_that_group(
    db_url: str,
    start_console: Any,
    browser: Any,
    js: JetStreamContext,
    receiver: ScriptedReceiver,  # noqa: F811 - the notifier's fixture, imported above
    notifier_factory: AppFactory,  # noqa: F811
) -> None:
    await bus.ensure_topology(js)
    now = utcnow()
    clock = ManualClock(now)
    notifier = await notifier_factory(webhook_config(receiver.url()), clock=clock)  # repeat_interval: 4h
    acme = make_alert("spike-acme", kind="volume_spike", observed=90.0, expected=10.0, raised_at=now)
    globex = make_alert("spike-globex", watch="globex", kind="volume_spike", observed=80.0, expected=9.0, raised_at=now)
    await publish_alert(js, acme)
    await publish_alert(js, globex)
    await flush(notifier, js)
    assert sorted(h.json()["data"]["alerts"][0]["id"] for h in receiver.hits) == ["spike-acme", "spike-globex"]

    await seed(db_url, alerts=[acme, globex], users={"rita": "responder"})
    console = await start_console()
    rita = browser(console)
    await rita.login("rita")
    await rita.get("/alerts/spike-acme")
    status, body = await rita.post("/alerts/spike-acme/acknowledge")
    assert status == 200 and "rita</strong> acknowledged" in body

    clock.advance(hours=4, minutes=1)
    await flush(notifier, js)
    repeats = [h.json()["data"]["alerts"][0]["id"] for h in receiver.hits[2:]]
    assert repeats == ["spike-globex"], "the acknowledged group is not repeated, the other one is"
