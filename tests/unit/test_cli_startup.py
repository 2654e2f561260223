"""What the everyday commands load: ``veille --help`` and ``veille check-config`` stay quick because
they do not import NATS, HTTP clients, the services or the sentiment model.

Each case runs the command in a fresh interpreter (a subprocess, as a user runs it) and reads the
modules it loaded from ``sys.modules``. No timing is asserted: ``bench/cli_startup.py`` measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "veille.yaml"

# Loaded by a command that talks to NATS, fetches over HTTP, runs a service or scores sentiment.
HEAVY = (
    "faststream",
    "nats",
    "aiohttp",
    "httpx",
    "sklearn",
    "scipy",
    "numpy",
    "onnxruntime",
    "torch",
    "matplotlib",
    "lingua",
    "vaderSentiment",
    "jinja2",
    "veille.sentiment",
    "veille.bus",
    "services.",
    "sqlalchemy",
)

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
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def loaded_by(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """(exit code, modules in sys.modules) after ``veille ARGS`` in a fresh interpreter."""
    report = tmp_path / "modules.json"
    subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *args],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        check=False,
        timeout=120,
    )
    data = json.loads(report.read_text())
    return data["code"], data["modules"]


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h if h.endswith(".") else h + ".") for h in HEAVY)]


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("version",),
        ("silence", "--help"),
        ("silence", "add", "--help"),
        ("dlq", "--help"),
        ("run", "--help"),
        ("up", "--help"),
        ("sentiment", "--help"),
        ("backtest", "--help"),
    ],
    ids=" ".join,
)
def test_help_loads_neither_nats_nor_pydantic_nor_the_services(tmp_path: Path, args: tuple[str, ...]) -> None:
    code, modules = loaded_by(tmp_path, *args)
    assert code == 0
    assert heavy(modules) == []
    assert "pydantic" not in modules, "--help needs no configuration model"


def test_check_config_loads_the_configuration_model_only(tmp_path: Path) -> None:
    code, modules = loaded_by(tmp_path, "check-config", str(EXAMPLE))
    assert code == 0
    assert "veille.config" in modules
    assert heavy(modules) == []


def test_a_check_config_with_mistakes_loads_no_more(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("watches:\n  - name: acme\n    query: acme\n    languages: [xx]\nbogus: 1\n")
    code, modules = loaded_by(tmp_path, "check-config", str(bad))
    assert code == 1
    assert heavy(modules) == []


def test_commands_that_live_with_their_service_are_listed_and_load_when_called() -> None:
    """`veille --help` lists test-send, db, mentions... without importing them; each one resolves."""
    import click
    from click.testing import CliRunner

    from veille_cli import LAZY, main

    listed = CliRunner().invoke(main, ["--help"])
    assert listed.exit_code == 0
    for name in LAZY:
        assert f"  {name} " in listed.output
        helped = CliRunner().invoke(main, [name, "--help"])
        assert helped.exit_code == 0, helped.output
        assert isinstance(main.get_command(click.Context(main), name), click.Command)
