"""The command line against a NATS that is down, and against a real one.

* Every command that connects says one clear line and exits 1: no nats-py traceback.
* ``veille run NAME`` keeps retrying while NATS is down (one warning line per attempt) and stops
  cleanly on SIGTERM or Ctrl-C even though it never connected (it used to ignore the signal).
* ``veille silence list`` does not load aiohttp (nats-py's WebSocket transport) for a ``nats://``
  server, and still does for a ``ws://`` one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from veille.natsserver import NatsServerProcess, free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def veille(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    return subprocess.run(
        [sys.executable, "-m", "veille_cli", *args],
        env={**clean, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("topology",),
        ("silence", "list"),
        ("silence", "add", "watch=acme", "--for", "1h"),
        ("silence", "expire", "sil_0123456789abcdef0123"),
        ("dlq", "list"),
        ("dlq", "replay", "--all"),
        ("backtest", "--config", str(REPO / "examples" / "veille.yaml"), "--watch", "acme", "--since", "1d"),
    ],
    ids=" ".join,
)
def test_a_command_against_a_nats_that_is_down_says_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = free_port()  # nothing listens there
    result = veille(*args, env={"VEILLE_NATS_URL": f"nats://127.0.0.1:{port}"}, cwd=tmp_path)
    assert result.returncode == 1, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"Error: cannot connect to NATS at nats://127.0.0.1:{port} as no credentials: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {port})"
    ], result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("service", ["ingest-rss", "notifier"])
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_service_waiting_for_nats_stops_on_a_signal(tmp_path: Path, service: str, stop_signal: int) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")},
        "VEILLE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "VEILLE_HTTP_HOST": "127.0.0.1",
        "VEILLE_HTTP_PORT": str(free_port()),
        "VEILLE_CONFIG": str(REPO / "examples" / "veille.yaml"),
        "VEILLE_LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "service.log"
    with log_path.open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "veille_cli", "run", service], env=env, cwd=tmp_path, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 90
        while '"nats.error"' not in log_path.read_text(errors="replace"):  # it is trying to connect
            assert child.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)
        child.send_signal(stop_signal)
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    output = log_path.read_text(errors="replace")
    assert code == 0, output
    assert "Traceback" not in output
    events = [json.loads(line)["event"] for line in output.splitlines() if line.startswith("{")]
    assert f"{service}.start_abandoned" in events, output
    assert events[-1] == f"{service}.stopped", output


PROBE = """
import json, sys
from veille_cli import main
try:
    main(sys.argv[2:], prog_name="veille")
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "aiohttp": "aiohttp" in sys.modules}, out)
"""


def probe(tmp_path: Path, *args: str, env: dict[str, str]) -> dict[str, object]:
    report = tmp_path / "probe.json"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    result: dict[str, object] = json.loads(report.read_text())
    return result


def test_silence_list_on_a_nats_url_works_without_aiohttp(nats_server: NatsServerProcess, tmp_path: Path) -> None:
    env = {"VEILLE_NATS_URL": nats_server.url}
    assert veille("topology", env=env, cwd=tmp_path).returncode == 0
    added = veille("silence", "add", "watch=acme", "--for", "1h", env=env, cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert probe(tmp_path, "silence", "list", env=env) == {"code": 0, "aiohttp": False}
    listed = veille("silence", "list", env=env, cwd=tmp_path)
    assert added.stdout.strip() in listed.stdout
    assert probe(tmp_path, "dlq", "list", env=env) == {"code": 0, "aiohttp": False}


def test_a_websocket_nats_url_keeps_the_websocket_transport(tmp_path: Path) -> None:
    """With ws:// nats-py needs aiohttp: it is loaded (the connection itself fails: nothing listens)."""
    port = free_port()
    result = probe(tmp_path, "silence", "list", "--nats-url", f"ws://127.0.0.1:{port}", env={})
    assert result == {"code": 1, "aiohttp": True}
    result = probe(tmp_path, "dlq", "list", env={"VEILLE_NATS_URL": f"ws://127.0.0.1:{port}"})
    assert result == {"code": 1, "aiohttp": True}
