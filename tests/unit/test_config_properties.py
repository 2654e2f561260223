"""Property-based tests of the configuration loader: any input gives a config or a ConfigError, never a crash."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from veille.config import ConfigError, VeilleConfig, parse_config

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = [
    "version", "watches", "name", "query", "languages", "sources", "negative_alerts", "negative_threshold",
    "spike", "labels", "receivers", "webhook", "email", "url", "secret", "route", "receiver", "group_by",
    "group_wait", "group_interval", "repeat_interval", "routes", "matchers", "continue", "rss", "feeds",
    "interval", "jitter", "quiet_hours", "headers", "to", "bucket", "warmup", "scales", "${X}", "x",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["acme", "5m", "0s", "-1s", "1e400", "http://127.0.0.1:1/x", "en", "${MISSING}", "${X:-1}",
                     "watch=acme", "a AND (", '"unclosed', "", "whsec_AAAA", "Europe/Paris", "25:00-07:00"]),
    st.text(max_size=20),
)  # fmt: skip
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), children, max_size=5),
    ),
    max_leaves=30,
)

VALID = {
    "version": 1,
    "watches": [{"name": "acme", "query": "acme"}],
    "receivers": [{"name": "crm", "webhook": [{"url": "http://127.0.0.1:1/hook"}]}],
    "route": {"receiver": "crm"},
}


def _load(text: str) -> VeilleConfig | None:
    try:
        return parse_config(text, env={"X": "1"})
    except ConfigError as exc:
        assert exc.problems, "a ConfigError names at least one problem"
        for problem in exc.problems:
            assert str(problem)
        return None


@SETTINGS
@given(TREES)
def test_any_yaml_structure_gives_a_config_or_a_config_error(tree: Any) -> None:
    """Whatever YAML structure is loaded, the loader returns a config or raises ConfigError, nothing else."""
    _load(yaml.safe_dump(tree, allow_unicode=True))


@SETTINGS
@given(st.text(max_size=300))
@example("=")
@example("?")
def test_any_text_gives_a_config_or_a_config_error(text: str) -> None:
    """Arbitrary text (broken YAML included) gives a config or a ConfigError."""
    _load(text)


@pytest.mark.parametrize("text", ["=", "?", "x:\n  ? [a, b]\n  : 1\n", "watches:\n  - name: a\n    query: =\n"])
def test_yaml_oddities_give_a_config_error(text: str) -> None:
    """A YAML value tag, an empty explicit key or a sequence as a key is reported as a ConfigError."""
    _load(text)


@SETTINGS
@given(st.sampled_from(["watches", "receivers", "route", "version"]), st.sampled_from(KEYS), TREES)
def test_a_mutated_valid_config_gives_a_config_or_a_config_error(section: str, key: str, value: Any) -> None:
    """A valid config with one field replaced by anything loads or fails with ConfigError naming a line."""
    data: dict[str, Any] = yaml.safe_load(yaml.safe_dump(VALID))
    target = data[section]
    if isinstance(target, list):
        target = target[0]
    if isinstance(target, dict):
        target[key] = value
    else:
        data[section] = value
    config = _load(yaml.safe_dump(data, allow_unicode=True))
    if config is not None:  # what loads is coherent: unique names, routes lead to known receivers
        assert len({w.name for w in config.watches}) == len(config.watches)
        receivers = {r.name for r in config.receivers}
        assert len(receivers) == len(config.receivers)
        assert config.route.receiver is None or config.route.receiver in receivers


@SETTINGS
@given(st.lists(st.sampled_from(["acme", "globex", "hooli", "x-y", "a.b"]), min_size=1, max_size=6))
def test_loading_is_deterministic_and_keeps_watch_names(names: list[str]) -> None:
    """A config that loads, loads the same twice, with its watches in order; duplicates are a ConfigError."""
    data = {**VALID, "watches": [{"name": n, "query": n.replace("-", " ").replace(".", " ")} for n in names]}
    text = yaml.safe_dump(data)
    first = _load(text)
    second = _load(text)
    assert (first is None) == (second is None)
    if first is not None and second is not None:
        assert first == second
        assert [w.name for w in first.watches] == names
    elif len(set(names)) == len(names):
        assert "." in "".join(names), "only names with a dot may be refused"
