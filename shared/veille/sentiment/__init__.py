"""Sentiment of mentions: a label (negative, neutral, positive) and a score in [-1, 1].

The default backend (:class:`LinearBackend`, :mod:`veille.sentiment.linear`) is a linear model
learned from labelled English and French tweets, run in plain Python, fast enough for the
classifier's hot path. :class:`LexiconBackend` (lexicons plus rules) stays available by name.
``TransformerBackend`` (in :mod:`veille.sentiment.transformer`, imported lazily) runs a
sequence-classification model from a local path instead (optional extras ``veille[onnx]`` or
``veille[transformers]``). :func:`make_backend` picks one by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veille.sentiment.base import LABELS, Label, SentimentBackend, SentimentResult, label_for_score
from veille.sentiment.factory import BACKENDS, DEFAULT_BACKEND, make_backend
from veille.sentiment.lexicon import LexiconBackend, Tuning
from veille.sentiment.linear import LinearBackend

if TYPE_CHECKING:  # pragma: no cover - typing only
    from veille.sentiment.transformer import BackendUnavailableError, TransformerBackend

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "LABELS",
    "BackendUnavailableError",
    "Label",
    "LexiconBackend",
    "LinearBackend",
    "SentimentBackend",
    "SentimentResult",
    "TransformerBackend",
    "Tuning",
    "label_for_score",
    "make_backend",
]


def __getattr__(name: str) -> Any:
    """Import the transformer backend only when it is asked for (its packages are optional)."""
    if name in ("TransformerBackend", "BackendUnavailableError"):
        from veille.sentiment import transformer

        return getattr(transformer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
