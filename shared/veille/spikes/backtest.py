"""Backtests: run the default spike detector over a CSV of counts per bucket and list its alerts."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

from veille.models import Severity
from veille.spikes.detector import Decision, DetectorSettings, SpikeDetector

__all__ = ["AlertRow", "SeriesFormatError", "backtest_series", "read_series", "run_detector", "write_alerts_csv"]


class SeriesFormatError(ValueError):
    """A series CSV is malformed; the message names the file and line."""


@dataclass(frozen=True)
class AlertRow:
    """One alert fired during a backtest: the bucket where it fired and what the detector saw."""

    timestamp: datetime
    severity: Severity
    observed: float
    expected: float
    statistic: float
    scale: timedelta


def read_series(path: str | Path) -> Iterator[tuple[datetime, float]]:
    """Yield ``(timestamp, value)`` from a ``timestamp,value`` CSV with a header, in file order.

    Raises :class:`SeriesFormatError` naming the line for a missing header, an unparsable timestamp
    or value, a negative or non-finite value, or a timestamp that does not increase.
    """
    p = Path(path)
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            raise SeriesFormatError(f"{p}:1: expected a header 'timestamp,value', got {header!r}")
        last: datetime | None = None
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise SeriesFormatError(f"{p}:{line}: expected 'timestamp,value', got {','.join(row)!r}")
            try:
                ts = datetime.fromisoformat(row[0].strip())
            except ValueError:
                raise SeriesFormatError(f"{p}:{line}: {row[0]!r} is not a timestamp") from None
            try:
                value = float(row[1])
            except ValueError:
                raise SeriesFormatError(f"{p}:{line}: {row[1]!r} is not a number") from None
            if not math.isfinite(value) or value < 0:
                raise SeriesFormatError(f"{p}:{line}: a count must be a non-negative number, got {row[1]!r}")
            if last is not None and ts <= last:
                raise SeriesFormatError(f"{p}:{line}: timestamp {row[0]!r} is not after the previous one")
            last = ts
            yield ts, value


def run_detector(
    series: Iterable[tuple[datetime, float]], settings: DetectorSettings | None = None
) -> Iterator[Decision]:
    """Run one fresh detector over ``(timestamp, value)`` pairs and yield its decision per bucket."""
    detector = SpikeDetector(settings or DetectorSettings())
    for ts, value in series:
        yield detector.update(ts, value)


def backtest_series(path: str | Path, settings: DetectorSettings | None = None) -> list[AlertRow]:
    """Run the detector (default settings unless given) over a CSV and return one row per alert fired."""
    rows: list[AlertRow] = []
    for decision in run_detector(read_series(path), settings):
        if decision.event == "fired" and decision.severity is not None:
            rows.append(
                AlertRow(
                    timestamp=decision.timestamp,
                    severity=decision.severity,
                    observed=decision.observed,
                    expected=decision.expected,
                    statistic=decision.statistic,
                    scale=decision.scale_buckets * (settings or DetectorSettings()).bucket,
                )
            )
    return rows


def write_alerts_csv(rows: Iterable[AlertRow], out: TextIO) -> None:
    """Write alerts as CSV: ``timestamp,severity,observed,expected,window_minutes``.

    ``observed`` and ``expected`` are mention counts summed over the last ``window_minutes`` (the
    aggregation window on which the surge was detected); timestamps are written as in NAB files.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["timestamp", "severity", "observed", "expected", "window_minutes"])
    for row in rows:
        ts = row.timestamp.replace(tzinfo=None) if row.timestamp.utcoffset() == timedelta(0) else row.timestamp
        writer.writerow(
            [
                ts.isoformat(sep=" "),
                row.severity,
                f"{row.observed:g}",
                f"{row.expected:.1f}",
                f"{row.scale.total_seconds() / 60:g}",
            ]
        )
