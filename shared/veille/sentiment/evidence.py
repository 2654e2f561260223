"""What the lexicon's rules find in one text: the input of the calibration step.

It sits below both :mod:`veille.sentiment.calibration` (which turns evidence into features) and
:mod:`veille.sentiment.lexicon` (which collects it), so that neither imports the other's module
back: lexicon → calibration data → calibration → evidence, every import pointing down.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Evidence"]


class Evidence(NamedTuple):
    """What the rules found in one text, before normalisation."""

    total: float
    positive: float
    negative: float
    words: int
    negations: int
    bangs: int
    questions: int
    extra: tuple[tuple[float, float], ...] = ()
    """(positive, negative) sums of each of the profile's extra lexicons, after the same rules."""
