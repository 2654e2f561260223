"""``veille backtest`` replays a series through the default detector and prints one row per alert."""

from __future__ import annotations

import csv
import io
import math
import random
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from veille_cli.backtest_cmd import backtest

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


def _write_rows(path: Path, rows: list[tuple[str, str]]) -> None:
    path.write_text("timestamp,value\n" + "".join(f"{ts},{v}\n" for ts, v in rows), encoding="utf-8")


def _repeating_series(path: Path) -> None:
    """Six quiet days of 5-minute counts in which the row of line 5 repeats the timestamp of line 4."""
    rows = [(f"{START + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S}", "20") for i in range(6 * 288)]
    rows.insert(3, (rows[2][0], "7"))
    _write_rows(path, rows)


def test_repeated_timestamp_is_an_error_naming_its_line_by_default(tmp_path: Path) -> None:
    """A repeated timestamp stops the backtest with the file and line, and says how to replay it anyway."""
    series = tmp_path / "dst.csv"
    _repeating_series(series)
    result = CliRunner().invoke(backtest, ["--series", str(series)])
    assert result.exit_code != 0
    assert "dst.csv:5" in result.output
    assert "repeats the previous one" in result.output
    assert "--on-duplicate" in result.output


def test_on_duplicate_skip_and_sum_replay_a_series_with_repeats(tmp_path: Path) -> None:
    """--on-duplicate skip or sum replays a series with a repeated timestamp (a quiet one raises nothing)."""
    series = tmp_path / "dst.csv"
    _repeating_series(series)
    for mode in ("skip", "sum"):
        result = CliRunner().invoke(backtest, ["--series", str(series), "--on-duplicate", mode])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines() == ["timestamp,severity,observed,expected,window_minutes"]


def test_read_series_sums_or_skips_repeats(tmp_path: Path) -> None:
    """sum adds a repeat's value to its bucket, skip drops it, and a step back in time is dropped by both."""
    from veille.spikes.backtest import read_series

    series = tmp_path / "s.csv"
    _write_rows(
        series,
        [("2015-03-08 01:50:00", "1"), ("2015-03-08 01:55:00", "2"), ("2015-03-08 01:55:00", "3"),
         ("2015-03-08 01:00:00", "4"), ("2015-03-08 02:00:00", "5")],
    )  # fmt: skip
    assert [v for _, v in read_series(series, "sum")] == [1, 5, 5]
    assert [v for _, v in read_series(series, "skip")] == [1, 2, 5]


def test_negative_and_fractional_values_are_replayed_as_measurements(tmp_path: Path) -> None:
    """A series of fractional values of both signs is accepted, and a level drop in it raises an alert."""
    rng = random.Random(5)
    rows = []
    for i in range(6 * 288):
        level = -2.0 if i >= 4 * 288 else 1.5
        rows.append((f"{START + timedelta(minutes=5 * i):%Y-%m-%d %H:%M:%S}", f"{level + rng.gauss(0, 0.3):.3f}"))
    series = tmp_path / "temp.csv"
    _write_rows(series, rows)
    result = CliRunner().invoke(backtest, ["--series", str(series)])
    assert result.exit_code == 0, result.output
    alerts = list(csv.DictReader(io.StringIO(result.output)))
    assert len(alerts) >= 1
    fired_at = datetime.fromisoformat(alerts[0]["timestamp"])
    assert START + timedelta(minutes=5 * 4 * 288) <= fired_at <= START + timedelta(minutes=5 * (4 * 288 + 12))


def test_series_settings_fit_the_files_format() -> None:
    """The bucket is the file's sampling period and only whole non-negative values are read as counts."""
    from veille.spikes.backtest import series_settings

    hourly = [(START + timedelta(hours=i), float(i % 3)) for i in range(50)]
    assert series_settings(hourly).bucket == timedelta(hours=1)
    assert series_settings(hourly).counts
    assert not series_settings([(START, 0.5), (START + timedelta(hours=1), 1.0)]).counts
    assert not series_settings([(START, -1.0), (START + timedelta(hours=1), 1.0)]).counts


def test_whole_numbers_less_variable_than_counts_are_measurements() -> None:
    """Whole-number speeds, far less variable than event counts, are measurements; noisy counts stay counts."""
    from veille.spikes.backtest import series_settings

    rng = random.Random(2)
    speeds = [(START + timedelta(minutes=5 * i), float(60 + rng.choice((-1, 0, 0, 1)))) for i in range(500)]
    assert not series_settings(speeds).counts
    counts = [(START + timedelta(minutes=5 * i), float(max(0, round(rng.gauss(20, 5))))) for i in range(500)]
    assert series_settings(counts).counts
