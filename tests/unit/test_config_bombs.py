"""Hostile configuration files are refused promptly, with the file, the line and the problem in words.

Each case runs through the code every service uses (``load_config``) and through real child
processes: ``veille check-config FILE`` and ``veille run SERVICE --config FILE``. pytest-timeout is
the guard against a hang; before the loader was bounded, each case hung, grew without bound, or
crashed with a RecursionError.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from veille.config import MAX_ALIAS_NODES, MAX_CONFIG_BYTES, MAX_DEPTH, MAX_NODES, ConfigError, load_config

VEILLE = Path(sys.executable).parent / "veille"

BILLION_LAUGHS = """\
version: 1
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def _alias_chain(links: int) -> str:
    """Each anchor nests the previous one 50 levels deeper: small file, depth 50 x links once expanded."""
    out = ["version: 1", "x0: &x0 " + "[" * 50 + "]" * 50]
    for i in range(1, links + 1):
        out.append(f"x{i}: &x{i} " + "[" * 50 + f"*x{i - 1}" + "]" * 50)
    return "\n".join(out) + "\n"


def _watches(count: int, query: str = "'\"Acme Corp {i}\" OR acme{i}.com OR (acme{i} AND (outage OR panne))'") -> str:
    out = ["version: 1", "watches:"]
    for i in range(count):
        out += [
            f"  - name: watch-{i:04d}",
            "    query: " + query.replace("{i}", str(i)),
            "    languages: [en, fr]",
            "    sources: [rss, hackernews, bluesky, mastodon]",
            f"    labels: {{team: team-{i % 20}, customer: customer-{i}}}",
        ]
    return "\n".join(out) + "\n"


def _twenty_megabytes() -> str:
    block = _watches(100)
    return block + block.split("watches:\n", 1)[1] * (20 * 1024 * 1024 // len(block))


CASES = {
    "billion-laughs": (BILLION_LAUGHS, 7, f"aliases expand to more than {MAX_ALIAS_NODES:,} values"),
    "self-alias": ("a: &a [*a]\n", 1, "the alias *a refers to itself"),
    "self-alias-mapping": ("version: 1\nroute: &r\n  routes:\n    - *r\n", 4, "the alias *r refers to itself"),
    "deep-nesting": ("watches: " + "[" * 10_000 + "]" * 10_000 + "\n", 1, f"nested deeper than {MAX_DEPTH} levels"),
    "deep-block-nesting": (
        "".join(" " * i + f"k{i}:\n" for i in range(1000)),
        MAX_DEPTH,  # the key k63 on line 64 is the 65th level (the root mapping is the first)
        f"nested deeper than {MAX_DEPTH} levels",
    ),
    "alias-chain-depth": (_alias_chain(200), 3, f"this alias nests the data deeper than {MAX_DEPTH} levels"),
    "many-values": ("x: [" + "1," * 300_000 + "1]\n", 1, f"the file holds more than {MAX_NODES:,} values"),
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {**os.environ, **(env or {})}
    return subprocess.run([str(VEILLE), *args], capture_output=True, text=True, env=child_env, check=False)


def _assert_refused(result: subprocess.CompletedProcess[str], where: str, words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode in (1, 2), output
    assert "Traceback" not in output and "RecursionError" not in output, output
    assert where in output and words in output, output


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(CASES))
def test_service_loader_refuses_hostile_yaml(tmp_path: Path, case: str) -> None:
    """load_config, which every service calls, refuses alias bombs and loops, deep nesting, too many values."""
    text, line, words = CASES[case]
    path = _write(tmp_path, case, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    [problem] = info.value.problems
    assert (problem.file, problem.line) == (str(path), line)
    assert words in problem.message


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(CASES))
def test_check_config_refuses_hostile_yaml(tmp_path: Path, case: str) -> None:
    """`veille check-config FILE` exits 1 naming the file, line and problem of a hostile file, without a traceback."""
    text, line, words = CASES[case]
    path = _write(tmp_path, case, text)
    _assert_refused(_cli("check-config", str(path)), f"{path}:{line}:", words)


@pytest.mark.timeout(30)
def test_service_refuses_billion_laughs_before_starting(tmp_path: Path) -> None:
    """`veille run classifier --config FILE` exits 2 on an alias bomb, naming the file and line, before connecting."""
    path = _write(tmp_path, "laughs", BILLION_LAUGHS)
    _assert_refused(_cli("run", "classifier", "--config", str(path)), f"{path}:7:", "aliases expand")


@pytest.mark.timeout(30)
def test_twenty_megabyte_file_is_refused(tmp_path: Path) -> None:
    """A 20 MB configuration is refused from its size by the service loader and check-config, not read for minutes."""
    path = _write(tmp_path, "huge", _twenty_megabytes())
    size = path.stat().st_size
    assert size > 20 * 1024 * 1024 * 0.99
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    [problem] = info.value.problems
    assert problem.file == str(path) and problem.line is not None
    assert f"the file is {size:,} bytes" in problem.message and f"{MAX_CONFIG_BYTES:,}" in problem.message
    _assert_refused(_cli("check-config", str(path)), f"{path}:{problem.line}:", f"the file is {size:,} bytes")


@pytest.mark.timeout(30)
def test_endless_file_is_refused() -> None:
    """/dev/zero as the configuration is read no further than the size bound, then refused."""
    with pytest.raises(ConfigError) as info:
        load_config("/dev/zero", env={})
    assert "a configuration may be at most" in str(info.value)
    _assert_refused(_cli("check-config", "/dev/zero"), "/dev/zero", "a configuration may be at most")


@pytest.mark.timeout(30)
def test_huge_environment_variable_is_refused(tmp_path: Path) -> None:
    """A ${VAR} holding 100 MB is refused at the line that uses it, naming the variable, not copied everywhere."""
    path = _write(tmp_path, "env", _watches(50, query="'${BIG}'"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"BIG": "acme " * 20_000_000})
    problems = info.value.problems
    assert problems[0].file == str(path) and problems[0].line == 4
    assert problems[0].field == "watches[0].query" and "environment variable BIG is 100,000,000 characters" in str(
        problems[0]
    )


@pytest.mark.timeout(30)
def test_check_config_refuses_huge_environment_variable(tmp_path: Path) -> None:
    """check-config in a child process refuses a 100 KB ${VAR} (as large as Linux lets one be) used by 1,000 watches."""
    path = _write(tmp_path, "env", _watches(1000, query="'${BIG}'"))
    result = _cli("check-config", str(path), env={"BIG": "acme " * 20_000})
    _assert_refused(result, f"{path}:4: watches[0].query:", "environment variable BIG is 100,000 characters")


@pytest.mark.timeout(30)
def test_many_environment_substitutions_are_bounded(tmp_path: Path) -> None:
    """Substitutions within the per-value bound still stop once they add more than a whole file's worth of text."""
    path = _write(tmp_path, "env", _watches(1000, query="'${MID}'"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"MID": "acme " * 10_000})
    refused = [p for p in info.value.problems if "substitutions add more than" in p.message]
    assert len(refused) == 1 and refused[0].field.endswith(".query") and refused[0].line is not None


@pytest.mark.timeout(120)
def test_a_thousand_watch_config_still_loads(tmp_path: Path) -> None:
    """A normal configuration of 1,000 watches, with a few aliases and ${VAR}s, loads and passes check-config."""
    listed = "    sources: [rss, hackernews, bluesky, mastodon]"
    text = _watches(1000).replace(listed, "    sources: &all [rss, hackernews, bluesky, mastodon]", 1)
    text = text.replace(listed, "    sources: *all")
    text = text.replace("customer: customer-7}", "customer: '${CUSTOMER}'}")
    path = _write(tmp_path, "thousand", text)
    assert path.stat().st_size < MAX_CONFIG_BYTES
    config = load_config(path, env={"CUSTOMER": "acme"})
    assert len(config.watches) == 1000 and config.watches[999].sources == ["rss", "hackernews", "bluesky", "mastodon"]
    assert config.watches[7].labels["customer"] == "acme"
    result = _cli("check-config", str(path), env={"CUSTOMER": "acme"})
    assert result.returncode == 0, result.stderr
    assert "1000 watch(es)" in result.stdout
