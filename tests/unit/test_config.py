"""The YAML configuration: valid files load, every mistake is named with its line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from veille.config import ConfigError, Matcher, load_config, parse_config
from veille_cli import main

REPO = Path(__file__).resolve().parents[2]

BROKEN = """\
version: 1
watches:
  - name: acme
    query: acme
    languages: [en, french]
  - name: acme
    query: x
    colour: blue
receivers:
  - name: hook
    webhook:
      - url: not-a-url
        secret: ${NOT_SET_ANYWHERE}
route:
  receiver: hook
  group_wait: soon
"""


def problems_of(text: str, env: dict[str, str] | None = None) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, filename="c.yaml", env=env or {})
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_example_config_is_valid() -> None:
    """The example configuration that `make run` uses loads without a mistake."""
    config = load_config(REPO / "examples" / "veille.yaml", env={})
    assert [w.name for w in config.watches] == ["acme", "python"]
    assert config.receivers[0].webhook[0].secret is not None


def test_every_field_mistake_is_named_with_its_line() -> None:
    """A file with several mistakes gets one problem per mistake, each with its line and dotted field."""
    found = problems_of(BROKEN)
    fields = {field: line for line, field, _ in found}
    assert fields["watches[0].languages"] == 5
    assert fields["watches[1].colour"] == 8
    assert fields["receivers[0].webhook[0].url"] == 12
    assert fields["receivers[0].webhook[0].secret"] == 13
    assert fields["route.group_wait"] == 16
    messages = " ".join(message for _, _, message in found)
    assert "NOT_SET_ANYWHERE" in messages and "'french'" in messages and "unknown field 'colour'" in messages


def test_reference_mistakes_are_named() -> None:
    """Duplicate names and routes to unknown receivers are reported at the offending line."""
    text = """\
watches:
  - {name: acme, query: acme}
  - {name: acme, query: acme}
receivers:
  - name: hook
    webhook: [{url: "http://127.0.0.1:1/x"}]
route:
  receiver: hook
  routes:
    - receiver: nobody
      matchers: ['severity="critical"']
"""
    found = problems_of(text)
    assert (3, "watches[1].name", "another entry is already called 'acme'") in found
    assert any(line == 10 and field == "route.routes[0].receiver" for line, field, _ in found)


def test_not_yaml_is_reported_with_its_line() -> None:
    """Broken YAML names the line where the parser gave up."""
    found = problems_of("watches:\n  - name: [unclosed\n")
    assert found[0][0] is not None and "not valid YAML" in found[0][2]


def test_environment_variables_are_interpolated() -> None:
    """${VAR} takes the environment's value and ${VAR:-x} falls back to x."""
    text = (
        "receivers:\n  - name: h\n"
        '    webhook: [{url: "http://127.0.0.1:${PORT:-8099}/h", secret: "${S}"}]\n'
        "route: {receiver: h}\n"
    )
    config = parse_config(text, env={"S": "whsec_c2VjcmV0"})
    hook = config.receivers[0].webhook[0]
    assert str(hook.url) == "http://127.0.0.1:8099/h" and hook.secret == "whsec_c2VjcmV0"


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity!="critical"', {"severity": "critical"}, False),
        ('watch=~"acme.*"', {"watch": "acme-fr"}, True),
        ('watch!~"acme.*"', {"watch": "acme-fr"}, False),
        ("lang=fr", {}, False),
    ],
)
def test_matchers_follow_alertmanager_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    """Matchers compare labels like Alertmanager's, regexes anchored on both ends."""
    assert Matcher.parse(text).matches(labels) is expected


def test_bad_matcher_is_a_config_mistake() -> None:
    """A matcher with a broken regex is reported at its line."""
    text = "receivers: [{name: h}]\nroute:\n  receiver: h\n  routes:\n    - matchers: ['watch=~\"(\"']\n"
    found = problems_of(text)
    assert any(field.startswith("route.routes[0].matchers") for _, field, _ in found)


def test_check_config_cli_reports_and_exits_non_zero(tmp_path: Path) -> None:
    """`veille check-config` prints file:line: field: message for each mistake and exits 1."""
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 1
    assert f"{path}:5: watches[0].languages:" in result.output
    assert f"{path}:8: watches[1].colour: unknown field 'colour'" in result.output


def test_check_config_cli_accepts_the_example() -> None:
    """`veille check-config` on the example says OK and exits 0."""
    result = CliRunner().invoke(main, ["check-config", str(REPO / "examples" / "veille.yaml")])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A missing file is reported, not a traceback."""
    result = CliRunner().invoke(main, ["check-config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "cannot read the file" in result.output


@pytest.mark.parametrize(
    "url", ["https://veille.example.org", "https://veille.example.org/console", "http://[::1]:8090/"]
)
def test_external_url_is_sent_as_the_user_wrote_it(url: str) -> None:
    """The URL goes into webhooks and e-mails unchanged: no slash added to a URL without a path."""
    assert parse_config(f"external_url: '{url}'\n").external_url == url


def test_external_url_that_is_not_http_is_a_config_mistake() -> None:
    with pytest.raises(ConfigError, match="external_url"):
        parse_config("external_url: 'mailto:ops@example.org'\n")
