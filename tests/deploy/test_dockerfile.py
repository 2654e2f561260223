"""The Dockerfile and .dockerignore, read and their build steps replayed without a Docker engine."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage, by stage name."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in instructions():
        if word == "FROM":
            match = re.match(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            current = match.group(2)
            out[current] = []
        elif current is not None:
            out[current].append((word, rest))
    return out


def _pattern(pattern: str) -> re.Pattern[str]:
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex + "(?:/.*)?")


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps ``path`` (relative to the repository) out of the build context."""
    result = False
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        if _pattern(pattern.strip("/")).fullmatch(path):
            result = not negate
    return result


def context_files() -> list[Path]:
    """The files of the repository that the build context holds (tracked or not, minus ignored)."""
    files = []
    for path in REPO.rglob("*"):
        relative = path.relative_to(REPO).as_posix()
        if path.is_file() and not relative.startswith((".git/", ".venv/")) and not ignored(relative):
            files.append(path)
    return files


def test_the_image_is_built_in_two_stages_and_runs_as_an_unprivileged_user() -> None:
    """A builder stage makes the venv; the final stage copies it, has no build tools and runs as uid 10001."""
    by_stage = stages()
    assert list(by_stage) == ["builder", "runtime"]
    final = by_stage["runtime"]
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    runs = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("apt-get install", "gcc", "build-essential", "pip install", "curl", "wget"):
        assert tool not in runs, f"the final stage installs {tool}"
    assert ("ENTRYPOINT", '["veille"]') in final
    (healthcheck,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/usr/local/lib/veille/healthcheck.py" in healthcheck and "/readyz" in healthcheck
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "VEILLE_HTTP_HOST=0.0.0.0" in env and "VEILLE_HTTP_PORT=8080" in env


def test_no_secret_is_baked_into_the_image() -> None:
    """No ENV or ARG of the Dockerfile names a password, secret or token, and .env never enters the context."""
    for word, rest in instructions():
        if word in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET|TOKEN", rest, re.IGNORECASE), rest
    for path in (".env", "deploy/.env", ".git/config", ".venv/bin/python", "var/nats/x", "tests/conftest.py"):
        assert ignored(path), f"{path} would be sent to the Docker build"


def test_every_copied_file_is_in_the_build_context() -> None:
    """Each COPY source exists and .dockerignore lets it through."""
    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _ = rest.split()
        for source in sources:
            if re.search(r"[*?\[]", source):
                continue  # a pattern may match nothing: var/wheelhous[e], there only for air-gapped builds
            path = REPO / source
            assert path.exists(), f"COPY {source}: no such file"
            assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
            if path.is_dir():
                assert any(not ignored(p.relative_to(REPO).as_posix()) for p in path.rglob("*.py"))


def _wheel(tree: Path, out: Path) -> zipfile.ZipFile:
    """Build a wheel of ``tree`` into ``out`` (with the installed hatchling when there is one)."""
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, str(tree), "-w", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("veille-*.whl")
    return zipfile.ZipFile(wheel)


@pytest.mark.timeout(300)
def test_the_builder_steps_make_a_complete_wheel(tmp_path: Path) -> None:
    """The dependencies step builds from its stub files; the build context makes a wheel with every file of veille."""
    stub = tmp_path / "stub"
    # pyproject.toml names its build hook (hatch_build.py: the sentiment scorer's optional C module,
    # absent from a stub, so a pure wheel)
    for name in ("pyproject.toml", "README.md", "hatch_build.py", "shared/veille/__init__.py"):
        (stub / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, stub / name)
    for package in ("services", "veille_cli"):  # the Dockerfile's stub packages
        (stub / package).mkdir()
        (stub / package / "__init__.py").touch()
    _wheel(stub, tmp_path / "stub-wheel")

    context = tmp_path / "context"
    for path in context_files():
        target = context / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    names = set(_wheel(context, tmp_path / "wheel").namelist())
    for package in ("shared/veille", "services", "veille_cli"):
        for path in (REPO / package).rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            inside = (
                path.relative_to(REPO / "shared").as_posix()
                if package == "shared/veille"
                else (path.relative_to(REPO).as_posix())
            )
            assert inside in names, f"{inside} is missing from the image's wheel"
