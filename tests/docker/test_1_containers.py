"""The running containers are what docker-compose.yml promises: healthy, locked down, unpublished."""

from __future__ import annotations

import pytest

from tests.docker.conftest import ONE_SHOT, Stack

VEILLE_USER = "10001"
# /proc/PID/status of the container's `veille run ...` process (the one child of docker-init).
SERVICE_STATUS = """
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) not in (1, os.getpid()) and b"run" in open(f"/proc/{pid}/cmdline", "rb").read():
        print(open(f"/proc/{pid}/status").read())
        break
else:
    raise SystemExit("no veille run process")
"""


def veille_services(stack: Stack) -> list[str]:
    """The services running veille's image (long-running ones)."""
    app_image = stack.env["APP_IMAGE"]
    return [s for s in stack.services() if s not in ONE_SHOT and stack.inspect(s)["Config"]["Image"] == app_image]


def test_every_service_is_healthy(stack: Stack) -> None:
    """Each service's own health check passes (veille: GET /readyz on 8080) and the topology job exited 0."""
    services = stack.services()
    for expected in ("nats", "nats-topology", "prometheus", "classifier", "notifier", "ingest-rss"):
        assert expected in services
    states = {s: stack.health(s) for s in services if s not in ONE_SHOT}
    assert set(states.values()) == {"healthy"}, states
    assert len(veille_services(stack)) >= 9, "every ingestor, the classifier and the notifier"


def status_field(status: str, name: str) -> str:
    """One field of /proc/PID/status."""
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} not in /proc/self/status")


def test_read_only_root_tmpfs_and_no_capabilities(stack: Stack) -> None:
    """Every veille container: read-only /, writable tmpfs /tmp, uid 10001, no capability, no new privileges."""
    for service in veille_services(stack):
        # The service process itself (pid 1 is docker-init: compose's `init: true`).
        status = stack.exec(service, "python", "-c", SERVICE_STATUS).stdout
        assert status_field(status, "Uid").split()[0] == VEILLE_USER, service
        assert int(status_field(status, "CapEff"), 16) == 0, f"{service}: effective capabilities"
        assert int(status_field(status, "CapPrm"), 16) == 0, f"{service}: permitted capabilities"
        assert int(status_field(status, "CapBnd"), 16) == 0, f"{service}: bounding set (cap_drop: ALL)"
        assert status_field(status, "NoNewPrivs") == "1", f"{service}: no-new-privileges"
        for path in ("/opt/venv/poisoned", "/etc/veille/poisoned", "/var/lib/veille/poisoned"):
            denied = stack.exec(service, "touch", path, check=False)
            assert denied.returncode != 0 and "Read-only file system" in denied.stderr, (service, path, denied)
        assert stack.exec(service, "touch", "/tmp/scratch", check=False).returncode == 0, f"{service}: /tmp"
        mounts = stack.exec(service, "cat", "/proc/mounts").stdout.splitlines()
        root = [m.split() for m in mounts if m.split()[1] == "/"]
        assert root and "ro" in root[-1][3].split(","), f"{service}: / is mounted {root}"
        tmp = [m.split() for m in mounts if m.split()[1] == "/tmp"]
        assert tmp and tmp[-1][2] == "tmpfs", f"{service}: /tmp is {tmp}"
        host_config = stack.inspect(service)["HostConfig"]
        assert host_config["ReadonlyRootfs"] is True
        assert host_config["CapDrop"] == ["ALL"] and not host_config["CapAdd"]


def test_only_nats_prometheus_and_the_console_are_published_and_on_loopback(stack: Stack) -> None:
    """Of veille's services only the console (the crisis team's page) publishes a port, the others scale;
    what is published listens on 127.0.0.1 only."""
    published: dict[str, list[str]] = {}
    for service in stack.services():
        if service in ONE_SHOT:
            continue
        ports = stack.inspect(service)["NetworkSettings"]["Ports"] or {}
        bindings = [f"{b['HostIp']}:{b['HostPort']}" for binds in ports.values() if binds for b in binds]
        if bindings:
            published[service] = bindings
    assert set(published) == {"nats", "prometheus", "console"}, published
    for service, bindings in published.items():
        assert all(b.startswith("127.0.0.1:") for b in bindings), (service, bindings)


async def _account_info(js: object) -> object:
    return await js.account_info()  # type: ignore[attr-defined]


def test_nats_refuses_a_client_without_the_password(stack: Stack) -> None:
    """On NATS' published port: no credentials or a wrong password is refused; .env's password works."""
    with pytest.raises(Exception, match=r"(?i)authorization"):
        stack.nats_call(_account_info, user="", password="")
    with pytest.raises(Exception, match=r"(?i)authorization"):
        stack.nats_call(_account_info, user="veille", password="change-me")
    with pytest.raises(Exception, match=r"(?i)authorization"):
        # a service's user with the admin's password: each user has its own
        stack.nats_call(_account_info, user="classifier", password=stack.env["VEILLE_NATS_PASSWORD"])
    info = stack.nats_call(_account_info)
    assert info.streams >= 5, "nats-topology created veille's streams"


def test_the_classifier_runs_the_compiled_sentiment_scorer(stack: Stack) -> None:
    """The image carries the sentiment scorer's C module, built by `make wheelhouse` on the host and
    installed because it matches the sources: the classifier runs what `make test` tested."""
    status = stack.exec("classifier", "python", "-c", "from veille.sentiment import speedups; print(speedups.STATUS)")
    assert status.stdout.strip() == "compiled (C inner loops)", status
    # the near-duplicate stories use the same module's loops once they pass their check at import
    stories = stack.exec("classifier", "python", "-c", "from veille import stories; print(stories.compiled())")
    assert stories.stdout.strip() == "True", stories
