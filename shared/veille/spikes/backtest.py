"""Backtests: run the default spike detector over a CSV of counts per bucket and list its alerts."""

from __future__ import annotations

import csv
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, TextIO

from veille.models import Severity
from veille.spikes.detector import Decision, DetectorSettings, SpikeDetector

__all__ = [
    "AlertRow",
    "OnDuplicate",
    "SeriesFormatError",
    "backtest_series",
    "read_series",
    "read_series_lines",
    "run_detector",
    "series_settings",
    "write_alerts_csv",
]


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


OnDuplicate = Literal["error", "sum", "skip"]


def read_series(path: str | Path, on_duplicate: OnDuplicate = "error") -> Iterator[tuple[datetime, float]]:
    """Yield ``(timestamp, value)`` from a ``timestamp,value`` CSV with a header, one pair per bucket.

    Values may be negative or fractional (any finite number): whether they can be read as counts is
    decided by :func:`series_settings`. A timestamp that is not after the previous one (a repeat, or a
    step back as after a daylight-saving change) is an error naming its line with ``on_duplicate="error"``;
    with ``"skip"`` the row is dropped; with ``"sum"`` a repeated timestamp's value is added to that
    bucket (a step back further than the previous bucket is dropped, since that bucket is gone).

    Raises :class:`SeriesFormatError` naming the line for a missing header, an unparsable timestamp
    or value, a non-finite value, or (by default) a timestamp that does not increase.
    """
    for ts, value, _line in read_series_lines(path, on_duplicate):
        yield ts, value


def read_series_lines(path: str | Path, on_duplicate: OnDuplicate = "error") -> Iterator[tuple[datetime, float, int]]:
    """Like :func:`read_series`, and also yield the line of the file where each bucket starts."""
    if on_duplicate not in ("error", "sum", "skip"):
        raise ValueError(f"on_duplicate must be error, sum or skip, got {on_duplicate!r}")
    p = Path(path)
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
            raise SeriesFormatError(f"{p}:1: expected a header 'timestamp,value', got {header!r}")
        pending: tuple[datetime, float, int] | None = None
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
            if not math.isfinite(value):
                raise SeriesFormatError(f"{p}:{line}: a value must be a finite number, got {row[1]!r}")
            if pending is not None and ts <= pending[0]:
                if on_duplicate == "error":
                    what = "repeats the previous one" if ts == pending[0] else "is before the previous one"
                    raise SeriesFormatError(
                        f"{p}:{line}: timestamp {row[0]!r} {what} (--on-duplicate sum or skip to replay it anyway)"
                    )
                if on_duplicate == "sum" and ts == pending[0]:
                    pending = (pending[0], pending[1] + value, pending[2])
                continue
            if pending is not None:
                yield pending
            pending = (ts, value, line)
        if pending is not None:
            yield pending


OFF_GRID_TOLERANCE = 0.01
"""Largest share of steps between rows that may be other than a whole number of buckets for counts.

A count per bucket is stamped at its bucket's start, so every step between rows is a whole number of
buckets, and a missing row is a bucket with nothing in it (zero). Rows taken at irregular times (a
sensor read every 8 to 12 minutes, such as NAB's traffic travel times: 9 to 47 % of steps off the
grid) are samples, whose gaps are unknown: zero-filled, three quarters of a travel-time series became
zeros and every sample a "surge". One step in a hundred is tolerated (a clock change, a late export).
"""


def _dispersion_index(series: Sequence[tuple[datetime, float]]) -> float:
    """Half the variance of successive differences over the mean: about 1 or more for event counts.

    Differences remove slow changes (daily rhythm, trends), not the independent-event noise, whose
    variance is at least the mean for counts (Poisson) and usually more (bursts).
    """
    values = [v for _, v in series]
    if len(values) < 3:
        return math.inf
    mean = math.fsum(values) / len(values)
    if mean <= 0:
        return math.inf
    diffs = [b - a for a, b in itertools.pairwise(values)]
    dm = math.fsum(diffs) / len(diffs)
    var = math.fsum((d - dm) ** 2 for d in diffs) / len(diffs)
    return var / 2.0 / mean


def series_settings(series: Sequence[tuple[datetime, float]], base: DetectorSettings | None = None) -> DetectorSettings:
    """Return detector settings fitted to a whole series' *format* (never to its anomalies).

    The bucket is the most common step between timestamps (the series' sampling period); the values
    are counts when every one is a non-negative whole number, they vary at least as much as
    independent events would (a Poisson floor: half the variance of successive differences is at
    least the mean; rounded speeds or temperatures vary far less), and the rows lie on the bucket's
    grid (see :data:`OFF_GRID_TOLERANCE`), else measurements (``counts=False``): a missing bucket of
    counts is zero mentions, a missing sample is unknown.
    The daily profile's slot is widened to a whole number of buckets when the bucket does not divide
    an hour. Everything else keeps ``base`` (the defaults).
    """
    base = base or DetectorSettings()
    steps = Counter(b[0] - a[0] for a, b in itertools.pairwise(series) if b[0] > a[0])
    bucket = steps.most_common(1)[0][0] if steps else base.bucket
    off_grid = sum(c for step, c in steps.items() if step % bucket)
    counts = (
        all(v >= 0 and v == int(v) for _, v in series)
        and _dispersion_index(series) >= 1.0
        and off_grid <= OFF_GRID_TOLERANCE * max(sum(steps.values()), 1)
    )
    slot = base.daily_slot
    if slot % bucket:
        n = math.ceil(slot / bucket)
        while timedelta(days=1) % (n * bucket) and n * bucket < timedelta(days=1):
            n += 1
        slot = n * bucket
    scales = tuple(max(bucket, (sc // bucket) * bucket) for sc in base.scales)
    scales = tuple(dict.fromkeys(scales))
    try:
        return base.model_copy(update={"bucket": bucket, "counts": counts, "daily_slot": slot, "scales": scales})
    except ValueError as exc:  # pragma: no cover - an exotic sampling period
        raise SeriesFormatError(f"cannot fit the detector to a bucket of {bucket}: {exc}") from None


def run_detector(
    series: Iterable[tuple[datetime, float]], settings: DetectorSettings | None = None
) -> Iterator[Decision]:
    """Run one fresh detector over ``(timestamp, value)`` pairs and yield its decision per bucket."""
    detector = SpikeDetector(settings or DetectorSettings())
    for ts, value in series:
        yield detector.update(ts, value)


def backtest_series(
    path: str | Path, settings: DetectorSettings | None = None, on_duplicate: OnDuplicate = "error"
) -> list[AlertRow]:
    """Run the detector over a CSV and return one row per alert fired.

    Without ``settings``, the defaults fitted to the file's format by :func:`series_settings`.
    """
    series = list(read_series(path, on_duplicate))
    settings = settings or series_settings(series)
    rows: list[AlertRow] = []
    for decision in run_detector(series, settings):
        if decision.event == "fired" and decision.severity is not None:
            rows.append(
                AlertRow(
                    timestamp=decision.timestamp,
                    severity=decision.severity,
                    observed=decision.observed,
                    expected=decision.expected,
                    statistic=decision.statistic,
                    scale=decision.scale_buckets * settings.bucket,
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
