"""What recurs at the same hour each day is the watch's rhythm, not a surge; samples are not counts.

Issue 12: the robust baseline clips and freezes whatever looks like a surge, so a burst that comes
back every night at the same hour (a nightly job, a daily show) was never learned and alerted every
night (NAB's ec2_cpu_utilization_24ae8d: 13 alerts in 14 days, all at about 03:20). And a backtest
read whole-number samples taken at irregular times (traffic travel times) as counts, zero-filled the
three quarters of buckets between them and alerted on the samples themselves.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from veille.spikes import Decision, SpikeDetector
from veille.spikes.backtest import backtest_series, series_settings

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
BUCKET = timedelta(minutes=5)
PER_DAY = 288
JOB = 3 * 12 + 4  # 03:20


def _poisson(rng: random.Random, lam: float) -> int:
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _nightly(days: int, seed: int, extra: tuple[int, int, float] | None = None, first: int = 0) -> list[float]:
    """Mentions with a day/night rhythm and a 30-minute burst (x12) every night near 03:20 from day ``first`` on.

    The burst's start wanders by up to 15 minutes from night to night, as a scheduled job's does.
    ``extra`` = (start, end, factor) multiplies the rate of those buckets (a genuine surge).
    """
    rng = random.Random(seed)
    starts = [JOB + rng.randint(-3, 3) for _ in range(days)]
    out = []
    for i in range(days * PER_DAY):
        hour = (i % PER_DAY) / 12
        lam = 10.0 * (1.0 + 0.5 * math.sin(2 * math.pi * (hour - 9) / 24))
        s = starts[i // PER_DAY]
        if i >= first * PER_DAY and s <= i % PER_DAY < s + 6:
            lam *= 12.0
        if extra and extra[0] <= i < extra[1]:
            lam *= extra[2]
        out.append(float(_poisson(rng, lam)))
    return out


def _run(values: list[float], det: SpikeDetector, offset: int = 0) -> list[Decision]:
    return [det.update(START + (offset + i) * BUCKET, v) for i, v in enumerate(values)]


def _fired(decisions: list[Decision]) -> list[int]:
    return [i for i, d in enumerate(decisions) if d.event == "fired"]


def test_a_nightly_burst_alerts_at_most_once_not_every_night() -> None:
    """A burst every night at the same hour, from the fourth day on: one alert, the first night, not one a night."""
    for seed in (1, 2, 3):
        fired = _fired(_run(_nightly(14, seed, first=3), SpikeDetector()))
        assert len(fired) == 1, (seed, [(i // PER_DAY, (i % PER_DAY) / 12) for i in fired])
        assert fired[0] // PER_DAY == 3


def test_a_surge_on_top_of_the_nightly_burst_or_at_another_hour_still_fires() -> None:
    """What recurs is discounted, not what is new: a far larger burst at the usual hour, and a surge at 15:00, fire."""
    at_job = 10 * PER_DAY + JOB
    fired = _fired(_run(_nightly(12, 4, extra=(at_job, at_job + 24, 5.0)), SpikeDetector()))
    assert any(at_job <= i < at_job + 12 for i in fired), fired
    afternoon = 10 * PER_DAY + 15 * 12
    fired = _fired(_run(_nightly(12, 5, extra=(afternoon, afternoon + 24, 4.0)), SpikeDetector()))
    assert any(afternoon <= i < afternoon + 12 for i in fired), fired


def test_state_of_version_3_loads_and_continues_like_the_original() -> None:
    """A detector persisted before this change (state version 3, no ``skipped_n``) loads and decides as before."""
    values = _nightly(6, 8)
    det = SpikeDetector()
    _run(values[: 3 * PER_DAY], det)
    state = json.loads(json.dumps(det.to_state()))
    del state["skipped_n"]
    old = SpikeDetector.from_state(None, state)
    a = _run(values[3 * PER_DAY :], det, offset=3 * PER_DAY)
    b = _run(values[3 * PER_DAY :], old, offset=3 * PER_DAY)
    assert [(d.event, d.statistic, d.expected) for d in a] == [(d.event, d.statistic, d.expected) for d in b]


# Every key the previous release's ``SpikeDetector.from_state`` (commit 4a8353c) reads, each one required;
# it refused any version but 3 and cut ``recent_x``/``recent_mu`` to the history it needs.
_PREVIOUS_READER_KEYS = {
    "version", "n", "last_ts", "level", "level_w", "daily", "daily_n", "daily_acc", "weekly", "weekly_n",
    "weekly_obs", "weekly_acc", "weekly_day", "alpha", "alpha_n", "recent_x", "recent_mu", "sum_x", "sum_mu",
    "firing", "fired_scale", "fired_n", "calm", "resolved_n", "severity",
}  # fmt: skip


def test_the_previous_release_reads_the_state_this_one_writes() -> None:
    """A rolling upgrade or a rollback: an older classifier replica stepping the same watches reads this state.

    Had the state taken a number it refuses, that replica would reset the watch: its learned baseline gone
    (a warm-up again) and its open alert never resolved.
    """
    det = SpikeDetector()
    _run(_nightly(4, 8), det)
    state = json.loads(json.dumps(det.to_state()))
    assert state["version"] == 3
    assert state.keys() >= _PREVIOUS_READER_KEYS
    assert det._history <= len(state["recent_x"]) == len(state["recent_mu"])


def _irregular_samples(path: Path) -> list[tuple[datetime, float]]:
    """Travel times in whole seconds, read every 8 to 12 minutes (and now and then not for an hour)."""
    rng = random.Random(9)
    ts = datetime(2015, 7, 10, 14, 24)
    rows = []
    for _ in range(2500):
        hour = ts.hour + ts.minute / 60
        rows.append((ts, float(max(1, round(rng.gauss(300 + 60 * math.sin(2 * math.pi * hour / 24), 40))))))
        ts += timedelta(minutes=rng.choice((8, 9, 10, 10, 10, 10, 11, 12) if rng.random() > 0.1 else (40, 60)))
    path.write_text("timestamp,value\n" + "".join(f"{t:%Y-%m-%d %H:%M:%S},{v:g}\n" for t, v in rows))
    return rows


def test_whole_numbers_sampled_off_the_bucket_grid_are_measurements(tmp_path: Path) -> None:
    """Irregular samples are not counts: their gaps are unknown, not zero, and an ordinary series raises no storm."""
    path = tmp_path / "travel_time.csv"
    rows = _irregular_samples(path)
    assert not series_settings(rows).counts
    assert len(backtest_series(path)) <= 2
    # the same whole numbers stamped on a 10-minute grid, a few buckets missing, are read as counts
    grid = [(datetime(2015, 7, 10) + k * timedelta(minutes=10), v) for k, (_, v) in enumerate(rows) if k % 97]
    assert series_settings(grid).counts
