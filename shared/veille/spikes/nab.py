"""A scorer for the Numenta Anomaly Benchmark (NAB), as pure functions.

NAB scores a detector on a labelled series: each labelled anomaly *window* rewards the earliest
detection inside it (a scaled sigmoid of how early it came), every detection outside the windows
costs a false-positive penalty (smaller just after a window), and every window without a detection
costs a false-negative penalty. The first rows of a file are a *probation* period that is never
scored. Three cost profiles weigh these terms differently; a set of files is summarised by a
*normalised* score where the detector that never fires scores 0 and a perfect detector scores 100.

This module reproduces the published per-file raw scores of NAB v1.1 (checked by
``tests/unit/test_nab_scorer.py`` against the published Numenta HTM results). The rules, in order:

* probation length ``min(floor(0.15 * n), 0.15 * 5000)`` rows; those rows are dropped from scoring
  (and from the TP/FP/TN/FN counts), and a window that lies wholly inside it is not counted;
* a row is a detection when its anomaly score is ``>= threshold``;
* a row ``i`` inside window ``[L, R]`` (width ``W = R - L + 1``) is worth
  ``A_TP * sigma(-(R - i + 1) / W) / sigma(-1)``; only the best (earliest) detection of a window
  counts, and a window without one costs ``-A_FN``;
* a row outside every window is worth ``A_FP * sigma(|R' - i| / (W' - 1))`` relative to the last
  window that ended before it (right edge ``R'``, width ``W'``), or ``-A_FP`` before any window
  has ended; ``sigma(y) = 2 / (1 + exp(5 y)) - 1``, and ``-1`` from ``y >= 3`` on.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

__all__ = [
    "PROFILES",
    "FileScore",
    "Profile",
    "RowScores",
    "detections_at",
    "load_windows",
    "normalised_score",
    "parse_nab_timestamp",
    "probation_length",
    "read_scores_csv",
    "read_series_csv",
    "row_scores",
    "scaled_sigmoid",
    "score_detections",
    "score_file",
    "window_bounds",
]

_PROBATION_PERCENT = 0.15
_PROBATION_CAP_ROWS = 5000  # the cap is 15 % of 5000 rows, i.e. 750 rows


@dataclass(frozen=True)
class Profile:
    """One NAB cost profile: the weights of a true positive, a false positive and a false negative."""

    name: str
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile("standard", 1.0, 0.11, 1.0),
    "reward_low_FP_rate": Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    "reward_low_FN_rate": Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
}
"""The three published NAB profiles, by name."""


def scaled_sigmoid(y: float) -> float:
    """Return NAB's scaled sigmoid ``2 / (1 + exp(5 y)) - 1``, or ``-1`` when ``y >= 3``."""
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def probation_length(n_rows: int, probation_percent: float = _PROBATION_PERCENT) -> int:
    """Return how many leading rows of an ``n_rows`` file are in probation (never scored)."""
    return int(min(math.floor(probation_percent * n_rows), probation_percent * _PROBATION_CAP_ROWS))


def parse_nab_timestamp(text: str) -> datetime:
    """Parse a NAB timestamp such as ``2015-03-03 04:37:53`` or ``2015-03-03 04:37:53.000000``."""
    return datetime.fromisoformat(text.strip())


def window_bounds(
    timestamps: Sequence[datetime], windows: Iterable[tuple[datetime, datetime]]
) -> list[tuple[int, int]]:
    """Return each window as ``(first_row, last_row)`` indices into ``timestamps`` (inclusive).

    Raises ``ValueError`` when a window edge is not one of the timestamps (NAB's windows are
    always aligned on rows of their file).
    """
    index = {ts: i for i, ts in enumerate(timestamps)}
    bounds: list[tuple[int, int]] = []
    for start, end in windows:
        if start not in index or end not in index:
            raise ValueError(f"window [{start}, {end}] is not aligned on the series' timestamps")
        bounds.append((index[start], index[end]))
    bounds.sort()
    return bounds


@dataclass(frozen=True)
class RowScores:
    """What a detection on each row would be worth: its weight and the window it belongs to.

    ``window[i]`` is the index of the window that row ``i`` belongs to, ``-1`` for a row outside
    every window, or ``None`` for a row in probation (never scored).
    """

    weight: list[float]
    window: list[int | None]
    n_windows: int
    scored_windows: frozenset[int] = field(default_factory=frozenset)


def row_scores(n_rows: int, bounds: Sequence[tuple[int, int]], profile: Profile) -> RowScores:
    """Return, for each row, the weighted score a detection there earns and the window it is in."""
    max_tp = scaled_sigmoid(-1.0)
    probation = probation_length(n_rows)
    weight: list[float] = []
    window: list[int | None] = []
    current = 0  # index of the next window not yet ended
    prev_right: int | None = None
    prev_width = 0
    for i in range(n_rows):
        while current < len(bounds) and bounds[current][1] < i:
            prev_right = bounds[current][1]
            prev_width = bounds[current][1] - bounds[current][0] + 1
            current += 1
        inside = current < len(bounds) and bounds[current][0] <= i <= bounds[current][1]
        if inside:
            left, right = bounds[current]
            width = right - left + 1
            w = scaled_sigmoid(-(right - i + 1) / width) * profile.a_tp / max_tp
            win: int = current
        else:
            y = 3.0 if prev_right is None else abs(prev_right - i) / (prev_width - 1)
            w = scaled_sigmoid(y) * profile.a_fp
            win = -1
        weight.append(w)
        window.append(win if i >= probation else None)
    scored = frozenset(w for w in window if w is not None and w >= 0)
    return RowScores(weight=weight, window=window, n_windows=len(bounds), scored_windows=scored)


@dataclass(frozen=True)
class FileScore:
    """The NAB score of one file at one threshold, with NAB's row counts.

    ``tp``/``fp``/``tn``/``fn`` count *rows* after probation, as NAB's results files do;
    ``windows`` is the number of scored windows, ``detected`` how many of them had a detection,
    and ``window_scores`` the best score in each scored window (``-A_FN`` when missed).
    """

    profile: str
    raw_score: float
    tp: int
    tn: int
    fp: int
    fn: int
    total: int
    windows: int
    detected: int
    fp_score: float
    window_scores: tuple[float, ...]


def score_detections(
    timestamps: Sequence[datetime],
    detections: Sequence[bool],
    windows: Iterable[tuple[datetime, datetime]],
    profile: Profile,
) -> FileScore:
    """Score a file given, for each row, whether the detector detected an anomaly there."""
    if len(timestamps) != len(detections):
        raise ValueError("timestamps and detections must have the same length")
    bounds = window_bounds(timestamps, windows)
    rows = row_scores(len(timestamps), bounds, profile)
    best = {w: -profile.a_fn for w in sorted(rows.scored_windows)}
    hit: set[int] = set()
    tp = tn = fp = fn = 0
    fp_score = 0.0
    for detected, weight, win in zip(detections, rows.weight, rows.window, strict=True):
        if win is None:
            continue
        if win < 0:
            if detected:
                fp += 1
                fp_score += weight
            else:
                tn += 1
        elif detected:
            tp += 1
            hit.add(win)
            best[win] = max(best[win], weight)
        else:
            fn += 1
    window_scores = tuple(best.values())
    return FileScore(
        profile=profile.name,
        raw_score=fp_score + sum(window_scores),
        tp=tp,
        tn=tn,
        fp=fp,
        fn=fn,
        total=tp + tn + fp + fn,
        windows=len(best),
        detected=len(hit),
        fp_score=fp_score,
        window_scores=window_scores,
    )


def detections_at(scores: Sequence[float], threshold: float) -> list[bool]:
    """Return NAB's detections: the rows whose anomaly score is at least ``threshold``."""
    return [s >= threshold for s in scores]


def score_file(
    timestamps: Sequence[datetime],
    anomaly_scores: Sequence[float],
    windows: Iterable[tuple[datetime, datetime]],
    profile: Profile,
    threshold: float,
) -> FileScore:
    """Score a file of per-row anomaly scores at ``threshold`` under ``profile``."""
    return score_detections(timestamps, detections_at(anomaly_scores, threshold), windows, profile)


def normalised_score(scores: Iterable[FileScore], profile: Profile) -> float:
    """Return NAB's normalised score of a set of files: null detector 0, perfect detector 100.

    The perfect detector earns ``A_TP`` per scored window and no false positive; the null detector
    earns ``-A_FN`` per scored window.
    """
    items = list(scores)
    raw = sum(s.raw_score for s in items)
    n_windows = sum(s.windows for s in items)
    perfect = n_windows * profile.a_tp
    null = -n_windows * profile.a_fn
    if perfect == null:
        raise ValueError("no scored window: the normalised score is undefined")
    return 100.0 * (raw - null) / (perfect - null)


def load_windows(path: str | Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """Load NAB's ``combined_windows.json``-style file: relative file name -> list of windows."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a JSON object of file name -> windows")
    return {
        str(name): [(parse_nab_timestamp(a), parse_nab_timestamp(b)) for a, b in wins] for name, wins in data.items()
    }


def read_series_csv(path: str | Path) -> tuple[list[datetime], list[float]]:
    """Read a NAB data file (``timestamp,value`` with a header) into timestamps and values."""
    return _read_columns(path, "value")


def read_scores_csv(path: str | Path, column: str = "anomaly_score") -> tuple[list[datetime], list[float]]:
    """Read a NAB results file into timestamps and one numeric column (the anomaly score)."""
    return _read_columns(path, column)


def _read_columns(path: str | Path, column: str) -> tuple[list[datetime], list[float]]:
    timestamps: list[datetime] = []
    values: list[float] = []
    with Path(path).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            timestamps.append(parse_nab_timestamp(row["timestamp"]))
            values.append(float(row[column]))
    return timestamps, values
