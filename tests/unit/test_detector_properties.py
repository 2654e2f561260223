"""Property-based tests of the spike detector: no crash on any series, well-formed decisions, exact state round trip."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veille.spikes import Decision, DetectorSettings, SpikeDetector

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
START = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)

DETECTOR_SETTINGS = st.builds(
    DetectorSettings,
    bucket=st.just(timedelta(minutes=5)),
    warmup=st.sampled_from([timedelta(0), timedelta(hours=1), timedelta(hours=3)]),
    scales=st.sampled_from(
        [
            (timedelta(minutes=5),),
            (timedelta(minutes=5), timedelta(minutes=30)),
            (timedelta(minutes=15), timedelta(hours=1)),
        ]
    ),
    fire_threshold=st.floats(min_value=1.6, max_value=8.0),
    familywise=st.booleans(),
    weekly=st.booleans(),
    resolve_after=st.sampled_from([timedelta(minutes=5), timedelta(minutes=30)]),
    refire_after=st.sampled_from([timedelta(0), timedelta(minutes=30)]),
    max_gap=st.sampled_from([timedelta(hours=1), timedelta(days=1)]),
)
# Counts per bucket: quiet, busy, bursts and zeros, sometimes with gaps between buckets.
COUNTS = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 5), st.integers(0, 200), st.integers(1_000, 1_000_000), st.just(0)),
        st.sampled_from([1, 1, 1, 1, 2, 3, 20]),
    ),
    min_size=1,
    max_size=250,
)


def _feed(detector: SpikeDetector, series: list[tuple[int, int]], start: datetime) -> list[Decision]:
    out = []
    ts = start
    for value, step in series:
        ts += step * detector.settings.bucket
        out.append(detector.update(ts, value))
    return out


@SETTINGS
@given(DETECTOR_SETTINGS, COUNTS)
def test_any_series_gives_well_formed_decisions(config: DetectorSettings, series: list[tuple[int, int]]) -> None:
    """Whatever the counts and gaps, every decision is finite, scored in [0, 1] and consistent with its event.

    A gap is stepped inside the detector as zero counts (their decisions are not returned), so the
    firing state is only followed from one decision to the next across adjacent buckets.
    """
    detector = SpikeDetector(config)
    firing = False
    for (_, step), d in zip(series, _feed(detector, series, START), strict=True):
        for value in (d.observed, d.expected, d.statistic, d.threshold, d.score):
            assert math.isfinite(value), d
        assert 0.0 <= d.score <= 1.0
        assert d.expected >= 0.0 and d.observed >= 0.0
        if d.event == "fired":
            assert d.firing and not d.warming_up and d.statistic >= d.threshold
            assert d.severity in ("info", "warning", "critical")
            assert step > 1 or not firing
        elif d.event == "resolved":
            assert not d.firing and (step > 1 or firing)
        elif step == 1:
            assert d.firing == firing
        firing = d.firing


@SETTINGS
@given(DETECTOR_SETTINGS, COUNTS, COUNTS)
def test_state_round_trip_through_json_continues_identically(
    config: DetectorSettings, before: list[tuple[int, int]], after: list[tuple[int, int]]
) -> None:
    """A detector rebuilt from its JSON state (as kept in KV) decides exactly as the original would have."""
    original = SpikeDetector(config)
    _feed(original, before, START)
    state = json.loads(json.dumps(original.to_state()))
    restored = SpikeDetector.from_state(config, state)
    assert restored.to_state() == original.to_state()
    last = original.last_ts or START
    assert _feed(restored, after, last) == _feed(original, after, last)


@SETTINGS
@given(DETECTOR_SETTINGS, COUNTS)
def test_a_bucket_not_after_the_last_is_refused(config: DetectorSettings, series: list[tuple[int, int]]) -> None:
    """Feeding a bucket at or before the last one raises ValueError and leaves the state untouched."""
    detector = SpikeDetector(config)
    _feed(detector, series, START)
    state = detector.to_state()
    assert detector.last_ts is not None
    for ts in (detector.last_ts, detector.last_ts - detector.settings.bucket):
        try:
            detector.update(ts, 1)
        except ValueError:
            pass
        else:
            raise AssertionError("an out-of-order bucket was accepted")
    assert detector.to_state() == state
