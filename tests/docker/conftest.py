"""The compose stack on a real Docker engine: docker-compose.yml + deploy/compose.test.yml, up once.

These tests run only through `make test-docker` (scripts/docker-test.sh), which provides the engine
and builds the images first; `make test` does not collect them (``collect_ignore_glob`` below).
When the script found that Docker cannot run here it says why in ``VEILLE_DOCKER_SKIP``, and every
test skips with that reason. The stack is started once per session and taken down, volumes
included, at the end; the tests that restart parts of it run last (file names are ordered).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = [REPO / "docker-compose.yml", REPO / "deploy" / "compose.test.yml"]
TEST_CONFIG = "./deploy/test/veille.yaml"
WEBHOOK_SECRET = "whsec_ZG9ja2VyLXRlc3Qtc2VjcmV0LWxvb3BiYWNrLW9ubHk="  # deploy/test/veille.yaml
# Services compose.test.yml leaves out (no Debian package, no registry): profile "registry-only".
LEFT_OUT = {"grafana", "mailpit", "nats-exporter"}
ONE_SHOT = {"nats-topology"}

if not os.environ.get("VEILLE_DOCKER_TESTS"):
    # `make test` (plain pytest) never starts Docker: only `make test-docker` runs these.
    collect_ignore_glob = ["test_*.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Bringing the stack up (vfs copies the whole image for each of its containers) and the restart
    tests take minutes on a busy machine: far more than the suite's default 300-second timeout."""
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.timeout(1500))


def compose_command() -> list[str]:
    """``docker compose`` (v2) when the CLI has it, else ``docker-compose`` (v1), as the Makefile picks."""
    if os.environ.get("VEILLE_COMPOSE"):
        return os.environ["VEILLE_COMPOSE"].split()
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for the ports compose publishes)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; on failure the error says the command and its output."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    return proc


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 1.0) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def filled_env(path: Path, extra: dict[str, str]) -> dict[str, str]:
    """A copy of .env.example with every empty password set to its own random value, plus ``extra``."""
    lines = []
    values: dict[str, str] = {}
    for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name.isupper() and not name.startswith("#"):
            if "PASSWORD" in name and value == "":
                value = secrets.token_hex(16)
            if name.endswith("_PORT") and value.isdigit():
                value = str(free_port())  # every published port: free ones, whatever else runs here
            if name in extra:
                value = extra.pop(name)
            line = f"{name}={value}"
            values[name] = value
        lines.append(line)
    for name, value in extra.items():
        lines.append(f"{name}={value}")
        values[name] = value
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o600)
    return values


@dataclass
class Stack:
    """The running compose project and what the tests need to reach it."""

    project: str
    env_file: Path
    env: dict[str, str]
    workdir: Path
    compose: list[str] = field(default_factory=compose_command)

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run compose on this project with the test override and the filled .env."""
        files = [arg for f in COMPOSE_FILES for arg in ("-f", str(f))]
        cmd = [*self.compose, "--project-directory", str(REPO), "-p", self.project, *files]
        cmd += ["--env-file", str(self.env_file), *args]
        # Creating a container copies its whole image with the vfs storage driver: on a busy machine
        # that takes longer than docker-compose v1's default 60-second API timeout.
        env = {**os.environ, "COMPOSE_HTTP_TIMEOUT": "600", "DOCKER_CLIENT_TIMEOUT": "600"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd[len(self.compose) :])} failed: {proc.stderr[-3000:]}")
        return proc

    def services(self) -> list[str]:
        """Every service compose would start (profiles left out)."""
        config = self.run("config", "--services").stdout.split()
        return [name for name in config if name not in LEFT_OUT]

    def container(self, service: str) -> str:
        """The id of ``service``'s (single) container (by compose's labels: the docker CLI is much
        faster than docker-compose v1 on a busy machine)."""
        labels = [f"label=com.docker.compose.project={self.project}", f"label=com.docker.compose.service={service}"]
        ids = docker("ps", "-a", "-q", *(arg for label in labels for arg in ("--filter", label))).stdout.split()
        assert len(ids) == 1, f"{service}: expected one container, found {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict[str, Any]:
        """``docker inspect`` of ``service``'s container."""
        data: list[dict[str, Any]] = json.loads(docker("inspect", self.container(service)).stdout)
        return data[0]

    def health(self, service: str) -> str:
        """``healthy``, ``starting``, ``unhealthy``, or the state when the container has no health check."""
        state = self.inspect(service)["State"]
        return str(state["Health"]["Status"]) if state.get("Health") else str(state["Status"])

    def wait_healthy(self, timeout: float = 300) -> None:
        """Wait until every long-running service is healthy and nats-topology exited 0."""

        services = self.services()

        def all_healthy() -> bool:
            for service in services:
                if service in ONE_SHOT:
                    state = self.inspect(service)["State"]
                    if state["Status"] != "exited":
                        return False
                    assert state["ExitCode"] == 0, f"{service} exited {state['ExitCode']}: {self.logs(service)}"
                elif self.health(service) != "healthy":
                    return False
            return True

        try:
            wait_for(all_healthy, timeout, "every service healthy", interval=2)
        except AssertionError as exc:
            states = {s: self.health(s) for s in services}
            raise AssertionError(f"{exc}: {states}") from None

    def exec(self, service: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in ``service``'s running container (as its own user)."""
        return docker("exec", self.container(service), *cmd, check=check)

    def http_get(self, service: str, path: str, port: int = 8080) -> str:
        """GET ``path`` on ``service``'s unpublished port, from inside its own container."""
        url = f"http://127.0.0.1:{port}{path}"
        code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
        return self.exec(service, "python", "-c", code).stdout

    def logs(self, service: str) -> str:
        """The last lines of ``service``'s logs."""
        return self.run("logs", "--no-color", "--tail", "40", service, check=False).stdout

    # ---- the stand-ins ------------------------------------------------------------------------
    @property
    def feed_file(self) -> Path:
        return self.workdir / "feed" / "feed.atom"

    def write_feed(self, entries: list[dict[str, str]]) -> None:
        """Serve an Atom feed of ``entries`` (id, title, summary, link), replaced atomically."""
        self.feed_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.feed_file.with_suffix(".tmp")
        tmp.write_text(atom(entries), encoding="utf-8")
        tmp.chmod(0o644)
        os.replace(tmp, self.feed_file)

    def deliveries(self) -> list[dict[str, Any]]:
        """Every request the webhook receiver wrote down, oldest first, body decoded."""
        log = self.workdir / "webhook" / "webhook.jsonl"
        if not log.exists():
            return []
        out = []
        for line in log.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            record["raw"] = base64.b64decode(record["body"])
            out.append(record)
        return out

    # ---- NATS from the host, through the published port -----------------------------------------
    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.env['NATS_PORT']}"

    def nats_call(self, action: Callable[[Any], Any], **connect: Any) -> Any:
        """Run ``await action(jetstream)`` on a connection as the admin user (or ``connect``'s options)."""
        options = connect or {"user": "veille", "password": self.env["VEILLE_NATS_PASSWORD"]}

        async def main() -> Any:
            nc = await nats.connect(
                self.nats_url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5, **options
            )
            try:
                return await action(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(main())


ATOM_ENTRY = """  <entry>
    <title>{title}</title>
    <link href="{link}"/>
    <id>{id}</id>
    <updated>{updated}</updated>
    <summary>{summary}</summary>
  </entry>
"""


def atom(entries: list[dict[str, str]]) -> str:
    """An Atom 1.0 feed (RFC 4287) with ``entries``, newest first as feeds usually are."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    body = "".join(ATOM_ENTRY.format(updated=entry.get("updated", now), **entry) for entry in entries)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n'
        "  <title>Actualités</title>\n  <id>urn:uuid:5d1f0e6e-0d7a-4c0e-9a57-6f0c1dbb0a11</id>\n"
        f'  <updated>{now}</updated>\n  <link href="http://feed:8000/"/>\n{body}</feed>\n'
    )


def skip_reason() -> str | None:
    """Why Docker cannot run here, as scripts/docker-test.sh found or as checked now; None if it can."""
    if os.environ.get("VEILLE_DOCKER_SKIP"):
        return os.environ["VEILLE_DOCKER_SKIP"]
    if not shutil.which("docker"):
        return "no docker command"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip()[-300:]}"
    for image in (os.environ.get("APP_IMAGE", "veille:local"), os.environ.get("TESTBED_IMAGE", "veille-testbed:local")):
        if docker("image", "inspect", image, check=False).returncode != 0:
            return f"image {image} is missing: run `make test-docker`, which builds it"
    return None


@pytest.fixture(scope="session")
def docker_ready() -> None:
    """Skip (with the reason found) when Docker cannot run the stack here."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def stack(docker_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """docker-compose.yml + deploy/compose.test.yml up and healthy; down with its volumes afterwards."""
    workdir = tmp_path_factory.mktemp("compose")
    (workdir / "webhook").mkdir()
    (workdir / "feed").mkdir()
    for sub in ("webhook", "feed"):
        (workdir / sub).chmod(0o777)
    project = f"veilletest{os.getpid()}"
    env_file = workdir / "env"
    env = filled_env(
        env_file,
        {
            "COMPOSE_PROJECT_NAME": project,
            "APP_IMAGE": os.environ.get("APP_IMAGE", "veille:local"),
            "TESTBED_IMAGE": os.environ.get("TESTBED_IMAGE", "veille-testbed:local"),
            "APP_CONFIG_FILE": TEST_CONFIG,
            "VEILLE_TEST_DIR": str(workdir),
        },
    )
    s = Stack(project=project, env_file=env_file, env=env, workdir=workdir)
    s.write_feed([])
    try:
        try:
            s.run("up", "-d", "--no-build")
            s.wait_healthy()
        except AssertionError:
            print("\n".join(f"---- {name}\n{s.logs(name)}" for name in s.services()))
            raise
        yield s
    finally:
        if os.environ.get("VEILLE_DOCKER_KEEP"):
            print(f"\nVEILLE_DOCKER_KEEP: project {project} left running, env file {env_file}")
        else:
            s.run("down", "-v", "--remove-orphans", "--timeout", "20", check=False)


def prometheus_get(stack: Stack, path: str) -> Any:
    """GET ``path`` on Prometheus' published port; the ``data`` of its JSON answer."""
    url = f"http://127.0.0.1:{stack.env['PROMETHEUS_PORT']}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]
