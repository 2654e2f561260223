"""Measuring a sentiment backend on labelled data: the split, and the metrics the project reports.

The labelled tweets live outside the repository (``../shared/data/sentiment/``); nothing here ships
them. The split into a tuning half and a held-out half is deterministic (a seeded hash of each text,
stratified by class) so every run, test and benchmark sees the same halves.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from veille.sentiment.base import LABELS, Label

__all__ = ["Scores", "SplitName", "evaluate", "load_labelled", "split_labelled"]

SPLIT_SEED = "veille-sentiment-split-v1"
SplitName = str


def load_labelled(path: Path) -> list[tuple[str, Label]]:
    """Read a ``text,label[,label_name]`` CSV (labels 0/1/2) into ``(text, label)`` pairs."""
    rows: list[tuple[str, Label]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.append((row["text"], LABELS[int(row["label"])]))
    return rows


def split_labelled(
    rows: Sequence[tuple[str, Label]], part: SplitName, seed: str = SPLIT_SEED
) -> list[tuple[str, Label]]:
    """Return the ``"tune"`` or ``"heldout"`` half of ``rows``, stratified by label and seeded.

    Within each label the rows are ordered by a hash of ``seed`` and their text and cut in two;
    the first half is for tuning, the second (the larger one when odd) is held out.
    """
    if part not in ("tune", "heldout"):
        raise ValueError(f"unknown split {part!r}: use 'tune' or 'heldout'")
    chosen: list[tuple[str, Label]] = []
    for label in LABELS:
        same = [row for row in rows if row[1] == label]
        same.sort(key=lambda row: hashlib.sha256(f"{seed}\x1f{row[0]}".encode()).digest())
        half = len(same) // 2
        chosen.extend(same[:half] if part == "tune" else same[half:])
    return chosen


@dataclass(frozen=True, slots=True)
class Scores:
    """Quality of predictions against gold labels (all in percent)."""

    n: int
    macro_recall: float
    recall: dict[str, float]
    negative_precision: float
    negative_recall: float
    accuracy: float


def evaluate(gold: Sequence[Label], predicted: Sequence[Label]) -> Scores:
    """Return macro-averaged recall (TweetEval's metric), per-class recall and negative precision."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")
    recall: dict[str, float] = {}
    for label in LABELS:
        relevant = sum(1 for g in gold if g == label)
        hits = sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p == label)
        recall[label] = 100.0 * hits / relevant if relevant else 0.0
    said_negative = sum(1 for p in predicted if p == "negative")
    true_negative = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p == "negative")
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p)
    return Scores(
        n=len(gold),
        macro_recall=sum(recall.values()) / len(LABELS),
        recall=recall,
        negative_precision=100.0 * true_negative / said_negative if said_negative else 0.0,
        negative_recall=recall["negative"],
        accuracy=100.0 * correct / len(gold) if gold else 0.0,
    )
