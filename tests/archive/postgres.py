"""A real PostgreSQL server for tests: Debian's ``postgresql`` package, initdb + pg_ctl in a temporary
directory, listening on a free loopback port (no Unix socket outside that directory).

PostgreSQL refuses to run as root ("initdb: cannot be run as root"): as root (CI), the server runs
as the ``postgres`` system user the Debian package creates, through ``runuser``. Without the
binaries, or as root without that user, :func:`postgres_unavailable` says why and the tests skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "postgres_bindir", "postgres_unavailable"]

SUPERUSER = "veille"


def postgres_bindir() -> Path | None:
    """Directory holding initdb and pg_ctl (the newest /usr/lib/postgresql/N/bin), or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def postgres_unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here, or None."""
    if postgres_bindir() is None:
        return "PostgreSQL is not installed (apt-get install -y postgresql postgresql-contrib; .ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as (initdb refuses root)"
        if shutil.which("runuser") is None:
            return "running as root without runuser to start the server as 'postgres' (initdb refuses root)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster: :meth:`start`, :meth:`stop` (fast shutdown), :meth:`kill`, :meth:`cleanup`."""

    def __init__(self, root: Path | None = None, *, options: str = "") -> None:
        """A new cluster in a temporary directory, or, with ``root``, the cluster kept there (initdb only
        the first time; a server already running from it is reused). ``options`` adds ``-c`` settings."""
        bindir = postgres_bindir()
        assert bindir is not None, postgres_unavailable()
        self.bindir = bindir
        self.root = root if root is not None else Path(tempfile.mkdtemp(prefix="veille-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.options = options
        self._databases = 0
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        if not (self.data / "PG_VERSION").is_file():
            self._cmd(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            )
        self.port = self.running_port() or _free_port()

    def running_port(self) -> int | None:
        """The port of a server already running from this cluster's files, or None."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.is_file():
            return None
        lines = pid_file.read_text().splitlines()
        try:
            os.kill(int(lines[0]), 0)
            return int(lines[3])
        except (OSError, ValueError, IndexError):
            return None

    def _cmd(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_run_as(), str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
            cwd=self.root,
        )

    def start(self) -> None:
        """Start (or restart) the server on its port and wait until it accepts connections."""
        if self.running_port():
            return
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            f"-c fsync=off -c full_page_writes=off -c max_connections=60 {self.options}"
        )
        result = self._cmd(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start", check=False
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}\n{tail}")

    def stop(self) -> None:
        """Stop the server (fast: open sessions are ended)."""
        self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL (asyncpg)."""
        self._databases += 1
        name = f"test{self._databases}"
        self._cmd("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, name)
        return self.url(name)

    def url(self, database: str) -> str:
        """The asyncpg URL of ``database`` on this server."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def psql(self, database: str, sql: str) -> str:
        """Run ``sql`` with psql and return its unaligned output."""
        result = self._cmd(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", database, "-At", "-c", sql
        )
        return result.stdout.strip()

    def cleanup(self) -> None:
        """Stop the server and remove its files."""
        with contextlib.suppress(Exception):
            self.stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                shutil.rmtree(self.root)
                return
            except OSError:
                time.sleep(0.2)
