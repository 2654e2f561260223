"""What the logs look like to someone watching them on a terminal.

* Console lines leave out keys whose value is None (``retry_after=None`` said nothing).
* A service stopped cleanly (SIGTERM) does not warn ``nats.disconnected``; a NATS that goes away does.
* ``veille up``'s own lines have the services' format and the same name column (``  up | ...``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from veille.natsserver import NatsServerProcess, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CONSOLE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[(\w+)\s*\] (\S+)")
"""structlog's console renderer: ISO time, [level padded], event, then key=value pairs."""


def write_config(path: Path, feed_port: int) -> Path:
    """One watch, one RSS feed on a loopback port where nothing listens (each poll fails), one webhook."""
    path.write_text(
        f"""
watches:
  - name: acme
    query: acme
sources:
  rss:
    feeds:
      - url: http://127.0.0.1:{feed_port}/feed.xml
        interval: 5s
receivers:
  - name: crm
    webhook:
      - url: http://127.0.0.1:{free_port()}/hooks/crm
route:
  receiver: crm
""",
        encoding="utf-8",
    )
    return path


class Output:
    """A child's output lines, read as they come."""

    def __init__(self, stream: object) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate: Callable[[str], bool], what: str, child: subprocess.Popen[str]) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if child.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {what} in:\n" + "\n".join(self.lines))

    def join(self) -> None:
        self._thread.join(10)


def service(tmp_path: Path, nats_url: str, config: Path) -> tuple[subprocess.Popen[str], Output]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    env |= {
        "VEILLE_NATS_URL": nats_url,
        "VEILLE_HTTP_HOST": "127.0.0.1",
        "VEILLE_HTTP_PORT": str(free_port()),
        "VEILLE_CONFIG": str(config),
        "VEILLE_LOG_FORMAT": "console",  # what a terminal gets
        "PYTHONUNBUFFERED": "1",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "veille_cli", "run", "ingest-rss"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return child, Output(child.stdout)


def test_a_clean_stop_does_not_warn_and_console_lines_leave_none_out(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "veille.yaml", free_port())
    child, out = service(tmp_path, nats_server.url, config)
    try:
        out.wait_for(lambda line: "ingest-rss.started" in line, "start", child)
        failed = out.wait_for(lambda line: "ingest.fetch_failed" in line, "failed poll", child)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    out.join()
    text = "\n".join(out.lines)
    assert "retry_after" not in failed, failed  # the server sent no Retry-After: the key is left out
    assert "=None" not in text, text
    assert "nats.disconnected" not in text, text
    last = CONSOLE_LINE.match(out.lines[-1])
    assert last is not None and last.group(2) == "ingest-rss.stopped", text
    assert all(CONSOLE_LINE.match(line) for line in out.lines), text


def test_a_nats_that_goes_away_is_still_a_warning(nats_server: NatsServerProcess, tmp_path: Path) -> None:
    config = write_config(tmp_path / "veille.yaml", free_port())
    child, out = service(tmp_path, nats_server.url, config)
    try:
        out.wait_for(lambda line: "ingest-rss.started" in line, "start", child)
        nats_server.stop()
        line = out.wait_for(lambda line: "nats.disconnected" in line, "disconnect warning", child)
        assert "[warning" in line
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        out.join()


def test_veille_up_writes_its_own_lines_like_the_services(tmp_path: Path) -> None:
    """Echoing the services (no --quiet, output not a terminal), every line of the supervisor and of
    the services is `NAME | time [level] event ...` with the name right-aligned in one column."""
    config = write_config(tmp_path / "veille.yaml", free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
    args = [sys.executable, "-m", "veille_cli", "up", "--config", str(config), "--data-dir", str(tmp_path / "var")]
    for flag in ("--nats-port", "--smtp-port", "--webhook-port", "--metrics-port"):
        args += [flag, str(free_port())]
    child = subprocess.Popen(
        args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    out, err = Output(child.stdout), Output(child.stderr)
    try:
        out.wait_for(lambda line: "ingest-rss.started" in line, "ingest-rss start", child)
        os.killpg(child.pid, signal.SIGTERM)
        assert child.wait(timeout=90) == 0
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    out.join()
    err.join()
    log_lines = [line for line in out.lines + err.lines if " | " in line]
    own = [line for line in log_lines if line.startswith("          up | ")]
    assert any("up.service_started" in line for line in own), "\n".join(err.lines)
    checked = [line for line in log_lines if line.partition(" | ")[0].strip() in {"up", "ingest-rss"}]
    assert any(line.startswith("  ingest-rss | ") for line in checked)
    for line in checked:
        name, _, rest = line.partition(" | ")
        assert len(name) == 12, line
        assert CONSOLE_LINE.match(rest), line
        assert "=None" not in rest, line
    assert not any("nats.disconnected" in line for line in log_lines), "\n".join(log_lines)
