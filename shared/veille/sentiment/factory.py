"""Choosing a sentiment backend by name, as the CLI and the classifier's settings do."""

from __future__ import annotations

from veille.sentiment.base import SentimentBackend
from veille.sentiment.lexicon import LexiconBackend

__all__ = ["BACKENDS", "make_backend"]

BACKENDS: tuple[str, ...] = ("lexicon", "transformer")
"""Names :func:`make_backend` accepts."""


def make_backend(name: str = "lexicon", model_path: str | None = None) -> SentimentBackend:
    """Return the sentiment backend called ``name``.

    ``"lexicon"`` (the default) needs nothing else. ``"transformer"`` needs ``model_path``, a local
    model directory (ONNX or transformers format; see :mod:`veille.sentiment.transformer`); its
    packages are imported only then, and a missing one raises
    :class:`~veille.sentiment.transformer.BackendUnavailableError` naming the extra to install.
    """
    key = name.strip().lower()
    if key == "lexicon":
        if model_path:
            raise ValueError("the lexicon backend takes no model path")
        return LexiconBackend()
    if key in ("transformer", "onnx"):
        if not model_path:
            raise ValueError("the transformer backend needs a model path (a local model directory)")
        from veille.sentiment.transformer import TransformerBackend

        return TransformerBackend(model_path)
    raise ValueError(f"unknown sentiment backend {name!r}; choose one of: {', '.join(BACKENDS)}")
