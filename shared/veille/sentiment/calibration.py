"""The last step of the lexicon backend: from rule evidence to a label, with a dozen numbers per class.

A neutral band on one compound score throws information away: a text with strong positive *and*
negative words, one that is a bare headline with a link, one full of ``!`` all look alike. So the
evidence the rules collect (:class:`~veille.sentiment.evidence.Evidence`) and a few surface cues
become :data:`FEATURE_NAMES`, and a three-class linear model (multinomial logistic regression) turns
them into probabilities. A profile with extra lexicons (English: AFINN) adds each one's sums
(:func:`feature_names`). It has ``3 × (features + 1)``
coefficients per language — no word weights — fitted by :func:`fit` on the tuning half of the development tweets only
(``bench/sentiment_eval.py --fit`` writes them to ``_calibration_data.py``).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

from veille.sentiment.base import LABELS, Label
from veille.sentiment.evidence import Evidence

__all__ = ["FEATURE_NAMES", "Calibration", "feature_names", "features", "fit"]

FEATURE_NAMES: tuple[str, ...] = (
    "compound",
    "positive",
    "negative",
    "log_words",
    "negations",
    "exclamations",
    "questions",
    "has_link",
    "handles",
    "hashtags",
    "mixed",
)
_LINK = re.compile(r"https?://|\bhttps?\b|\bwww\.")
_HANDLE = re.compile(r"@\w+")


def features(evidence: Evidence, text: str, alpha: float) -> list[float]:
    """Return the feature vector of one scored text: :data:`FEATURE_NAMES`, then for each extra
    lexicon its compound, positive and negative sums (see :func:`feature_names`)."""

    def squash(value: float) -> float:
        return value / math.sqrt(value * value + alpha)

    return [
        squash(evidence.total),
        squash(evidence.positive),
        squash(evidence.negative),
        math.log1p(evidence.words),
        float(min(evidence.negations, 3)),
        float(min(evidence.bangs, 4)),
        float(min(evidence.questions, 4)),
        1.0 if _LINK.search(text) else 0.0,
        float(min(len(_HANDLE.findall(text)), 3)),
        float(min(text.count("#"), 4)),
        1.0 if evidence.positive > 0 and evidence.negative < 0 else 0.0,
        *[value for pos, neg in evidence.extra for value in (squash(pos + neg), squash(pos), squash(neg))],
    ]


def feature_names(extra_lexicons: Sequence[str] = ()) -> tuple[str, ...]:
    """Return the names of :func:`features`' values for a profile with these extra lexicons."""
    names = list(FEATURE_NAMES)
    for name in extra_lexicons:
        names += [f"{name}_compound", f"{name}_positive", f"{name}_negative"]
    return tuple(names)


@dataclass(frozen=True, slots=True)
class Calibration:
    """A linear three-class model over :data:`FEATURE_NAMES`: one weight row and bias per label."""

    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]

    def probabilities(self, vector: Sequence[float]) -> tuple[float, float, float]:
        """Return P(negative), P(neutral), P(positive) for a feature vector."""
        if len(vector) != len(self.weights[0]):
            raise ValueError(f"expected {len(self.weights[0])} features, got {len(vector)}")
        logits = [b + sum(map(operator.mul, row, vector)) for row, b in zip(self.weights, self.bias, strict=True)]
        top = max(logits)
        exps = [math.exp(v - top) for v in logits]
        total = sum(exps)
        return exps[0] / total, exps[1] / total, exps[2] / total


def fit(
    vectors: Sequence[Sequence[float]],
    labels: Sequence[Label],
    *,
    l2: float = 0.1,
    iterations: int = 600,
    learning_rate: float = 0.5,
) -> Calibration:
    """Fit a class-balanced multinomial logistic regression by full-batch gradient descent.

    Classes are weighted inversely to their frequency (the metric is macro-averaged recall), the
    features standardised during fitting and the scaling folded back into the returned weights, so
    :meth:`Calibration.probabilities` takes raw feature vectors. Pure Python: a few seconds for a
    thousand texts.
    """
    n, k = len(vectors), len(LABELS)
    if n == 0 or n != len(labels):
        raise ValueError(f"need as many labels as vectors (got {n} vectors, {len(labels)} labels)")
    dims = len(vectors[0])
    means = [sum(v[j] for v in vectors) / n for j in range(dims)]
    scales = [math.sqrt(sum((v[j] - means[j]) ** 2 for v in vectors) / n) or 1.0 for j in range(dims)]
    xs = [[(v[j] - means[j]) / scales[j] for j in range(dims)] for v in vectors]
    ys = [LABELS.index(label) for label in labels]
    counts = [max(1, ys.count(c)) for c in range(k)]
    sample_weight = [n / (k * counts[y]) for y in ys]
    total_weight = sum(sample_weight)
    w = [[0.0] * dims for _ in range(k)]
    b = [0.0] * k
    for _ in range(iterations):
        grad_w = [[0.0] * dims for _ in range(k)]
        grad_b = [0.0] * k
        for x, y, sw in zip(xs, ys, sample_weight, strict=True):
            logits = [b[c] + sum(wc * xc for wc, xc in zip(w[c], x, strict=True)) for c in range(k)]
            top = max(logits)
            exps = [math.exp(v - top) for v in logits]
            total = sum(exps)
            for c in range(k):
                delta = sw * (exps[c] / total - (1.0 if c == y else 0.0))
                grad_b[c] += delta
                row = grad_w[c]
                for j in range(dims):
                    row[j] += delta * x[j]
        for c in range(k):
            b[c] -= learning_rate * grad_b[c] / total_weight
            for j in range(dims):
                w[c][j] -= learning_rate * (grad_w[c][j] / total_weight + l2 * w[c][j])
    # Fold the standardisation back: w·(x-m)/s + b = (w/s)·x + (b - Σ w m / s).
    raw_w = tuple(tuple(w[c][j] / scales[j] for j in range(dims)) for c in range(k))
    raw_b = tuple(b[c] - sum(w[c][j] * means[j] / scales[j] for j in range(dims)) for c in range(k))
    return Calibration(raw_w, raw_b)
