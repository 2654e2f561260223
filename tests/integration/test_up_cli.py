"""`veille up` as a user runs it: ports already taken, and what it prints for the other commands."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from tests.helpers.stack import StackProcess
from veille import bus
from veille.models import AlertRaised
from veille.natsserver import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "veille.yaml"


@pytest.fixture
def busy_ports() -> Iterator[tuple[int, int]]:
    """Two loopback ports something else already listens on."""
    socks = []
    for _ in range(2):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        socks.append(sock)
    try:
        yield socks[0].getsockname()[1], socks[1].getsockname()[1]
    finally:
        for sock in socks:
            sock.close()


def _alert() -> AlertRaised:
    return AlertRaised.model_validate(
        {
            "id": "alert-up-cli-1",
            "watch": "acme",
            "kind": "negative_mention",
            "severity": "warning",
            "status": "firing",
            "summary": "Negative mention of acme: the outage is a disaster",
            "lang": "en",
            "source": "rss",
            "mention_count": 1,
        }
    )


async def _publish(nats_url: str, alert: AlertRaised) -> None:
    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().publish(
            bus.alert_subject(alert.watch), alert.model_dump_json().encode(), headers={"Nats-Msg-Id": alert.id}
        )
    finally:
        await nc.close()


def test_up_with_taken_ports_picks_free_ones_and_the_example_webhook_follows(
    tmp_path: Path, busy_ports: tuple[int, int]
) -> None:
    """With the mail catcher's and webhook sink's ports taken, veille up says so, listens elsewhere, prints
    the VEILLE_NATS_URL to export, and an alert reaches the sink on its new port through the example config."""
    smtp_busy, webhook_busy = busy_ports
    stack = StackProcess("up", tmp_path / "var", "--config", str(EXAMPLE), smtp=smtp_busy, webhook=webhook_busy)
    try:
        nats_url = stack.wait_for_line(r"^\s*export VEILLE_NATS_URL=(nats://\S+)$").group(1)
        sink_port = int(stack.wait_for_line(r"webhook sink\s+http://127\.0\.0\.1:(\d+)/hooks").group(1))
        smtp_port = int(stack.wait_for_line(r"mail catcher\s+smtp://127\.0\.0\.1:(\d+)").group(1))
        assert sink_port != webhook_busy and smtp_port != smtp_busy
        errors = "\n".join(stack.stderr)
        assert f"port {webhook_busy} (--webhook-port) is in use" in errors
        assert f"port {smtp_busy} (--smtp-port) is in use" in errors
        assert "Traceback" not in errors
        assert nats_url == f"nats://127.0.0.1:{stack.ports['nats']}"

        asyncio.run(_publish(nats_url, _alert()))
        received = tmp_path / "var" / "webhooks" / "acme.jsonl"
        while not (received.exists() and "alert-up-cli-1" in received.read_text()):
            assert stack.process.poll() is None, "\n".join(stack.stderr)
            time.sleep(0.5)
        record = json.loads(received.read_text().splitlines()[0])
        assert record["body"]["data"]["alerts"][0]["id"] == "alert-up-cli-1"

        # the crisis team's pages: the summary says where they are, and they answer there
        console = stack.wait_for_line(r"^\s*console\s+(http://127\.0\.0\.1:\d+/)$").group(1)
        api = stack.wait_for_line(r"^\s*archive API\s+(http://127\.0\.0\.1:\d+/api/v1/mentions)$").group(1)
        assert "<html" in _get_when_ready(stack, console).lower()
        assert "mentions" in json.loads(_get_when_ready(stack, api))
    finally:
        code = stack.stop()
    assert code == 0, "\n".join(stack.stderr)


def _get_when_ready(stack: StackProcess, url: str) -> str:
    """The body of ``url`` once it answers 200 (the service may still be starting)."""
    while True:
        assert stack.process.poll() is None, "\n".join(stack.stderr)
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)


@pytest.mark.parametrize("args", [["dlq", "list"], ["silence", "list"], ["silence", "expire", "some-id"]])
def test_a_nats_that_is_down_gives_one_clear_line_and_no_traceback(args: list[str], tmp_path: Path) -> None:
    """With nothing listening at the NATS URL, the operator commands say so in one line, without nats-py tracebacks."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    env["VEILLE_NATS_URL"] = f"nats://127.0.0.1:{port}"
    done = subprocess.run(
        [sys.executable, "-m", "veille_cli", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: cannot connect to NATS at nats://127.0.0.1:{port} as no credentials: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    ]
