"""Helpers for the deployment tests: the tools they run and the normalised compose file."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CLUSTER_FILE = REPO / "deploy" / "compose.cluster.yml"
ENV_EXAMPLE = REPO / ".env.example"


def require_tool(name: str) -> str:
    """Path of ``name``; skip when a developer lacks it, fail in CI (which installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing although CI installs it (scripts/ci-deps.sh)")
    pytest.skip(f"{name} is not installed; `bash scripts/ci-deps.sh` installs it from Debian's packages")


def env_example() -> dict[str, str]:
    """The variables .env.example sets, in order."""
    out: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            out[match.group(1)] = match.group(2)
    return out


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment, so that nothing of the caller's leaks into compose's interpolation."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **extra}


_PASSWORD_LINE = re.compile(r"^([A-Z][A-Z0-9_]*PASSWORD[A-Z0-9_]*)=$")


def empty_passwords() -> list[str]:
    """The password variables .env.example leaves empty (compose refuses to start until each is set)."""
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    return [match.group(1) for match in map(_PASSWORD_LINE.match, lines) if match]


_filled: list[Path] = []


def filled_env_example() -> Path:
    """.env.example with every password filled in (a distinct test value each), as a user's .env is."""
    if not _filled:
        folder = Path(tempfile.mkdtemp(prefix="veille-env-"))
        atexit.register(shutil.rmtree, folder, True)
        out = []
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
            match = _PASSWORD_LINE.match(line)
            out.append(f"{match.group(1)}=test-only-{match.group(1).lower()}" if match else line)
        path = folder / "env"
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
        _filled.append(path)
    return _filled[0]


def compose_config(*files: Path, env_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose config`` on ``files`` (no Docker engine needed), by default with a filled .env."""
    exe = require_tool("docker-compose")
    env_file = filled_env_example() if env_file is None else env_file
    args = [exe, "--project-directory", str(REPO), "--env-file", str(env_file)]
    for file in files or (COMPOSE_FILE,):
        args += ["-f", str(file)]
    return subprocess.run(
        [*args, "config"], capture_output=True, text=True, cwd=REPO, env=clean_env(), timeout=120, check=False
    )


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    """docker-compose.yml as docker-compose normalises it with the values of .env.example."""
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="session")
def raw_compose() -> dict[str, Any]:
    """docker-compose.yml as written (anchors resolved by YAML, no interpolation)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data
