"""`veille demo` end to end: the scripted crisis raises real alerts in the webhook sink and the mail catcher."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.helpers.stack import StackProcess
from veille.demo import SCRIPT, WATCH

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def _kinds(jsonl: Path) -> dict[str, int]:
    kinds: dict[str, int] = {}
    if not jsonl.exists():
        return kinds
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        for alert in json.loads(line)["body"]["data"]["alerts"]:
            if alert["status"] == "firing":
                kinds[alert["kind"]] = kinds.get(alert["kind"], 0) + 1
    return kinds


def test_the_script_is_bilingual_with_a_calm_baseline_a_surge_and_a_recovery() -> None:
    """The crisis script speaks French and English and is calm, then about seven times busier, then calm."""
    calm = [i for i in SCRIPT if i.at < 60]
    surge = [i for i in SCRIPT if 60 <= i.at < 95]
    after = [i for i in SCRIPT if i.at >= 95]
    assert len(surge) / 35 > 5 * len(calm) / 60 and len(surge) / 35 > 5 * len(after) / (max(i.at for i in after) - 95)
    titles = {i.title for i in surge}
    assert len([i for i in surge if i.title in titles]) > len(titles), "syndicated copies of one story"
    assert any("bière" in i.title for i in SCRIPT) and any("beer" in i.title for i in SCRIPT)


def test_demo_raises_a_spike_and_negative_mention_alerts(tmp_path: Path) -> None:
    """Run as a newcomer would, veille demo's scripted crisis makes the real pipeline send a spike alert and
    negative-mention alerts to the webhook sink, and mail to the mail catcher."""
    data_dir = tmp_path / "var"
    stack = StackProcess("demo", data_dir)
    hooks = data_dir / "webhooks" / f"{WATCH}.jsonl"
    try:
        stack.wait_for_line(r"^\s*export VEILLE_NATS_URL=nats://")
        while not (
            {"negative_mention"} <= _kinds(hooks).keys()
            and _kinds(hooks).keys() & {"volume_spike", "negative_spike"}
            and list((data_dir / "mail").glob("*.eml"))
        ):
            assert stack.process.poll() is None, "\n".join(stack.stderr[-30:])
            time.sleep(1)
    finally:
        code = stack.stop()
    assert code == 0, "\n".join(stack.stderr[-30:])
    mails = [p.read_text(errors="replace") for p in (data_dir / "mail").glob("*.eml")]
    assert any(WATCH in mail for mail in mails)
