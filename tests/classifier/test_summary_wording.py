"""The words of a surge alert's summary: windows and expected counts as people say them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.classifier.surges import _duration, _expected_text


@pytest.mark.parametrize(
    ("span", "said"),
    [
        (timedelta(seconds=5), "5 s"),
        (timedelta(seconds=90), "90 s"),
        (timedelta(minutes=5), "5 min"),
        (timedelta(minutes=90), "90 min"),
        (timedelta(hours=2), "2 h"),
        (timedelta(hours=24), "24 h"),
    ],
)
def test_a_window_is_said_in_its_natural_unit(span: timedelta, said: str) -> None:
    """A 5-second demo bucket reads "5 s", not "0.0833333 min"; whole hours read in hours."""
    assert _duration(span) == said


@pytest.mark.parametrize(("expected", "said"), [(37.4, "37"), (1.0, "1"), (0.42, "0.4"), (3e-06, "almost none")])
def test_an_expected_count_is_said_without_scientific_notation(expected: float, said: str) -> None:
    """A baseline of almost nothing reads "almost none", not "3e-06"."""
    assert _expected_text(expected) == said
