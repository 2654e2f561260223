"""`veille up` / `veille demo` run as a child process, as a user runs them, for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from veille.natsserver import free_port

__all__ = ["StackProcess"]


class StackProcess:
    """A ``python -m veille_cli COMMAND`` child on free loopback ports, its output collected line by line."""

    def __init__(self, command: str, data_dir: Path, *extra: str, **ports: int) -> None:
        """Start ``veille COMMAND --data-dir DATA_DIR`` with ``ports`` (nats, smtp, webhook, metrics) or free ones."""
        self.ports = {name: ports.get(name) or free_port() for name in ("nats", "smtp", "webhook", "metrics")}
        env = {k: v for k, v in os.environ.items() if not k.startswith("VEILLE_")}
        env["VEILLE_LOG_FORMAT"] = "json"
        args = [sys.executable, "-m", "veille_cli", command, "--data-dir", str(data_dir), "--quiet", *extra]
        for name, port in self.ports.items():
            args += [f"--{name}-port", str(port)]
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        self._readers = [
            threading.Thread(target=self._read, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def wait_for_line(self, pattern: str, timeout: float = 120.0) -> re.Match[str]:
        """The first stdout line matching ``pattern`` (a regular expression), waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.stdout):
                match = re.search(pattern, line)
                if match:
                    return match
            if self.process.poll() is not None:
                time.sleep(0.5)  # let the readers finish
                break
            time.sleep(0.2)
        raise AssertionError(
            f"no line matching {pattern!r}; stdout:\n" + "\n".join(self.stdout) + "\nstderr:\n" + "\n".join(self.stderr)
        )

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM the stack (Ctrl-C's path), wait for it; SIGKILL its group if it hangs. Return its exit code."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for reader in self._readers:
            reader.join(5)
        return self.process.returncode
