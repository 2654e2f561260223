"""Every metric a dashboard panel or an alert rule uses is exported by running veille services.

The services run for real, as `python -m veille_cli run NAME` child processes (what each container
runs) against a real nats-server, with every source pointed at a loopback server. The test scrapes
each one's /metrics, probes /readyz with the image's health-check script, then starts a real
Prometheus on loopback that scrapes them and evaluates the alert rules and every dashboard query.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml
from pydantic import AnyHttpUrl

from services import SERVICES
from tests.deploy.conftest import REPO, require_tool
from tests.deploy.promql import dashboard_expressions, grafana_to_promql, metric_names, rule_expressions
from tests.helpers.servers import FeedServer
from veille import bus
from veille.config import SourcesConfig
from veille.embedded import ChildService, Supervisor
from veille.natsserver import NatsServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RULES = REPO / "deploy" / "prometheus" / "rules" / "veille.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "veille.json"
HEALTHCHECK = REPO / "deploy" / "docker" / "healthcheck.py"
START_DEADLINE = 90.0

# Metrics that are not veille's: Prometheus's own, and prometheus-nats-exporter's (names from its
# collector/jsz.go and varz mapping; the exporter runs beside NATS in docker-compose.yml).
PROMETHEUS_SYNTHETIC = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
NATS_EXPORTER = {
    "gnatsd_varz_connections",
    "jetstream_server_total_message_bytes",
    "jetstream_server_max_storage",
    "jetstream_stream_total_messages",
    "jetstream_consumer_num_pending",
}

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Loopback news</title><id>urn:veille:test</id><updated>2026-01-01T00:00:00Z</updated>
  <entry><title>Acme Corp outage: customers report a panne</title><id>urn:veille:test:1</id>
    <link href="http://127.0.0.1/acme-outage"/><updated>2026-01-01T00:00:00Z</updated>
    <summary>Acme Corp had a terrible outage today.</summary></entry>
</feed>
"""


def exported_names(text: str) -> set[str]:
    """Metric names a /metrics page exports, families with no sample yet included (from # TYPE)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "summary":
                names |= {f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(line.split("{", 1)[0].split(" ", 1)[0])
    return names


def loopback_sources(base: str) -> dict[str, Any]:
    """The `sources:` section with every source's URLs pointed at a loopback server."""
    out: dict[str, Any] = {}
    for name, field in SourcesConfig.model_fields.items():
        model = field.annotation
        overrides: dict[str, Any] = {}
        for key, sub in getattr(model, "model_fields", {}).items():
            default = sub.default
            if isinstance(default, AnyHttpUrl) or (isinstance(default, str) and default.startswith("http")):
                overrides[key] = f"{base}/{name}/{key}"
            elif isinstance(default, str) and default.startswith("ws"):
                overrides[key] = f"{base.replace('http', 'ws', 1)}/{name}/{key}"
        out[name] = overrides
    out.setdefault("rss", {})
    out["rss"].update({"interval": "1h", "feeds": [{"url": f"{base}/feed.xml", "name": "loopback"}]})
    return out


def write_config(path: Path, base: str) -> None:
    """A configuration for the services under test: loopback sources, a loopback webhook."""
    config = {
        "version": 1,
        "watches": [{"name": "acme", "query": '"Acme Corp" OR acme', "negative_alerts": True}],
        "sources": loopback_sources(base),
        "receivers": [
            {
                "name": "loopback",
                "webhook": [{"url": f"{base}/hooks/acme", "secret": "whsec_bG9jYWwtZGV2ZWxvcG1lbnQtb25seQ=="}],
            }
        ],
        "route": {"receiver": "loopback", "group_wait": "1s"},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


@dataclass
class RunningStack:
    """The services under test and what they export."""

    ports: dict[str, int]
    exported: dict[str, set[str]]
    logs: Path
    nats: NatsServerProcess

    def log_tail(self, name: str, lines: int = 30) -> str:
        """The end of a service's log, for failure messages."""
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


@pytest.fixture
def monitored_nats(tmp_path: Path) -> Iterator[NatsServerProcess]:
    """A real nats-server with its monitoring port on loopback."""
    server = NatsServerProcess(
        store_dir=tmp_path / "nats-store", monitor_port=free_port(), log_file=tmp_path / "nats.log"
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def stack(tmp_path: Path, monitored_nats: NatsServerProcess) -> AsyncIterator[RunningStack]:
    """Every service of services.SERVICES running as a child process, scraped once ready."""
    feeds = FeedServer()
    feeds.serve("/feed.xml", ATOM)
    feeds.serve_websocket("/bluesky/jetstream_url")  # an idle firehose, so ingest-bluesky is ready
    await feeds.start()
    nc = await nats.connect(monitored_nats.url)
    await bus.ensure_topology(nc.jetstream())
    await nc.drain()
    config = tmp_path / "veille.yaml"
    write_config(config, feeds.base_url)
    children = []
    for name in sorted(SERVICES):
        env = {
            "VEILLE_NATS_URL": monitored_nats.url,
            "VEILLE_CONFIG": str(config),
            "VEILLE_HTTP_HOST": "127.0.0.1",
            "VEILLE_HTTP_PORT": str(free_port()),
            # the console's UI and the archive's API listen on ports of their own (8090, 8081 by default):
            # free ones, or the stack of the test before, still stopping, makes them fail to listen
            "VEILLE_CONSOLE_PORT": "0",
            "VEILLE_ARCHIVE_API_PORT": "0",
            "VEILLE_LOG_FORMAT": "json",
            "VEILLE_DATA_DIR": str(tmp_path / "data"),
        }
        children.append(ChildService(name, env, int(env["VEILLE_HTTP_PORT"])))
    supervisor = Supervisor(children, tmp_path / "logs", backoff_initial=0.5)
    await supervisor.start()
    try:
        ports = {child.name: child.http_port for child in children}
        running = RunningStack(ports, {}, tmp_path / "logs", monitored_nats)
        async with httpx.AsyncClient(timeout=5.0) as client:
            deadline = time.monotonic() + START_DEADLINE
            for name, port in ports.items():
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        response = await client.get(f"http://127.0.0.1:{port}/metrics")
                        if response.status_code == 200:
                            running.exported[name] = exported_names(response.text)
                            break
                    if time.monotonic() > deadline:
                        pytest.fail(f"{name} never served /metrics:\n{running.log_tail(name)}")
                    await asyncio.sleep(0.2)
        yield running
    finally:
        await supervisor.stop()
        await feeds.stop()


def used_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used (alert rules and dashboard panels)."""
    used: dict[str, set[str]] = {}
    for where, expr in [
        *(("rule " + n, e) for n, e in rule_expressions(RULES)),
        *(("panel " + n, e) for n, e in dashboard_expressions(DASHBOARD)),
    ]:
        for name in metric_names(expr):
            used.setdefault(name, set()).add(where)
    return used


def wait_ready_with_healthcheck(stack: RunningStack, name: str) -> subprocess.CompletedProcess[str]:
    """Run the image's health-check script against ``name`` until it passes or the deadline."""
    env = {**os.environ, "VEILLE_HTTP_PORT": str(stack.ports[name]), "VEILLE_HTTP_HOST": "0.0.0.0"}
    deadline = time.monotonic() + START_DEADLINE
    while True:
        result = subprocess.run(
            [sys.executable, str(HEALTHCHECK), "/readyz"], capture_output=True, text=True, env=env, timeout=30
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


async def test_every_dashboard_and_rule_metric_is_exported(stack: RunningStack) -> None:
    """Each veille_* metric of the rules and the dashboard appears on some running service's /metrics."""
    exported = set().union(*stack.exported.values())
    missing: dict[str, set[str]] = {}
    for name, where in sorted(used_metrics().items()):
        if name in exported or name in PROMETHEUS_SYNTHETIC or name in NATS_EXPORTER:
            continue
        missing[name] = where
    assert not missing, "used but exported by no service:\n" + "\n".join(
        f"  {name}: {sorted(where)}" for name, where in missing.items()
    )
    for service in ("classifier", "notifier"):
        assert "veille_consumer_pending_messages" in stack.exported[service], f"{service} exports no consumer lag"
    for name, names in stack.exported.items():
        assert "veille_build_info" in names, f"{name} does not export the shared ServiceMetrics"


async def test_the_health_check_script_passes_on_every_ready_service(stack: RunningStack) -> None:
    """deploy/docker/healthcheck.py, the containers' health check, exits 0 once a service's /readyz is 200."""
    for name in stack.ports:
        result = await asyncio.to_thread(wait_ready_with_healthcheck, stack, name)
        assert result.returncode == 0, f"{name}: {result.stderr}\n{stack.log_tail(name)}"
    env = {**os.environ, "VEILLE_HTTP_PORT": str(free_port())}
    closed = await asyncio.to_thread(
        subprocess.run, [sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, env=env, timeout=30
    )
    assert closed.returncode == 1 and "refused" in closed.stderr.lower()


def start_prometheus(tmp_path: Path, targets: dict[str, int]) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus on loopback scraping ``targets`` every second with veille's rules."""
    exe = require_tool("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]} for name, p in targets.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            exe,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


async def _poll(client: httpx.AsyncClient, url: str, ok: Any, what: str, log: Path) -> Any:
    deadline = time.monotonic() + START_DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = await client.get(url)
            last = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
            if response.status_code == 200 and ok(last):
                return last
        await asyncio.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    pytest.fail(f"{what}: last answer {json.dumps(last)[:2000]}\n{tail}")


async def test_prometheus_scrapes_the_services_and_evaluates_rules_and_panels(
    stack: RunningStack, tmp_path: Path
) -> None:
    """A real Prometheus scrapes every service, evaluates each alert rule without error, and runs each panel's query."""
    process, base = start_prometheus(tmp_path, stack.ports)
    log = tmp_path / "prometheus.log"
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:

            def all_up(body: Any) -> bool:
                active = (body or {}).get("data", {}).get("activeTargets", [])
                return len(active) == len(stack.ports) and all(t["health"] == "up" for t in active)

            await _poll(client, f"{base}/api/v1/targets", all_up, "every service scraped", log)

            def evaluated(body: Any) -> bool:
                rules = [r for g in (body or {}).get("data", {}).get("groups", []) for r in g["rules"]]
                return bool(rules) and all(not r.get("lastEvaluation", "").startswith("0001") for r in rules)

            body = await _poll(client, f"{base}/api/v1/rules", evaluated, "every rule evaluated", log)
            rules = [r for g in body["data"]["groups"] for r in g["rules"]]
            assert {r["name"] for r in rules} == {name for name, _ in rule_expressions(RULES)}
            for rule in rules:
                assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"

            for title, expr in dashboard_expressions(DASHBOARD):
                query = grafana_to_promql(expr)
                response = await client.get(f"{base}/api/v1/query?query={urllib.parse.quote(query)}")
                answer = response.json()
                assert answer.get("status") == "success", f"panel {title!r}: {query}\n{answer}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
