"""``observe_many``: a batch's handling time recorded once per message, as that many ``observe`` calls would."""

from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry, Histogram

from veille.metrics import observe_many

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def samples(histogram: Histogram, registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """(sample name, le) -> value of every bucket, count and sum the registry exposes."""
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                out[(sample.name, sample.labels.get("le", ""))] = sample.value
    return out


@pytest.mark.parametrize("amount", [0.0, 0.0005, 0.001, 0.05, 1.0, 7.5, -0.2])
@pytest.mark.parametrize("count", [0, 1, 3, 500])
def test_the_same_buckets_count_and_sum_as_one_call_per_message(amount: float, count: int) -> None:
    many, one_by_one = CollectorRegistry(), CollectorRegistry()
    batched = Histogram("handled_seconds", "h", ["service"], buckets=BUCKETS, registry=many)
    looped = Histogram("handled_seconds", "h", ["service"], buckets=BUCKETS, registry=one_by_one)
    child = looped.labels("probe")
    observe_many(batched.labels("probe"), amount, count)
    for _ in range(count):
        child.observe(amount)
    got, expected = samples(batched, many), samples(looped, one_by_one)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=1e-12), key  # the sum: up to rounding


def test_a_nan_and_a_labelled_parent_behave_as_observe_does() -> None:
    registry = CollectorRegistry()
    histogram = Histogram("handled_seconds", "h", ["service"], buckets=BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="missing label values"):
        observe_many(histogram, 0.5, 3)  # the parent of labelled children cannot be observed
    observe_many(histogram.labels("probe"), math.nan, 3)
    got = samples(histogram, registry)
    assert got[("handled_seconds_count", "")] == 0  # observe puts a NaN in no bucket
    assert math.isnan(got[("handled_seconds_sum", "")])
