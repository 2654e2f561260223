"""The NAB scorer reproduces NAB's published per-file scores and its documented rules."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers.shared_data import requires_shared_data, shared_data
from veille.spikes.nab import (
    PROFILES,
    load_windows,
    normalised_score,
    probation_length,
    read_scores_csv,
    scaled_sigmoid,
    score_detections,
    score_file,
)

NAB_DIR = shared_data("nab")


def _published_rows() -> list[dict[str, str]]:
    with (NAB_DIR / "published_file_scores.csv").open(newline="", encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if row["detector"] == "numenta"]


def _reference_file(nab_file: str) -> Path:
    return NAB_DIR / "reference" / f"numenta_{nab_file.split('/')[-1]}"


@requires_shared_data("nab", "windows.json")
def test_reproduces_published_numenta_scores_for_every_profile() -> None:
    """Scoring Numenta HTM's published anomaly scores gives NAB's published raw score and counts per file."""
    windows = load_windows(NAB_DIR / "windows.json")
    rows = _published_rows()
    assert {row["profile"] for row in rows} == set(PROFILES)
    assert len(rows) == 15
    for row in rows:
        timestamps, scores = read_scores_csv(_reference_file(row["file"]))
        result = score_file(timestamps, scores, windows[row["file"]], PROFILES[row["profile"]], float(row["threshold"]))
        label = f"{row['profile']} {row['file']}"
        assert result.raw_score == pytest.approx(float(row["raw_score"]), abs=1e-9), label
        counts = (result.tp, result.tn, result.fp, result.fn)
        assert counts == tuple(int(row[k]) for k in ("TP", "TN", "FP", "FN")), label


def _toy_series(n: int) -> list[datetime]:
    start = datetime(2015, 1, 1)
    return [start + timedelta(minutes=5 * i) for i in range(n)]


def test_null_detector_scores_zero_and_perfect_detector_scores_hundred() -> None:
    """A detector that never fires normalises to 0 and one firing on each window's first row to 100."""
    ts = _toy_series(2000)
    windows = [(ts[900], ts[999]), (ts[1500], ts[1599])]
    for profile in PROFILES.values():
        null = score_detections(ts, [False] * len(ts), windows, profile)
        perfect = score_detections(ts, [i in (900, 1500) for i in range(len(ts))], windows, profile)
        assert normalised_score([null], profile) == pytest.approx(0.0)
        assert normalised_score([perfect], profile) == pytest.approx(100.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    """Extra detections later in the same window neither add nor subtract anything."""
    ts = _toy_series(2000)
    windows = [(ts[900], ts[999])]
    profile = PROFILES["standard"]
    once = score_detections(ts, [i == 950 for i in range(2000)], windows, profile)
    thrice = score_detections(ts, [i in (950, 960, 990) for i in range(2000)], windows, profile)
    assert thrice.raw_score == pytest.approx(once.raw_score)
    assert 0.0 < once.raw_score < 1.0


def test_false_positive_costs_less_just_after_a_window_than_far_from_it() -> None:
    """A false positive right after a window is cheap; one long after it or before any window costs A_FP."""
    ts = _toy_series(3000)
    windows = [(ts[1000], ts[1099])]
    profile = PROFILES["standard"]

    def fp_at(i: int) -> float:
        return score_detections(ts, [j == i for j in range(3000)], windows, profile).fp_score

    assert fp_at(800) == pytest.approx(-profile.a_fp)
    assert -0.01 < fp_at(1101) < 0.0
    assert fp_at(2500) == pytest.approx(-profile.a_fp)
    assert scaled_sigmoid(3.0) == -1.0


def test_probation_rows_and_windows_are_never_scored() -> None:
    """Detections in the probation period are ignored and a window wholly inside it is not counted."""
    ts = _toy_series(2000)
    assert probation_length(2000) == 300
    assert probation_length(20000) == 750
    windows = [(ts[100], ts[199]), (ts[1000], ts[1099])]
    result = score_detections(ts, [i in (50, 150) for i in range(2000)], windows, PROFILES["standard"])
    assert result.windows == 1
    assert result.fp == 0
    assert result.raw_score == pytest.approx(-1.0)
