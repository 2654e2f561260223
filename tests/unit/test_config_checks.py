"""check-config runs the services' own validation: every mistake in one pass, in words, with its line."""

from __future__ import annotations

import base64
import importlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services import SERVICES
from services.classifier.surges import detector_settings
from services.notifier.signing import decode_secret
from veille.config import ConfigError, VeilleConfig, parse_config
from veille.settings import ServiceSettings
from veille.spikes import SpikeDetector
from veille_cli import main

GOOD_SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

ISSUE_CONFIG = f"""\
watches:
  - name: acme
    query: acme
    languages: [xx, fr]
    spike: {{warmup: 5m, bogus_key: 3}}
  - name: acme
    query: acme corp
  - name: "bad name"
    query: foo
receivers:
  - name: team
    webhook:
      - url: http://127.0.0.1:8099/hook
        secret: my-company-secret-2024
      - url: http://127.0.0.1:8099/other
        secret: {GOOD_SECRET}
    quiet_hours: {{start: "25:00", end: "07:00"}}
route:
  receiver: team
  group_by: [watch, kindd]
  routes:
    - receiver: nobody
"""


def _check(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "veille.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    return result.exit_code, result.output


def test_every_mistake_is_told_in_one_pass_with_its_line_in_words(tmp_path: Path) -> None:
    """The issue's file gets all eight mistakes at once (field and cross-reference ones alike), none as a regex."""
    code, output = _check(tmp_path, ISSUE_CONFIG)
    assert code == 1
    where = str(tmp_path / "veille.yaml")
    expected = [
        (4, "watches[0].languages", "'xx' is not a language code"),
        (5, "watches[0].spike.bogus_key", "unknown spike setting 'bogus_key'"),
        (6, "watches[1].name", "another entry is already called 'acme'"),
        (8, "watches[2].name", "'bad name' is not a valid name"),
        (14, "receivers[0].webhook[0].secret", "veille secret new"),
        (17, "receivers[0].quiet_hours.start", "'25:00' is not a time of day"),
        (20, "route.group_by[1]", "'kindd' is not a label alerts carry"),
        (22, "route.routes[0].receiver", "'nobody' is not a defined receiver"),
    ]
    for line, field, words in expected:
        assert any(row.startswith(f"{where}:{line}: {field}: ") and words in row for row in output.splitlines()), (
            f"{field} (line {line}) not told:\n{output}"
        )
    assert "8 mistake(s)" in output
    assert "pattern" not in output and "^[" not in output and "Traceback" not in output


def test_spike_durations_are_written_as_everywhere_else() -> None:
    """`spike:` takes 5m, 2h and 1d like every other duration, and the classifier gets those timedeltas."""
    text = (
        "watches:\n  - name: acme\n    query: acme\n"
        "    spike: {warmup: 5m, bucket: 10m, scales: [1h, 2h], resolve_after: PT30M, refire_after: 600}\n"
    )
    config = parse_config(text, env={})
    detector = detector_settings(config.watches[0])
    assert detector.warmup == timedelta(minutes=5) and detector.bucket == timedelta(minutes=10)
    assert detector.scales == (timedelta(hours=1), timedelta(hours=2))
    assert detector.resolve_after == timedelta(minutes=30) and detector.refire_after == timedelta(minutes=10)


def test_spike_settings_the_detector_refuses_are_mistakes() -> None:
    """A spike override the detector would refuse at its first mention is a mistake of the file, with its line."""
    base = "watches:\n  - name: acme\n    query: acme\n    spike:\n"
    with pytest.raises(ConfigError) as info:
        parse_config(base + "      warmup: soon\n", filename="c.yaml", env={})
    assert [(p.line, p.field) for p in info.value.problems] == [(5, "watches[0].spike.warmup")]
    assert "is not a duration such as 30s, 5m" in info.value.problems[0].message
    with pytest.raises(ConfigError) as info:
        parse_config(base + "      bucket: 7m\n", filename="c.yaml", env={})
    assert [(p.line, p.field) for p in info.value.problems] == [(4, "watches[0].spike")]
    assert "daily_slot must divide a day and be a multiple of bucket" in info.value.problems[0].message


def test_secret_new_prints_a_secret_the_config_and_the_notifier_accept(tmp_path: Path) -> None:
    """`veille secret new` prints a fresh whsec_ secret that check-config accepts and the notifier decodes."""
    first = CliRunner().invoke(main, ["secret", "new"])
    second = CliRunner().invoke(main, ["secret", "new"])
    assert first.exit_code == 0 and second.exit_code == 0
    secret = first.output.strip()
    assert secret.startswith("whsec_") and secret != second.output.strip()
    assert len(decode_secret(secret)) == 32
    code, output = _check(
        tmp_path,
        f"receivers:\n  - name: h\n    webhook: [{{url: 'http://127.0.0.1:1/h', secret: '{secret}'}}]\n"
        "route: {receiver: h}\n",
    )
    assert code == 0, output


def test_secret_and_password_files_are_read_as_the_notifier_reads_them(tmp_path: Path) -> None:
    """A missing password_file and a secret_file without a whsec_ secret are told, not found by a crashing notifier."""
    bad = tmp_path / "secret.txt"
    bad.write_text("my-company-secret-2024\n", encoding="utf-8")
    text = (
        "receivers:\n  - name: h\n"
        f"    webhook: [{{url: 'http://127.0.0.1:1/h', secret_file: '{bad}'}}]\n"
        f"    email: [{{to: [a@example.org], username: u, password_file: '{tmp_path / 'none'}'}}]\n"
        "route: {receiver: h}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, filename="c.yaml", env={})
    messages = [p.message for p in info.value.problems]
    assert any("secret_file" in m and "veille secret new" in m for m in messages), messages
    assert any("password_file: cannot read" in m for m in messages), messages


# ------------------------------------------------------------------ property: accepted means every service builds

NAMES = st.sampled_from(["acme", "globex", "hooli", "x.y", "bad name"])
SPIKES = st.dictionaries(
    st.sampled_from(["warmup", "bucket", "scales", "fire_threshold", "resolve_threshold", "bogus_key", "daily_slot"]),
    st.sampled_from(["5m", "10m", "1h", 300, "PT5M", "soon", -1, 0, "0s", 1.0, 3.0, 5.0, ["1h", "2h"], ["7m"], []]),
    max_size=3,
)
SECRETS = st.sampled_from([GOOD_SECRET, "${S}", None, "", "my-company-secret-2024", "whsec_abc", "whsec_"])
WATCHES = st.fixed_dictionaries(
    {"name": NAMES, "query": st.sampled_from(["acme", "acme OR globex"])},
    optional={
        "languages": st.lists(st.sampled_from(["en", "fr", "de", "xx", "EN"]), max_size=2),
        "spike": SPIKES,
        "labels": st.dictionaries(st.sampled_from(["team", "tier"]), st.sampled_from(["a", "b"]), max_size=2),
    },
)
RECEIVERS = st.fixed_dictionaries(
    {"name": st.sampled_from(["crm", "ops", "crm", "bad name"])},
    optional={
        "webhook": st.lists(
            st.fixed_dictionaries({"url": st.just("http://127.0.0.1:1/hook")}, optional={"secret": SECRETS}),
            max_size=2,
        ),
        "email": st.lists(st.just({"to": ["ops@example.org"]}), max_size=1),
    },
)
LABELS = st.sampled_from(["watch", "kind", "kindd", "team", "severity", "..."])
ROUTES = st.fixed_dictionaries(
    {"receiver": st.sampled_from(["crm", "crm", "ops", "nobody"])},
    optional={
        "group_by": st.lists(LABELS, max_size=3),
        "group_wait": st.sampled_from(["30s", "5m", 10, "soon"]),
        "routes": st.lists(
            st.fixed_dictionaries(
                {"receiver": st.sampled_from(["crm", "crm", "ops", "nobody"])},
                optional={"group_by": st.lists(LABELS, max_size=2), "matchers": st.just(['severity="critical"'])},
            ),
            max_size=2,
        ),
    },
)
CONFIGS = st.fixed_dictionaries(
    {
        "watches": st.lists(WATCHES, max_size=3),
        "receivers": st.lists(RECEIVERS, min_size=1, max_size=2),
        "route": ROUTES,
    }
)


def _build_every_service(config: VeilleConfig, tmp_path: Path) -> None:
    service_settings = ServiceSettings(
        nats_url="nats://127.0.0.1:1", config=tmp_path / "veille.yaml", data_dir=tmp_path
    )
    for module in SERVICES.values():
        importlib.import_module(module).create_app(service_settings, config=config)
    for watch in config.watches:  # what the classifier builds for each watch at its first mention
        SpikeDetector(detector_settings(watch))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(CONFIGS)
def test_a_config_check_config_accepts_builds_every_service(tmp_path: Path, data: dict[str, Any]) -> None:
    """Any configuration check-config accepts builds every service's composition root (no connection made)."""
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        config = parse_config(text, env={"S": GOOD_SECRET})
    except ConfigError as exc:
        assert all(p.line for p in exc.problems), exc
        event("refused")
        return
    event("accepted")
    _build_every_service(config, tmp_path)
