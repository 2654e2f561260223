"""Two replicas on one stream, and a notifier killed mid-delivery: no notification is sent twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from nats.js import JetStreamContext

from services.notifier.model import kv_keys
from services.notifier.nflog import Claim
from tests.notifier.conftest import (
    SECRET,
    AppFactory,
    ManualClock,
    ScriptedReceiver,
    make_alert,
    publish_alert,
    settled,
    webhook_config,
)
from veille import bus
from veille.natsserver import NatsServerProcess

REPO = Path(__file__).resolve().parents[2]
PER_ALERT = """
  routes:
    - matchers: [watch=~".*"]
      group_by: ["..."]
      group_wait: 30s
"""


async def test_two_replicas_flushing_the_same_groups_send_each_notification_once(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """Both replicas plan the same 20 due groups at the same moment; each notification is sent exactly once."""
    clock = ManualClock()
    config = webhook_config(receiver.url(), route=PER_ALERT)
    a = await notifier_factory(config, instance="replica-a", clock=clock)
    b = await notifier_factory(config, instance="replica-b", clock=clock)
    for index in range(20):
        await publish_alert(js, make_alert(f"r{index}"))
    await settled(js)
    clock.advance(seconds=31)
    await asyncio.gather(a.flush_due(), b.flush_due(), a.flush_due(), b.flush_due())
    await asyncio.gather(a.dispatcher.drain(), b.dispatcher.drain())
    ids = [h.json()["data"]["alerts"][0]["id"] for h in receiver.attempts]
    assert sorted(ids) == sorted(f"r{index}" for index in range(20))
    assert len({h.headers["webhook-id"] for h in receiver.attempts}) == 20
    sent = [app.notifier_metrics.notifications.labels("hook", "webhook", "sent")._value.get() for app in (a, b)]
    assert sum(sent) == 20


async def test_two_ticking_replicas_on_one_stream_do_not_duplicate(
    js: JetStreamContext, receiver: ScriptedReceiver, notifier_factory: AppFactory
) -> None:
    """Two replicas consuming and ticking every 20 ms deliver 30 alerts once each."""
    config = webhook_config(receiver.url(), route=PER_ALERT.replace("30s", "0s"))
    await notifier_factory(config, instance="replica-a", tick=0.02)
    await notifier_factory(config, instance="replica-b", tick=0.02)
    for index in range(30):
        await publish_alert(js, make_alert(f"t{index}"))
    await receiver.wait_for(30)
    await asyncio.sleep(0.5)  # many more ticks on both replicas: nothing else is sent
    ids = [h.json()["data"]["alerts"][0]["id"] for h in receiver.attempts]
    assert sorted(ids) == sorted(f"t{index}" for index in range(30))


def _spawn_notifier(nats_url: str, config_path: Path, tmp: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{REPO / 'shared'}:{REPO}",
        "VEILLE_NATS_URL": nats_url,
        "VEILLE_CONFIG": str(config_path),
        "VEILLE_INSTANCE": "victim",
        "VEILLE_NOTIFIER_LEASE": "2",
        "VEILLE_NOTIFIER_TICK": "0.1",
        "VEILLE_HTTP_PORT": "0",
        "VEILLE_LOG_FORMAT": "json",
    }
    log = (tmp / "victim.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "services.notifier"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _config_file(tmp: Path, url: str) -> Path:
    path = tmp / "veille.yaml"
    path.write_text(
        f"""
version: 1
watches: [{{name: acme, query: acme}}]
receivers:
  - name: hook
    webhook:
      - url: {url}
        secret: {SECRET}
route:
  receiver: hook
  group_wait: 0s
"""
    )
    return path


async def _log_states(js: JetStreamContext) -> list[str]:
    kv = await js.key_value(bus.NOTIFY_LOG.name)
    keys = await kv_keys(js, bus.NOTIFY_LOG.name)
    return [Claim.model_validate_json((await kv.get(k)).value).state for k in keys]


async def test_notifier_killed_while_sending_resends_the_same_notification_only(
    js: JetStreamContext,
    receiver: ScriptedReceiver,
    notifier_factory: AppFactory,
    nats_server: NatsServerProcess,
    tmp_path: Path,
) -> None:
    """SIGKILL while the receiver holds the request: a replica resends it after the lease, same id and bytes."""
    receiver.hold = asyncio.Event()
    config_path = _config_file(tmp_path, receiver.url())
    victim = _spawn_notifier(nats_server.url, config_path, tmp_path)
    try:
        await publish_alert(js, make_alert("alert-kill"))
        [first] = await receiver.wait_for(1, attempts=True, timeout=30)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=10)
    receiver.hold.set()  # the receiver accepts the request the dead notifier never heard back from
    await receiver.wait_for(1)
    assert await _log_states(js) == ["claimed"]

    survivor = await notifier_factory(webhook_config(receiver.url()), instance="survivor", tick=0.1, lease=2.0)
    attempts = await receiver.wait_for(2, attempts=True, timeout=30)
    await survivor.dispatcher.drain()
    second = attempts[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body
    assert await _log_states(js) == ["sent"]
    await asyncio.sleep(0.5)
    assert len(receiver.attempts) == 2
    assert len({h.headers["webhook-id"] for h in receiver.hits}) == 1  # a receiver deduping on webhook-id sees one


async def test_notifier_killed_after_delivery_does_not_send_again(
    js: JetStreamContext,
    receiver: ScriptedReceiver,
    notifier_factory: AppFactory,
    nats_server: NatsServerProcess,
    tmp_path: Path,
) -> None:
    """SIGKILL once the log says sent: the restarted notifier finds the log entry and sends nothing more."""
    victim = _spawn_notifier(nats_server.url, _config_file(tmp_path, receiver.url()), tmp_path)
    try:
        await publish_alert(js, make_alert("alert-after"))
        await receiver.wait_for(1, timeout=30)
        for _ in range(200):
            if await _log_states(js) == ["sent"]:
                break
            await asyncio.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(timeout=10)
    assert await _log_states(js) == ["sent"]
    restarted = await notifier_factory(webhook_config(receiver.url()), instance="restarted", tick=0.05, lease=2.0)
    await asyncio.sleep(1.0)
    await restarted.flush_due()
    assert len(receiver.attempts) == 1
    assert json.loads(receiver.hits[0].body)["data"]["alerts"][0]["id"] == "alert-after"
