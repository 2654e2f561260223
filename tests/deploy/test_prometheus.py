"""Prometheus configuration, alert rules and Grafana provisioning, checked with promtool and by reading them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from services import SERVICES
from tests.deploy.conftest import REPO, require_tool

PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "veille.yml"
RULE_TESTS = PROMETHEUS / "tests" / "veille.test.yml"
GRAFANA = REPO / "deploy" / "grafana"
OPERATIONS = REPO / "docs" / "operations.md"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    """Run promtool from the repository root."""
    exe = require_tool("promtool")
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of veille's rules file."""
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"] if "alert" in rule]


def markdown_anchors(path: Path) -> set[str]:
    """GitHub-style anchors of a Markdown file's headings."""
    anchors = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_promtool_accepts_the_prometheus_configuration() -> None:
    """`promtool check config` accepts prometheus.yml and the rule files it loads."""
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rules/veille.yml" in result.stdout + result.stderr


def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` accepts veille's alert rules."""
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests() -> None:
    """`promtool test rules` passes: each alert fires on the series it is about, and stays quiet otherwise."""
    result = promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_is_unit_tested() -> None:
    """Each alert rule's name appears in an expectation of the promtool unit tests."""
    tested = set(re.findall(r"alertname:\s*(\w+)", RULE_TESTS.read_text(encoding="utf-8")))
    assert {rule["alert"] for rule in alert_rules()} <= tested


def test_every_alert_has_a_severity_a_summary_and_a_runbook_in_the_operations_guide() -> None:
    """Each alert says how bad it is and what it means, and links to its section of docs/operations.md."""
    anchors = markdown_anchors(OPERATIONS)
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, anchor = annotations["runbook"].partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/operations.md has no section for {rule['alert']}"


def test_prometheus_scrapes_every_service_and_nats() -> None:
    """prometheus.yml has one job per veille service (each replica found by DNS) and one for NATS."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICES:
        assert name in jobs, f"no scrape job for {name}"
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [name] and sd["port"] == 8080 and sd["type"] == "A"
    assert jobs["nats"]["static_configs"][0]["targets"] == ["nats-exporter:7777"]
    assert config["rule_files"] == ["rules/*.yml"]


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    """The datasource points at the compose Prometheus and the dashboard provider at the mounted folder."""
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "veille.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (GRAFANA / "dashboards" / "veille.json").is_file()


def test_dashboard_is_generated_and_well_formed() -> None:
    """The committed dashboard is what scripts/gen_dashboard.py makes; panels have unique ids and fit the grid."""
    result = subprocess.run(
        [sys.executable, "scripts/gen_dashboard.py", "--check"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    dashboard = json.loads((GRAFANA / "dashboards" / "veille.json").read_text(encoding="utf-8"))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "Mentions per source",
        "Mentions per watch",
        "Sentiment mix per watch",
        "Alerts raised by watch and kind",
        "Notification outcomes",
        "Delivery latency",
        "Consumer lag",
    ):
        assert wanted in titles
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"] and panel["description"], panel["title"]
