"""Choosing a sentiment backend by name, as the CLI and the classifier's settings do."""

from __future__ import annotations

from veille.sentiment.base import SentimentBackend
from veille.sentiment.lexicon import LexiconBackend

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "make_backend"]

BACKENDS: tuple[str, ...] = ("linear", "lexicon", "transformer")
"""Names :func:`make_backend` accepts."""
DEFAULT_BACKEND = "linear"
"""The backend used when none is named: the learned linear model (English and French)."""


def make_backend(name: str = DEFAULT_BACKEND, model_path: str | None = None) -> SentimentBackend:
    """Return the sentiment backend called ``name``.

    ``"linear"`` (the default: a linear model learned from labelled tweets, shipped with veille, see
    :mod:`veille.sentiment.linear`) and ``"lexicon"`` (lexicons plus rules) need nothing else.
    ``"transformer"`` needs ``model_path``, a local model directory (ONNX or transformers format; see
    :mod:`veille.sentiment.transformer`); its packages are imported only then, and a missing one raises
    :class:`~veille.sentiment.transformer.BackendUnavailableError` naming the extra to install.
    """
    key = name.strip().lower()
    if key in ("linear", "lexicon"):
        if model_path:
            raise ValueError(f"the {key} backend takes no model path")
        if key == "lexicon":
            return LexiconBackend()
        from veille.sentiment.linear import LinearBackend

        return LinearBackend()
    if key in ("transformer", "onnx"):
        if not model_path:
            raise ValueError("the transformer backend needs a model path (a local model directory)")
        from veille.sentiment.transformer import TransformerBackend

        return TransformerBackend(model_path)
    raise ValueError(f"unknown sentiment backend {name!r}; choose one of: {', '.join(BACKENDS)}")
