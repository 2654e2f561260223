"""``veille backtest`` replays a series through the default detector and prints one row per alert."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from veille.cli.backtest_cmd import backtest

START = datetime(2015, 2, 26, 21, 42, 53)


def _write_series(path: Path, days: int = 6, surge_at: int | None = None) -> list[datetime]:
    rng = random.Random(11)
    stamps = []
    with path.open("w", encoding="utf-8") as fh:
        fh.write("timestamp,value\n")
        for i in range(days * 288):
            ts = START + timedelta(minutes=5 * i)
            lam = 20 * (1 + 0.5 * math.sin(2 * math.pi * i / 288))
            if surge_at is not None and surge_at <= i < surge_at + 24:
                lam *= 8
            value = max(0, round(rng.gauss(lam, math.sqrt(lam))))
            fh.write(f"{ts:%Y-%m-%d %H:%M:%S},{value}\n")
            stamps.append(ts)
    return stamps


def test_prints_one_row_per_surge_to_stdout(tmp_path: Path) -> None:
    """A series with one surge gives a CSV on stdout with one alert at the start of the surge."""
    series = tmp_path / "series.csv"
    stamps = _write_series(series, surge_at=4 * 288)
    result = CliRunner().invoke(backtest, ["--series", str(series)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 1
    assert {"timestamp", "severity"} <= set(rows[0])
    fired_at = datetime.fromisoformat(rows[0]["timestamp"])
    assert stamps[4 * 288] <= fired_at <= stamps[4 * 288 + 6]
    assert rows[0]["severity"] in ("warning", "critical")


def test_writes_the_alerts_file_given_with_o(tmp_path: Path) -> None:
    """With -o the alerts go to that file (header only when nothing fired) and stdout stays clean."""
    series = tmp_path / "quiet.csv"
    _write_series(series)
    out = tmp_path / "alerts.csv"
    result = CliRunner().invoke(backtest, ["--series", str(series), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").splitlines() == ["timestamp,severity,observed,expected,window_minutes"]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A series path that does not exist is reported by name, with a non-zero exit."""
    result = CliRunner().invoke(backtest, ["--series", str(tmp_path / "nope.csv")])
    assert result.exit_code != 0
    assert "nope.csv" in result.output


def test_malformed_row_names_its_line(tmp_path: Path) -> None:
    """A row whose value is not a number is reported with the file and line number."""
    series = tmp_path / "bad.csv"
    series.write_text("timestamp,value\n2015-02-26 21:42:53,4\n2015-02-26 21:47:53,lots\n", encoding="utf-8")
    result = CliRunner().invoke(backtest, ["--series", str(series)])
    assert result.exit_code != 0
    assert "bad.csv:3" in result.output
    assert "'lots' is not a number" in result.output


def test_help_explains_the_command() -> None:
    """--help says what the command does and what the series file looks like."""
    result = CliRunner().invoke(backtest, ["--help"])
    assert result.exit_code == 0
    assert "--series" in result.output
    assert "timestamp,value" in result.output
