"""The spike detector alerts once per surge, resolves after it, and stays quiet on ordinary rhythm."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from veille.spikes import Decision, DetectorSettings, SpikeDetector
from veille.spikes.detector import nb_signed_deviance

START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
BUCKET = timedelta(minutes=5)
PER_DAY = 288


def _poisson(rng: random.Random, lam: float) -> int:
    """Draw a Poisson count (Knuth for small means, a rounded normal for large ones)."""
    if lam > 50:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _rhythm(i: int, base: float) -> float:
    """A daily rhythm (x3 between night and day) with quieter weekends."""
    hour = (i % PER_DAY) / 12
    day = (i // PER_DAY) % 7
    daily = 1.0 + 0.5 * math.sin(2 * math.pi * (hour - 9) / 24)
    return base * daily * (0.6 if day >= 5 else 1.0)


def _series(days: int, base: float, seed: int, surge: tuple[int, int, float] | None = None) -> list[float]:
    rng = random.Random(seed)
    out = []
    for i in range(days * PER_DAY):
        lam = _rhythm(i, base)
        if surge and surge[0] <= i < surge[1]:
            lam *= surge[2]
        out.append(float(_poisson(rng, lam)))
    return out


def _run(values: list[float], det: SpikeDetector | None = None, offset: int = 0) -> list[Decision]:
    det = det or SpikeDetector(DetectorSettings())
    return [det.update(START + (offset + i) * BUCKET, v) for i, v in enumerate(values)]


def _fired(decisions: list[Decision]) -> list[int]:
    return [i for i, d in enumerate(decisions) if d.event == "fired"]


def test_fires_once_on_a_surge_and_resolves_after_it() -> None:
    """A two-hour surge to 6x the usual volume fires exactly one alert during it, then resolves."""
    surge_start = 10 * PER_DAY + 14 * 12
    surge_end = surge_start + 24
    values = _series(14, 20.0, seed=1, surge=(surge_start, surge_end, 6.0))
    decisions = _run(values)
    fired = _fired(decisions)
    assert len(fired) == 1
    assert surge_start <= fired[0] < surge_start + 6
    alert = decisions[fired[0]]
    assert alert.severity in ("warning", "critical")
    assert alert.observed > alert.expected
    assert alert.score >= 0.5
    resolved = [i for i, d in enumerate(decisions) if d.event == "resolved"]
    assert len(resolved) == 1
    assert surge_end <= resolved[0] < surge_end + 10 * 12
    assert not decisions[-1].firing


def test_does_not_fire_on_the_daily_and_weekly_rhythm() -> None:
    """Three weeks of ordinary volume with a strong day/night and weekday/weekend rhythm raise no alert."""
    values = _series(21, 30.0, seed=2)
    assert _fired(_run(values)) == []


def test_does_not_fire_on_sparse_zero_heavy_noise() -> None:
    """A quiet watch (mostly zero mentions per bucket, the odd one or two) raises no alert."""
    values = _series(21, 0.08, seed=3)
    assert sum(v == 0 for v in values) > 0.85 * len(values)
    assert _fired(_run(values)) == []


def test_fires_on_a_burst_in_a_quiet_watch() -> None:
    """Forty mentions within half an hour on a watch that usually gets a handful a day fire an alert."""
    values = _series(10, 0.03, seed=4)
    burst = 8 * PER_DAY + 15 * 12
    for k in range(6):
        values[burst + k] += 7.0
    fired = _fired(_run(values))
    assert len(fired) == 1
    assert burst <= fired[0] < burst + 6


def test_an_earlier_surge_does_not_hide_the_next_one() -> None:
    """After a six-hour surge, the baseline has not absorbed it: a shorter one two days later fires again."""
    first = 8 * PER_DAY + 13 * 12
    second = 10 * PER_DAY + 13 * 12
    values = _series(12, 20.0, seed=5, surge=(first, first + 72, 5.0))
    rng = random.Random(6)
    for i in range(second, second + 24):
        values[i] = float(_poisson(rng, 5.0 * _rhythm(i, 20.0)))
    fired = _fired(_run(values))
    assert len(fired) == 2
    assert first <= fired[0] < first + 12
    assert second <= fired[1] < second + 24


def test_state_round_trip_gives_identical_decisions() -> None:
    """Saving the state as JSON halfway and resuming from it gives exactly the decisions of one run."""
    surge = 9 * PER_DAY + 100
    values = _series(12, 15.0, seed=7, surge=(surge, surge + 30, 5.0))
    settings = DetectorSettings()
    whole = _run(values, SpikeDetector(settings))
    for half in (len(values) // 2, surge + 5):  # once while quiet, once while firing
        first = SpikeDetector(settings)
        part1 = _run(values[:half], first)
        state = json.loads(json.dumps(first.to_state()))
        resumed = SpikeDetector.from_state(settings, state)
        part2 = _run(values[half:], resumed, offset=half)
        assert part1 + part2 == whole


def test_missing_buckets_count_as_zero_mentions() -> None:
    """Skipping empty buckets gives the same decisions as feeding explicit zeros."""
    values = _series(4, 0.2, seed=8)
    dense = _run(values)
    det = SpikeDetector(DetectorSettings())
    sparse = {i: det.update(START + i * BUCKET, v) for i, v in enumerate(values) if v > 0 or i == 0}
    assert all(sparse[i] == dense[i] for i in sparse)


def test_rejects_buckets_out_of_order() -> None:
    """Feeding a bucket at or before the last one is an error, not a silent corruption of the baseline."""
    det = SpikeDetector()
    det.update(START, 3)
    with pytest.raises(ValueError, match="not after"):
        det.update(START, 4)


def test_settings_reject_a_scale_that_is_not_a_multiple_of_the_bucket() -> None:
    """Aggregation windows are expressed in time and must be whole numbers of buckets."""
    with pytest.raises(ValueError, match="multiple"):
        DetectorSettings(bucket=timedelta(minutes=5), scales=(timedelta(minutes=7),))


def test_statistic_is_calm_for_expected_counts_and_large_for_surges() -> None:
    """The count statistic is near zero at the expected count and grows with the surge, even below one."""
    assert abs(nb_signed_deviance(10, 10, 0.1)) < 0.2
    assert nb_signed_deviance(1, 0.05, 0.0) < 2.0  # one mention where a twentieth is expected
    assert nb_signed_deviance(8, 0.05, 0.0) > 5.0
    assert nb_signed_deviance(40, 10, 0.1) > nb_signed_deviance(20, 10, 0.1) > 0


def test_a_day_long_rise_fires_once_and_resolves() -> None:
    """Volume at 3x the usual for a whole day is one surge: a single alert early in it, and it resolves."""
    start = 10 * PER_DAY + 8 * 12
    end = start + PER_DAY
    values = _series(13, 10.0, seed=9, surge=(start, end, 3.0))
    decisions = _run(values)
    fired = [i for i in _fired(decisions) if i >= 3 * PER_DAY]  # once the daily rhythm is learned
    assert len(fired) == 1
    assert start <= fired[0] < start + 6 * 12
    resolved = [i for i, d in enumerate(decisions) if d.event == "resolved" and i > fired[0]]
    assert len(resolved) == 1
    assert not decisions[-1].firing


def test_warm_up_learns_the_level_of_a_new_watch() -> None:
    """A new watch's first day teaches the baseline its real level, so over-dispersion is not inflated."""
    values = _series(4, 2.0, seed=13)
    det = SpikeDetector(DetectorSettings())
    _run(values, det)
    assert det.level == pytest.approx(2.0, rel=0.3)
    assert max(det.alpha) < 0.3


def test_longer_scales_get_family_wise_lower_thresholds() -> None:
    """A day-long sum is tested twelve times less often than a two-hour one, so it fires at a lower statistic."""
    det = SpikeDetector(DetectorSettings(scales=(timedelta(hours=2), timedelta(hours=6), timedelta(hours=24))))
    two_h, six_h, day = det.thresholds
    assert two_h == pytest.approx(3.0)
    assert 3.0 > six_h > day > 2.0
    flat = SpikeDetector(DetectorSettings(familywise=False))
    assert flat.thresholds == [3.0] * len(flat.settings.scales)


def _measurements(days: int, seed: int, shift: tuple[int, float] | None = None) -> list[float]:
    """A measurement of either sign with a daily wave and noise, optionally shifted from a bucket on."""
    rng = random.Random(seed)
    out = []
    for i in range(days * PER_DAY):
        value = -0.5 + 0.8 * math.sin(2 * math.pi * i / PER_DAY) + rng.gauss(0, 0.2)
        if shift is not None and i >= shift[0]:
            value += shift[1]
        out.append(value)
    return out


def test_counts_refuse_negative_values_and_measurements_accept_them() -> None:
    """A count detector refuses a negative value; a measurement detector takes fractional values of any sign."""
    with pytest.raises(ValueError, match="non-negative"):
        SpikeDetector().update(START, -1)
    det = SpikeDetector(DetectorSettings(counts=False))
    assert det.update(START, -1.5).expected == -1.5
    assert math.isfinite(det.update(START + timedelta(minutes=5), 0.25).statistic)


def test_measurements_flat_series_raises_nothing_and_a_drop_fires_once() -> None:
    """On measurements a steady wave raises nothing; a lasting drop fires one alert soon after it starts."""
    settings = DetectorSettings(counts=False)
    quiet = _run(_measurements(14, seed=3), SpikeDetector(settings))
    assert _fired(quiet) == []
    at = 10 * PER_DAY + 40
    decisions = _run(_measurements(14, seed=3, shift=(at, -1.5)), SpikeDetector(settings))
    fired = _fired(decisions)
    assert len(fired) == 1
    assert at <= fired[0] < at + 12
    assert decisions[fired[0]].observed < decisions[fired[0]].expected


def test_measurement_state_round_trips() -> None:
    """A measurement detector rebuilt from its state continues exactly as the original."""
    settings = DetectorSettings(counts=False)
    values = _measurements(3, seed=4)
    det = SpikeDetector(settings)
    _run(values[:400], det)
    copy = SpikeDetector.from_state(settings, json.loads(json.dumps(det.to_state())))
    a = _run(values[400:], det, offset=400)
    b = _run(values[400:], copy, offset=400)
    assert [(d.statistic, d.expected) for d in a] == [(d.statistic, d.expected) for d in b]


def _young_negatives(seed: int, crisis_day: int, night: float, day: float) -> tuple[list[float], int]:
    """Negative mentions of a new watch: quiet nights, busier days (08-20 h), a 90-minute crisis at 09:00."""
    rng = random.Random(seed)
    crisis = crisis_day * PER_DAY + 9 * 12
    out = []
    for i in range(4 * PER_DAY):
        lam = day if 8 <= (i % PER_DAY) // 12 < 20 else night
        if crisis <= i < crisis + 18:
            lam = 6.0
        out.append(float(_poisson(rng, lam)))
    return out, crisis


@pytest.mark.parametrize(("night", "day"), [(0.15, 0.5), (0.05, 0.6)])
@pytest.mark.parametrize("crisis_day", [2, 3])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_young_watch_expects_sane_counts_at_night_and_catches_a_crisis(
    seed: int, crisis_day: int, night: float, day: float
) -> None:
    """Two or three days after a watch is created, a negative crisis fires, and nights are not expected busy.

    The bug this guards: learned from a few mentions while the level was still near zero, a night's
    time-of-day factor blew up (one bucket of 5 minutes was expected to hold 164 negative mentions
    where none came), and the crisis of the third day never fired.
    """
    values, crisis = _young_negatives(seed, crisis_day, night, day)
    det = SpikeDetector()
    fired = []
    mean_so_far = 0.0
    for i, v in enumerate(values[: crisis + 36]):
        ts = START + i * BUCKET
        expected = det.expected(ts)
        if i >= PER_DAY and not 8 <= (i % PER_DAY) // 12 < 20 and i < crisis:
            # a quiet night is expected no busier than the watch's average bucket (with room for noise)
            assert expected <= 2.0 * mean_so_far, (i, expected, mean_so_far)
        if det.update(ts, v).event == "fired":
            fired.append(i)
        mean_so_far += (v - mean_so_far) / (i + 1)
    assert len(fired) == 1
    assert crisis <= fired[0] < crisis + 12  # within the first hour of the crisis


def test_a_quiet_watch_learns_its_level_without_bias() -> None:
    """A watch getting one mention every twenty buckets or so learns that rate, not two thirds of it.

    Clipped to ``mu + 3 sd`` = 0.7, each single mention used to teach the baseline 0.7 of a mention.
    """
    rng = random.Random(21)
    values = [float(_poisson(rng, 0.05)) for _ in range(28 * PER_DAY)]
    det = SpikeDetector()
    _run(values, det)
    seen = sum(values[-7 * PER_DAY :]) / (7 * PER_DAY)
    assert det.expected(START + len(values) * BUCKET) == pytest.approx(seen, rel=0.2)
