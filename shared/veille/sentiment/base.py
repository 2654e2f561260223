"""What every sentiment backend returns, and the small interface they all share."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["LABELS", "Label", "SentimentBackend", "SentimentResult", "label_for_score"]

Label = Literal["negative", "neutral", "positive"]
LABELS: tuple[Label, Label, Label] = ("negative", "neutral", "positive")
"""The three labels, in the order of the evaluation data's class ids (0, 1, 2)."""


@dataclass(frozen=True, slots=True)
class SentimentResult:
    """The sentiment of one text: a label and a score in [-1, 1] (negative below zero)."""

    label: Label
    score: float

    def __post_init__(self) -> None:
        if not -1.0 <= self.score <= 1.0:
            raise ValueError(f"sentiment score {self.score} is outside [-1, 1]")
        if self.label not in LABELS:
            raise ValueError(f"unknown sentiment label {self.label!r}")


@runtime_checkable
class SentimentBackend(Protocol):
    """Anything that turns a text (and its language, when known) into a :class:`SentimentResult`."""

    name: str

    def analyze(self, text: str, lang: str | None = None) -> SentimentResult:
        """Return the sentiment of one text; ``lang`` is an ISO 639-1 code or ``None``."""
        ...

    def analyze_many(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[SentimentResult]:
        """Return the sentiment of each text, in order (backends may batch for speed)."""
        ...


def label_for_score(score: float, negative_below: float, positive_above: float) -> Label:
    """Return the label of a score given the edges of the neutral band.

    A score at or below ``negative_below`` is negative, at or above ``positive_above`` positive,
    anything between neutral.
    """
    if score <= negative_below:
        return "negative"
    if score >= positive_above:
        return "positive"
    return "neutral"
