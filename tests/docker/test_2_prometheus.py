"""Prometheus, with docker-compose.yml's configuration, scrapes every service and loads every rule."""

from __future__ import annotations

from typing import Any

import yaml

from tests.docker.conftest import REPO, Stack, prometheus_get, wait_for

PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
# The "nats" job scrapes nats-exporter, which compose.test.yml leaves out (no Debian package, no
# registry): its one target is down by construction here, and is checked to be exactly that one.
LEFT_OUT_JOBS = {"nats": ["nats-exporter:7777"]}


def configured_jobs() -> list[str]:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    return [job["job_name"] for job in config["scrape_configs"]]


def configured_rules() -> set[str]:
    names = set()
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                names.add(rule.get("alert") or rule["record"])
    return names


def test_every_scrape_target_is_up(stack: Stack) -> None:
    """Each job of prometheus.yml finds its service by DNS and scrapes it successfully."""
    jobs = configured_jobs()

    def targets_by_job() -> dict[str, list[dict[str, Any]]] | None:
        active = prometheus_get(stack, "/api/v1/targets?state=active")["activeTargets"]
        out: dict[str, list[dict[str, Any]]] = {}
        for target in active:
            out.setdefault(target["labels"]["job"], []).append(target)
        ready = all(
            out.get(job) and all(t["health"] == "up" for t in out[job]) for job in jobs if job not in LEFT_OUT_JOBS
        )
        return out if ready else None

    try:
        found = wait_for(targets_by_job, 120, "every scrape target up", interval=3)
    except AssertionError:
        active = prometheus_get(stack, "/api/v1/targets?state=active")["activeTargets"]
        summary = [(t["labels"]["job"], t["scrapeUrl"], t["health"], t["lastError"]) for t in active]
        raise AssertionError(f"not every target is up: {summary}") from None
    for job, addresses in LEFT_OUT_JOBS.items():
        assert sorted(t["labels"]["instance"] for t in found.get(job, [])) == addresses
    for job in jobs:
        if job not in LEFT_OUT_JOBS:
            assert found[job], job


def test_every_rule_is_loaded_and_evaluates(stack: Stack) -> None:
    """The rule files docker-compose.yml mounts are loaded in full, and every rule evaluates without error."""
    expected = configured_rules()
    assert expected

    def evaluated() -> dict[str, dict[str, Any]] | None:
        groups = prometheus_get(stack, "/api/v1/rules")["groups"]
        rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
        done = rules.keys() >= expected and all(rule["health"] != "unknown" for rule in rules.values())
        return rules if done else None

    rules = wait_for(evaluated, 90, "every rule loaded and evaluated", interval=3)
    assert set(rules) == expected
    broken = {name: rule.get("lastError") for name, rule in rules.items() if rule["health"] != "ok"}
    assert broken == {}
