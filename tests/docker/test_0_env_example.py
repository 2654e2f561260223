"""An unedited copy of .env.example cannot start the stack: no known default password ever runs."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.docker.conftest import REPO, Stack, docker


def test_unedited_env_example_starts_nothing(docker_ready: None, tmp_path: Path) -> None:
    """compose refuses .env.example as shipped, names the empty password, and creates no container."""
    env_file = tmp_path / "env"
    shutil.copy(REPO / ".env.example", env_file)
    project = f"veilleexample{tmp_path.name[-8:]}".lower().replace("_", "")
    stack = Stack(project=project, env_file=env_file, env={}, workdir=tmp_path)
    proc = stack.run("up", "-d", "--no-build", check=False, timeout=120)
    try:
        assert proc.returncode != 0, f"compose started the stack with .env.example: {proc.stdout}"
        assert "VEILLE_NATS_PASSWORD" in proc.stderr, proc.stderr
        created = docker("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout
        assert created.split() == [], "no container may be created from .env.example"
    finally:
        stack.run("down", "-v", check=False, timeout=120)
