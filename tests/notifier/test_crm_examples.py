"""docs/examples/: one webhook body per alert kind and status, made by veille's own code, valid, up to date.

A CRM developer builds a parser from these files; they must be what the notifier sends today. The
generator (scripts/make_examples.py) runs a scripted crisis through the classifier's surge detectors
and the notifier's routing, grouping and webhook rendering; this test re-runs it and compares.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.notifier.conftest import validate_payload

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
EXPECTED = [
    "volume_spike-firing",
    "volume_spike-resolved",
    "negative_spike-firing",
    "negative_spike-resolved",
    "negative_mention-firing",
]


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _generator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/make_examples.py", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_committed_examples_are_what_the_code_makes_today() -> None:
    """`make examples` was run after the last change to the payload, the detectors or the routing."""
    result = _generator("--check")
    assert result.returncode == 0, result.stderr


def test_the_check_names_a_stale_or_stray_file(tmp_path: Path) -> None:
    out = tmp_path / "examples"
    shutil.copytree(EXAMPLES, out)
    body = _load(out / "volume_spike-firing.json")
    body["data"]["alerts"][0]["observed"] = 1.0
    (out / "volume_spike-firing.json").write_text(json.dumps(body, indent=2), encoding="utf-8")
    (out / "old-kind.json").write_text("{}", encoding="utf-8")
    result = _generator("--check", "--out", str(out))
    assert result.returncode == 1
    assert "volume_spike-firing.json is out of date: run `make examples`" in result.stderr
    assert "old-kind.json is not made by scripts/make_examples.py" in result.stderr


@pytest.mark.parametrize("name", EXPECTED)
def test_each_example_is_a_valid_veille_body_of_its_kind(name: str) -> None:
    """Valid against the shipped JSON Schema, formats included, and of the kind and status its name says."""
    body = _load(EXAMPLES / f"{name}.json")
    validate_payload(body)
    kind, status = name.split("-")
    data = body["data"]
    assert body["type"] == f"veille.alerts.{status}"
    assert data["status"] == status
    assert data["alerts"], "an example lists its alerts"
    assert {a["kind"] for a in data["alerts"]} == {kind}
    assert {a["status"] for a in data["alerts"]} == {status}
    for alert in data["alerts"]:
        assert alert["samples"], "a reader sees why the alert fired"
        if status == "resolved":
            assert alert["ends_at"] is not None
    if kind == "negative_mention":
        assert {a["lang"] for a in data["alerts"]} == {"en", "fr"}, "the group shows mentions in both languages"
    else:
        assert data["alerts"][0]["observed"] > data["alerts"][0]["expected"]


def test_a_resolved_surge_carries_the_id_of_the_alert_that_fired() -> None:
    """What a CRM keys a case on: the alert id is the same in the firing and the resolved body."""
    for kind in ("volume_spike", "negative_spike"):
        firing = _load(EXAMPLES / f"{kind}-firing.json")["data"]
        resolved = _load(EXAMPLES / f"{kind}-resolved.json")["data"]
        assert firing["alerts"][0]["id"] == resolved["alerts"][0]["id"]
        assert firing["group_key"] == resolved["group_key"]
        assert firing["notification_id"] != resolved["notification_id"]


def test_the_validation_checks_date_time_formats() -> None:
    """The schema check is not a formality: a malformed date in an example is refused."""
    body = _load(EXAMPLES / "negative_spike-firing.json")
    broken = copy.deepcopy(body)
    broken["data"]["alerts"][0]["raised_at"] = "2025-11-12 09:45"
    with pytest.raises(jsonschema.ValidationError, match="date-time"):
        validate_payload(broken)
    broken = copy.deepcopy(body)
    broken["timestamp"] = "2025-02-30T09:45:00Z"
    with pytest.raises(jsonschema.ValidationError):
        validate_payload(broken)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_alertmanager_example_matches_its_veille_twin(name: str) -> None:
    """The `format: alertmanager` file tells the same alerts (version 4 body)."""
    body = _load(EXAMPLES / "alertmanager" / f"{name}.json")
    twin = _load(EXAMPLES / f"{name}.json")["data"]
    assert body["version"] == "4"
    assert body["status"] == twin["status"]
    assert [a["labels"]["alertname"] for a in body["alerts"]] == [a["kind"] for a in twin["alerts"]]
    assert [a["annotations"]["summary"] for a in body["alerts"]] == [a["summary"] for a in twin["alerts"]]
