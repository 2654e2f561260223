"""The NATS configurations of deploy/nats/, run by a real nats-server on loopback."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats
import pytest
from nats.errors import Error as NatsError

from services import SERVICES
from tests.deploy.conftest import REPO
from veille import bus
from veille.natsauth import authorization_block, password_variable
from veille.natsserver import NatsServerProcess, find_nats_server, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

NATS_CONF = REPO / "deploy" / "nats" / "nats.conf"
CLUSTER_CONF = REPO / "deploy" / "nats" / "cluster.conf"
PASSWORD = "test-only-password"
SERVICE_PASSWORDS = {password_variable(name): f"{name}-test-only" for name in SERVICES}


@dataclass
class ConfiguredNats(NatsServerProcess):
    """nats-server run with one of our configuration files, its store moved under ``store_dir``."""

    config: Path = NATS_CONF

    def command(self) -> list[str]:
        """Our file with its store directory replaced, and the listen and monitoring ports on loopback."""
        text = self.config.read_text(encoding="utf-8").replace("/data/jetstream", str(self.store_dir))
        path = self.store_dir.parent / f"{self.store_dir.name}.conf"
        path.write_text(text, encoding="utf-8")
        cmd = [find_nats_server(), "-c", str(path), "-a", self.host, "-p", str(self.port)]
        if self.server_name:
            cmd += ["-n", self.server_name]
        if self.monitor_port:
            cmd += ["-m", str(self.monitor_port)]
        if self.log_file:
            cmd += ["-l", str(self.log_file)]
        return cmd


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``nats-server -t -c path`` with only ``env``."""
    return subprocess.run(
        [find_nats_server(), "-t", "-c", str(path)], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_nats_server_accepts_both_configurations() -> None:
    """`nats-server -t` accepts nats.conf and cluster.conf once their variables are set."""
    result = check_config(NATS_CONF, {"VEILLE_NATS_PASSWORD": "x", **SERVICE_PASSWORDS})
    assert result.returncode == 0, result.stderr
    result = check_config(
        CLUSTER_CONF, {"VEILLE_NATS_PASSWORD": "x", "NATS_SERVER_NAME": "nats-1", **SERVICE_PASSWORDS}
    )
    assert result.returncode == 0, result.stderr


def test_both_configurations_hold_exactly_the_users_generated_from_bus() -> None:
    """The users and permissions of nats.conf and cluster.conf are `veille nats-users`'s output."""
    block = authorization_block(SERVICES)
    for path in (NATS_CONF, CLUSTER_CONF):
        assert block in path.read_text(encoding="utf-8"), f"{path}: regenerate with veille nats-users"


def test_nats_server_refuses_the_configuration_without_a_service_password() -> None:
    """Without one service's password in its environment, NATS does not start rather than accept anyone."""
    env = {"VEILLE_NATS_PASSWORD": "x", **SERVICE_PASSWORDS}
    missing = password_variable("ingest-rss")
    del env[missing]
    result = check_config(NATS_CONF, env)
    assert result.returncode != 0
    assert missing in result.stderr


def test_nats_server_refuses_the_configuration_without_the_password() -> None:
    """Without VEILLE_NATS_PASSWORD in its environment, NATS does not start rather than accept anyone."""
    result = check_config(NATS_CONF, SERVICE_PASSWORDS)
    assert result.returncode != 0
    assert "VEILLE_NATS_PASSWORD" in result.stderr


@pytest.fixture
def configured_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsServerProcess]:
    """nats-server run with deploy/nats/nats.conf (ports and store moved to loopback and tmp_path)."""
    monkeypatch.setenv("VEILLE_NATS_PASSWORD", PASSWORD)
    for name, value in SERVICE_PASSWORDS.items():
        monkeypatch.setenv(name, value)
    server = ConfiguredNats(store_dir=tmp_path / "store", monitor_port=free_port(), log_file=tmp_path / "nats.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_nats_requires_the_password_and_serves_jetstream(configured_nats: NatsServerProcess) -> None:
    """Clients without the right password are refused; `veille` with it gets JetStream and veille's topology."""
    url = configured_nats.url
    for servers in ([url], [url.replace("nats://", "nats://veille:wrong@")]):
        with pytest.raises((NatsError, OSError, asyncio.TimeoutError)):
            await nats.connect(servers, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
    client = await nats.connect(url, user="veille", password=PASSWORD, connect_timeout=5)
    try:
        js = client.jetstream()
        await bus.ensure_topology(js)
        await js.publish(bus.mention_subject("rss"), b"{}", headers={"Nats-Msg-Id": "m1"})
    finally:
        await client.drain()
    monitor = f"http://127.0.0.1:{configured_nats.monitor_port}"
    async with httpx.AsyncClient(timeout=5) as http:
        health = await http.get(f"{monitor}/healthz?js-enabled-only=true")  # the compose health check
        assert health.status_code == 200
        jsz = (await http.get(f"{monitor}/jsz?consumers=true&config=true")).json()  # what the exporter reads
    streams = {s["name"]: s for account in jsz["account_details"] for s in account["stream_detail"]}
    assert set(streams) >= {stream.name for stream in bus.STREAMS}
    consumers = {c["name"]: c for c in streams[bus.MENTIONS.name]["consumer_detail"]}
    assert consumers["classifier"]["num_pending"] == 1


def cluster_node_config(tmp_path: Path, index: int, cluster_ports: list[int]) -> Path:
    """cluster.conf for node ``index`` with the route addresses moved to loopback ports."""
    text = CLUSTER_CONF.read_text(encoding="utf-8")
    for node, port in enumerate(cluster_ports, start=1):
        text = text.replace(f"nats-{node}:6222", f"127.0.0.1:{port}")
    text = text.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{cluster_ports[index - 1]}")
    assert "@nats-" not in text and "://nats-" not in text and "0.0.0.0:6222" not in text
    path = tmp_path / f"node-{index}.conf"
    path.write_text(text, encoding="utf-8")
    return path


async def test_three_nodes_form_a_cluster_holding_replicated_streams(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three servers run with cluster.conf form one JetStream cluster; veille's streams get three replicas."""
    monkeypatch.setenv("VEILLE_NATS_PASSWORD", PASSWORD)
    for name, value in SERVICE_PASSWORDS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NATS_SERVER_NAME", "unused")
    cluster_ports = [free_port() for _ in range(3)]
    nodes = [
        ConfiguredNats(
            store_dir=tmp_path / f"store-{i}",
            server_name=f"nats-{i}",
            monitor_port=free_port(),
            log_file=tmp_path / f"nats-{i}.log",
            config=cluster_node_config(tmp_path, i, cluster_ports),
        )
        for i in (1, 2, 3)
    ]
    try:
        for node in nodes:
            node.start()
        urls = [node.url for node in nodes]
        client = await nats.connect(urls, user="veille", password=PASSWORD, connect_timeout=5)
        try:
            js = client.jetstream()
            deadline = time.monotonic() + 60
            while True:  # the cluster elects its metadata leader first
                try:
                    await bus.ensure_topology(js, replicas=3)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.5)
            info = await js.stream_info(bus.MENTIONS.name)
            assert info.config.num_replicas == 3
            assert info.cluster is not None and len(info.cluster.replicas or []) == 2
            ack = await js.publish(bus.mention_subject("rss"), b"{}", headers={"Nats-Msg-Id": "m1"})
            assert ack.stream == bus.MENTIONS.name
        finally:
            await client.drain()
    finally:
        for node in nodes:
            node.stop()
