"""Secret files and VEILLE_* settings: bounded reads and mistakes told in words, never a hang or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from veille.settings import MAX_SECRET_BYTES, SettingsError, load_settings, read_secret_file

pytestmark = pytest.mark.timeout(60)


def test_a_secret_file_is_read_stripped(tmp_path: Path) -> None:
    """A secret file's text is the secret, without the newline editors add."""
    path = tmp_path / "password"
    path.write_text("s3cret\n", encoding="utf-8")
    assert read_secret_file(path) == "s3cret"


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_secret_file_is_refused_at_once(target: str) -> None:
    """A device given as a secret file is refused in words instead of being read forever."""
    with pytest.raises(ValueError, match="not a regular file"):
        read_secret_file(Path(target))


def test_a_huge_secret_file_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    """A file far larger than any secret (a wrong path: a log, a dump) is refused after 64 KiB."""
    path = tmp_path / "big"
    with path.open("wb") as handle:
        handle.truncate(512 * 1024 * 1024)  # sparse: 512 MiB that read_text() would load whole
    with pytest.raises(ValueError, match="larger than 64 KiB"):
        read_secret_file(path)
    assert MAX_SECRET_BYTES == 64 * 1024


def test_settings_name_the_variable_of_a_bad_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """VEILLE_NATS_PASSWORD_FILE pointing at a device or a missing file is a SettingsError naming it."""
    monkeypatch.setenv("VEILLE_NATS_PASSWORD_FILE", "/dev/zero")
    with pytest.raises(SettingsError, match="VEILLE_NATS_PASSWORD_FILE=/dev/zero: /dev/zero is not a regular file"):
        load_settings()
    monkeypatch.setenv("VEILLE_NATS_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match="No such file"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "VEILLE_NATS_PASSWORD_FILE",
            "/dev/zero",
            "VEILLE_NATS_PASSWORD_FILE=/dev/zero: /dev/zero is not a regular file",
        ),
        ("VEILLE_HTTP_PORT", "eighty", "VEILLE_HTTP_PORT: Input should be a valid integer"),
    ],
)
@pytest.mark.parametrize("command", [["run", "classifier"], ["dlq", "list"]])
def test_the_cli_tells_settings_mistakes_in_words(
    variable: str, value: str, said: str, command: list[str], tmp_path: Path
) -> None:
    """`veille run` and the NATS commands exit with the mistake in one line per variable, no traceback."""
    config = tmp_path / "veille.yaml"
    config.write_text("version: 1\n", encoding="utf-8")
    env = {**os.environ, variable: value, "VEILLE_NATS_USER": "someone", "VEILLE_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-m", "veille_cli", *command], env=env, capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode in (1, 2), done
    assert said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://veille@db/veille", "archive database 'mysql' is not supported"),
        ("sqlite://", "SQLite needs a file"),
    ],
)
def test_veille_run_archive_tells_a_bad_database_url_in_one_line(url: str, said: str, tmp_path: Path) -> None:
    """A database URL the archive cannot use stops `veille run archive` with the reason, exit 2, no traceback."""
    config = tmp_path / "veille.yaml"
    config.write_text("version: 1\n", encoding="utf-8")
    env = {**os.environ, "VEILLE_ARCHIVE_DATABASE_URL": url, "VEILLE_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-m", "veille_cli", "run", "archive"],
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert done.returncode == 2, done
    assert said in done.stderr and "Traceback" not in done.stderr, done.stderr
