"""veille and a real Alertmanager 0.25 (Debian's ``prometheus-alertmanager``), started by the test on loopback.

Two directions: veille's ``alertmanager`` receiver posts to Alertmanager's ``/api/v2/alerts`` (what
Alertmanager then holds is read back from the same API), and Alertmanager's own webhook (received by
a loopback server) is compared with veille's ``format: alertmanager`` webhook for the same alerts.
Reference: Alertmanager 0.25 ``api/v2/openapi.yaml`` (postableAlerts, gettableAlerts),
``notify/webhook/webhook.go`` (``Message``) and ``template/template.go`` (``Data``, ``Alert``).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from services.notifier.payload import ZERO_TIME, fingerprint, quote_meta
from tests.notifier.conftest import AppFactory, ScriptedReceiver, make_alert, publish_alert
from veille.config import VeilleConfig, parse_config
from veille.models import AlertRaised

BINARY = "prometheus-alertmanager"
AM_RECEIVER = "veille.hook-1"  # a '.' Alertmanager escapes (regexp.QuoteMeta) in its webhook's receiver field
RESOLVE_TIMEOUT = 2  # seconds: an alert posted without endsAt would be resolved this soon


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Alertmanager:
    """A running Alertmanager: its base URL and an API client."""

    url: str
    process: asyncio.subprocess.Process
    log: Path

    async def alerts(self) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts``: the alerts it holds (resolved ones are not listed)."""
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"{self.url}/api/v2/alerts")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    async def until(self, check: Callable[[list[dict[str, Any]]], bool], what: str, timeout: float = 20.0) -> Any:
        """Poll the alerts until ``check`` holds; fail naming ``what`` and the last state otherwise."""
        deadline = time.monotonic() + timeout
        alerts: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            alerts = await self.alerts()
            if check(alerts):
                return alerts
            await asyncio.sleep(0.1)
        raise AssertionError(f"Alertmanager never had {what}; it holds {alerts}")


@pytest.fixture
async def alertmanager(tmp_path: Path, receiver: ScriptedReceiver) -> AsyncIterator[Alertmanager]:
    """Alertmanager 0.25 on a free loopback port, clustering off, storage in tmp, one webhook to ``receiver``."""
    binary = shutil.which(BINARY) or (f"/usr/bin/{BINARY}" if Path(f"/usr/bin/{BINARY}").exists() else None)
    if binary is None:
        pytest.skip(f"{BINARY} is not installed; `bash scripts/ci-deps.sh` installs it from Debian's packages")
    port = _free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        f"""
global:
  resolve_timeout: {RESOLVE_TIMEOUT}s
route:
  receiver: {AM_RECEIVER}
  group_by: [watch]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: {AM_RECEIVER}
    webhook_configs:
      - url: {receiver.url("am")}
        send_resolved: true
"""
    )
    log = tmp_path / "alertmanager.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a lone instance, no port beyond the API
            "--log.level=debug",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                if process.returncode is not None:
                    raise RuntimeError(f"alertmanager exited ({process.returncode}): {log.read_text()[-2000:]}")
                try:
                    if (await client.get(f"{url}/-/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"alertmanager not ready: {log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
        yield Alertmanager(url, process, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def veille_config(
    am: Alertmanager, receiver: ScriptedReceiver, *, extra: str = "", group_wait: str = "0s"
) -> VeilleConfig:
    """veille posting to ``am`` (and, as the same receiver, an Alertmanager-format webhook to ``receiver``)."""
    return parse_config(
        f"""
version: 1
external_url: https://veille.example.com/console
watches: [{{name: acme, query: acme}}]
receivers:
  - name: {AM_RECEIVER}
    alertmanager:
      - url: {am.url}
{extra}
    webhook:
      - url: {receiver.url("veille")}
        format: alertmanager
route:
  receiver: {AM_RECEIVER}
  group_by: [watch]
  group_wait: {group_wait}
  group_interval: 1s
  repeat_interval: 4h
""",
        env={},
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _ids(alerts: list[dict[str, Any]]) -> set[str]:
    return {a["labels"].get("alert_id", "") for a in alerts}


def _spike(alert_id: str, status: str = "firing") -> AlertRaised:
    now = _now()
    return make_alert(
        alert_id,
        kind="volume_spike",
        status=status,
        raised_at=now,
        started_at=now - timedelta(minutes=5),
        ends_at=now if status == "resolved" else None,
        observed=119.0,
        expected=37.0,
    )


async def test_each_mention_is_its_own_alert_in_alertmanager(
    js: JetStreamContext, receiver: ScriptedReceiver, alertmanager: Alertmanager, notifier_factory: AppFactory
) -> None:
    """40 negative mentions of one watch posted by veille are 40 alerts in Alertmanager, not one merged alert."""
    await notifier_factory(veille_config(alertmanager, receiver), tick=0.1)
    sent = [make_alert(f"alert-m{i:03d}", raised_at=_now(), text=f"Acme outage report #{i}") for i in range(40)]
    for alert in sent:
        await publish_alert(js, alert)
    held = await alertmanager.until(lambda alerts: len(alerts) >= 40, "40 alerts")
    assert len(held) == 40 and _ids(held) == {a.id for a in sent}
    assert len({a["fingerprint"] for a in held}) == 40
    assert {a["status"]["state"] for a in held} == {"active"}
    one = next(a for a in held if a["labels"]["alert_id"] == "alert-m007")
    assert one["labels"]["alertname"] == "negative_mention" and one["labels"]["watch"] == "acme"
    assert one["labels"]["team"] == "comms" and "language" not in one["labels"]
    assert one["annotations"]["summary"].startswith("Negative mention of acme")
    assert one["generatorURL"] == "https://veille.example.com/console"
    # The fingerprint veille computes for its webhooks is the one Alertmanager gives the alert.
    assert one["fingerprint"] == fingerprint(one["labels"])
    assert datetime.fromisoformat(one["endsAt"].replace("Z", "+00:00")) > _now()  # an explicit, future end


async def test_a_firing_spike_stays_active_while_renewed_and_resolved_closes_it(
    js: JetStreamContext, receiver: ScriptedReceiver, alertmanager: Alertmanager, notifier_factory: AppFactory
) -> None:
    """A spike outlives Alertmanager's resolve_timeout and its first endsAt because veille re-posts it;
    veille's resolution closes it in Alertmanager, which then sends its own resolved webhook."""
    config = veille_config(alertmanager, receiver, extra="        resend_interval: 1s\n        ends_after: 4s")
    await notifier_factory(config, tick=0.1)
    await publish_alert(js, _spike("alert-spike"))
    first = await alertmanager.until(lambda alerts: _ids(alerts) == {"alert-spike"}, "the spike")
    first_end = datetime.fromisoformat(first[0]["endsAt"].replace("Z", "+00:00"))

    # Wait until the first endsAt (and the resolve_timeout after the first post) lie in the past.
    await asyncio.sleep(max(0.0, (first_end + timedelta(seconds=RESOLVE_TIMEOUT / 2) - _now()).total_seconds()))
    later = await alertmanager.alerts()
    assert _ids(later) == {"alert-spike"}, "the spike was resolved while veille still had it firing"
    assert later[0]["status"]["state"] == "active"
    assert datetime.fromisoformat(later[0]["endsAt"].replace("Z", "+00:00")) > first_end  # renewed
    am_hooks = [h.json() for h in receiver.hits if h.path == "/am"]
    assert am_hooks and all(hook["status"] == "firing" for hook in am_hooks)

    await publish_alert(js, _spike("alert-spike", status="resolved"))
    await alertmanager.until(lambda alerts: not alerts, "no alert left (the spike resolved)", timeout=10)
    deadline = time.monotonic() + 15
    while not any(h.path == "/am" and h.json()["status"] == "resolved" for h in receiver.hits):
        assert time.monotonic() < deadline, "Alertmanager never sent its resolved webhook"
        await asyncio.sleep(0.1)
    resolved = next(h.json() for h in receiver.hits if h.path == "/am" and h.json()["status"] == "resolved")
    assert resolved["alerts"][0]["labels"]["alert_id"] == "alert-spike"
    # veille's own Alertmanager-format webhook of the resolution has Alertmanager's shape too.
    deadline = time.monotonic() + 10
    while not any(h.path == "/veille" and h.json()["status"] == "resolved" for h in receiver.hits):
        assert time.monotonic() < deadline, "veille never sent its resolved Alertmanager-format webhook"
        await asyncio.sleep(0.1)
    ours = next(h.json() for h in receiver.hits if h.path == "/veille" and h.json()["status"] == "resolved")
    assert shape(ours) == shape(resolved)
    assert ours["alerts"][0]["endsAt"] != ZERO_TIME and resolved["alerts"][0]["endsAt"] != ZERO_TIME


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys in order, the types of the leaves (lists by their first item)."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


_VARYING = {"groupKey", "externalURL"}  # Alertmanager's own route key and URL; veille's are its own


async def test_the_alertmanager_format_is_what_alertmanager_posts(
    js: JetStreamContext, receiver: ScriptedReceiver, alertmanager: Alertmanager, notifier_factory: AppFactory
) -> None:
    """For the same two alerts, veille's `format: alertmanager` webhook and Alertmanager's own webhook have
    the same keys in the same order and the same types, and agree on receiver, labels, common labels and
    annotations, fingerprints and times (a firing alert's endsAt is the zero time in both)."""
    await notifier_factory(veille_config(alertmanager, receiver, group_wait="2s"), tick=0.1)
    now = _now()
    spike = make_alert("alert-both-1", kind="volume_spike", raised_at=now, started_at=now - timedelta(minutes=5))
    mention = make_alert("alert-both-2", raised_at=now, text="Acme's outage is a disaster, again")
    for alert in (spike, mention):
        await publish_alert(js, alert)

    def two_alerts(path: str) -> dict[str, Any] | None:
        return next((h.json() for h in receiver.hits if h.path == path and len(h.json()["alerts"]) == 2), None)

    deadline = time.monotonic() + 20
    while two_alerts("/am") is None or two_alerts("/veille") is None:
        assert time.monotonic() < deadline, f"webhooks received: {[h.path for h in receiver.hits]}"
        await asyncio.sleep(0.1)
    theirs, ours = two_alerts("/am"), two_alerts("/veille")
    assert theirs is not None and ours is not None

    assert shape(ours) == shape(theirs)
    for key, value in theirs.items():
        if key not in _VARYING and key != "alerts":
            assert ours[key] == value, key
    assert ours["receiver"] == quote_meta(AM_RECEIVER) == "veille\\.hook-1"
    # What the two alerts share, as sent: no alertname (their kinds differ), no empty or duplicate label.
    assert ours["commonLabels"] == {
        "watch": "acme",
        "team": "comms",
        "severity": "warning",
        "lang": "en",
        "source": "rss",
    }
    assert ours["commonAnnotations"] == {
        "description": "Acme down",
        "mention_count": "1",
        "mention_url": "https://news.example/a",
    }
    by_id = {a["labels"]["alert_id"]: a for a in theirs["alerts"]}
    for alert in ours["alerts"]:
        assert alert == by_id[alert["labels"]["alert_id"]]
    assert {a["endsAt"] for a in ours["alerts"]} == {ZERO_TIME}
