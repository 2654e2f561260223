"""The default sentiment backend: linear models learned from labelled tweets, run in plain Python.

Each language (English, French) has its own multinomial logistic regression (three classes) over
four groups of features of a text:

* word unigrams and bigrams of the tokens of :mod:`veille.sentiment.text` (folded: lower case, no
  accents; handles and links dropped; emoji, emoticons and ``!``/``?`` runs kept as tokens);
* character n-grams (2 to 5 characters) of each word, padded with spaces (``" bad "``): they carry
  spelling variants, inflections and unseen compounds;
* the lexicon backend's evidence for that language (:func:`veille.sentiment.calibration.features`:
  its valence sums after negation, boosters and contrast, plus surface cues);
* a bias.

The French model may be trained on French and English tweets together (the features share one name
space, and a ``lang:fr`` indicator), when cross-validation says so; see ``model/README.md``.

Word n-gram counts are divided by the square root of their number in the text, and so are the
character n-gram counts (two separate blocks), so that every group is linear in per-word sums:
the character n-gram weights of a word are summed once and remembered, and a text costs a few
dictionary lookups per word. No numpy, no scikit-learn at run time.

The weights are in ``model/linear.json``, written by ``scripts/train_sentiment.py`` (``make
train``) from ``../shared/data/sentiment``; ``model/README.md`` says what it was trained on, how
its settings were chosen (cross-validation on the training data only) and the licences.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from veille.sentiment.base import LABELS, SentimentResult
from veille.sentiment.calibration import features as lexicon_features
from veille.sentiment.lexicon import LexiconBackend, _score_tokens
from veille.sentiment.text import tokenize

__all__ = [
    "CHAR_RANGE",
    "MODEL_LANGS",
    "LinearBackend",
    "LinearModel",
    "LinearModels",
    "char_ngrams",
    "load_model",
    "sparse_features",
]

MODEL_LANGS: tuple[str, ...] = ("en", "fr")
"""Languages the model was trained on; ``None`` (unknown) is read as English, like the lexicon."""
CHAR_RANGE: tuple[int, int] = (2, 5)
"""Lengths of the character n-grams of each word (inclusive)."""
_CACHE_LIMIT = 200_000


def char_ngrams(key: str, low: int = CHAR_RANGE[0], high: int = CHAR_RANGE[1]) -> Iterator[str]:
    """Yield the character n-grams (``low`` to ``high`` long) of a word padded with spaces."""
    padded = f" {key} "
    size = len(padded)
    for n in range(low, high + 1):
        for start in range(size - n + 1):
            yield padded[start : start + n]


def _analyse(text: str, lang: str, lexicon: LexiconBackend) -> tuple[list[str], list[str], list[float]]:
    """Return the keys of all tokens (word n-grams), of the word tokens (char n-grams) and the
    lexicon evidence features of ``text``."""
    profile = lexicon._profile(lang)
    tokens = tokenize(text, profile.lang, profile.emoticons)
    evidence = _score_tokens(tokens, profile)
    keys = [t.key for t in tokens]
    words = [t.key for t in tokens if t.kind == "word"]
    return keys, words, lexicon_features(evidence, text, profile.tuning.alpha)


def sparse_features(text: str, lang: str, lexicon: LexiconBackend | None = None) -> dict[str, float]:
    """Return the named feature values of ``text`` (training uses this; :class:`LinearModel` computes
    the same dot product faster). ``lang`` is ``"en"`` or ``"fr"``.

    Names: ``u:<word>``, ``b:<word> <word>``, ``c:<char n-gram>``, ``x<lang>:<i>`` (lexicon evidence)
    and ``lang:fr``.
    """
    keys, words, lex = _analyse(text, lang, lexicon or LexiconBackend())
    out: dict[str, float] = {}
    grams = [f"u:{k}" for k in keys] + [f"b:{a} {b}" for a, b in itertools.pairwise(keys)]
    if grams:
        scale = 1.0 / math.sqrt(len(grams))
        for gram in grams:
            out[gram] = out.get(gram, 0.0) + scale
    chars = [f"c:{g}" for word in words for g in char_ngrams(word)]
    if chars:
        scale = 1.0 / math.sqrt(len(chars))
        for gram in chars:
            out[gram] = out.get(gram, 0.0) + scale
    for i, value in enumerate(lex):
        if value:
            out[f"x{lang}:{i}"] = value
    if lang != "en":
        out[f"lang:{lang}"] = 1.0
    return out


Weights = tuple[float, float, float]
_ZERO: Weights = (0.0, 0.0, 0.0)
_Cached = tuple[float, float, float, float, float, float, int]


@dataclass(slots=True)
class LinearModel:
    """Weights of the three-class linear model (negative, neutral, positive) of one language."""

    lang: str
    bias: Weights
    """The intercept plus the language's indicator weight."""
    lexicon: tuple[Weights, ...]
    """One weight triple per lexicon feature."""
    unigrams: dict[str, Weights]
    bigrams: dict[str, Weights]
    chars: dict[str, Weights]
    word_cache: dict[str, _Cached] = field(default_factory=dict, repr=False)
    """Per word token: its unigram weights, the sum of its character n-gram weights and their number
    (shared by every backend using this model, like the lexicon's memo: a stream repeats its words)."""
    other_cache: dict[str, _Cached] = field(default_factory=dict, repr=False)
    """The same for emoji, emoticons and punctuation (no character n-grams)."""


@dataclass(slots=True)
class LinearModels:
    """The models of every language in ``linear.json``, and what the file says of their training."""

    models: dict[str, LinearModel]
    meta: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModels:
        """Build the models from the parsed ``linear.json``."""
        if data.get("format") != "veille-sentiment-linear-2":
            raise ValueError(f"not a veille linear sentiment model (format {data.get('format')!r})")
        labels = tuple(data.get("labels", ()))
        if labels != LABELS:
            raise ValueError(f"model labels {labels} are not {LABELS}")
        models = {lang: _language_model(lang, part) for lang, part in data["models"].items()}
        missing = set(MODEL_LANGS) - set(models)
        if missing:
            raise ValueError(f"the model file has no weights for {', '.join(sorted(missing))}")
        return cls(models, dict(data.get("meta", {})))


def _language_model(lang: str, part: dict[str, Any]) -> LinearModel:
    weights: dict[str, list[float]] = part["weights"]
    intercept = _triple(part["intercept"])
    extra = _triple(weights.get(f"lang:{lang}", (0.0, 0.0)))
    bias = (intercept[0] + extra[0], intercept[1] + extra[1], intercept[2] + extra[2])
    lex = tuple(_triple(weights.get(f"x{lang}:{i}", (0.0, 0.0))) for i in range(int(part["lexicon_features"])))
    groups: dict[str, dict[str, Weights]] = {"u": {}, "b": {}, "c": {}}
    for name, triple in weights.items():
        kind, _, gram = name.partition(":")
        if kind in groups:
            groups[kind][gram] = _triple(triple)
    return LinearModel(lang, bias, lex, groups["u"], groups["b"], groups["c"])


def _triple(values: Sequence[float]) -> Weights:
    """Weights as stored (negative, positive; neutral is the reference class, 0) to a triple."""
    if len(values) != 2:
        raise ValueError(f"expected two weights (negative, positive), got {len(values)}")
    return (float(values[0]), 0.0, float(values[1]))


def _softmax(z0: float, z1: float, z2: float) -> tuple[float, float, float]:
    top = max(z0, z1, z2)
    e0, e1, e2 = math.exp(z0 - top), math.exp(z1 - top), math.exp(z2 - top)
    total = e0 + e1 + e2
    return e0 / total, e1 / total, e2 / total


_model: list[LinearModels] = []
_model_lock = threading.Lock()


def load_model() -> LinearModels:
    """Return the shipped models (``model/linear.json``), read once per process."""
    if not _model:
        with _model_lock:
            if not _model:
                text = resources.files("veille.sentiment").joinpath("model/linear.json").read_text(encoding="utf-8")
                _model.append(LinearModels.from_json(json.loads(text)))
    return _model[0]


class LinearBackend:
    """Learned sentiment for English and French (see the module docstring); fast, pure Python.

    ``en`` and ``fr`` texts (and unknown ``None``, read as English) go through the model; any other
    language is judged on emoji and emoticons only, by the lexicon backend. The score is
    P(positive) − P(negative) and the label the most probable class, so a clearly negative text has
    a score near −1.
    """

    name = "linear"

    def __init__(self, models: LinearModels | None = None, lexicon: LexiconBackend | None = None) -> None:
        self.models = models or load_model()
        self._lexicon = lexicon or LexiconBackend()

    def _token_weights(self, model: LinearModel, key: str, is_word: bool) -> _Cached:
        """Unigram weights of one token, the sum of its character n-gram weights (words only) and how
        many character n-grams it has; remembered per language and token."""
        uni = model.unigrams.get(key, _ZERO)
        a = b = c = 0.0
        count = 0
        if is_word:
            get = model.chars.get
            padded = f" {key} "
            size = len(padded)
            for n in range(CHAR_RANGE[0], CHAR_RANGE[1] + 1):  # char_ngrams(key), inlined: it is hot
                for start in range(size - n + 1):
                    count += 1
                    w = get(padded[start : start + n])
                    if w is not None:
                        a += w[0]
                        b += w[1]
                        c += w[2]
        found = (uni[0], uni[1], uni[2], a, b, c, count)
        cache = model.word_cache if is_word else model.other_cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[key] = found
        return found

    def probabilities(self, text: str, lang: str | None = None) -> tuple[float, float, float]:
        """Return P(negative), P(neutral), P(positive) of ``text`` (``lang`` ``en``, ``fr`` or ``None``)."""
        lang = lang if lang in MODEL_LANGS else "en"
        model = self.models.models[lang]
        profile = self._lexicon._profile(lang)
        tokens = tokenize(text, profile.lang, profile.emoticons)
        lex = lexicon_features(_score_tokens(tokens, profile), text, profile.tuning.alpha)
        z0, z1, z2 = model.bias
        for w, x in zip(model.lexicon, lex, strict=True):
            if x:
                z0 += w[0] * x
                z1 += w[1] * x
                z2 += w[2] * x
        if not tokens:
            return _softmax(z0, z1, z2)
        word_cache, other_cache = model.word_cache, model.other_cache
        token_weights = self._token_weights
        ua = ub = uc = ca = cb = cc = 0.0
        count = 0
        for token in tokens:
            if token.kind == "word":
                found = word_cache.get(token.key) or token_weights(model, token.key, True)
                ca += found[3]
                cb += found[4]
                cc += found[5]
                count += found[6]
            else:
                found = other_cache.get(token.key) or token_weights(model, token.key, False)
            ua += found[0]
            ub += found[1]
            uc += found[2]
        bigrams = model.bigrams
        previous = tokens[0].key
        for token in tokens[1:]:
            key = token.key
            pair = bigrams.get(f"{previous} {key}")
            if pair is not None:
                ua += pair[0]
                ub += pair[1]
                uc += pair[2]
            previous = key
        scale = 1.0 / math.sqrt(2 * len(tokens) - 1)
        z0 += ua * scale
        z1 += ub * scale
        z2 += uc * scale
        if count:
            scale = 1.0 / math.sqrt(count)
            z0 += ca * scale
            z1 += cb * scale
            z2 += cc * scale
        return _softmax(z0, z1, z2)

    def analyze(self, text: str, lang: str | None = None) -> SentimentResult:
        """Return the label and score of ``text`` (``lang``: ISO 639-1 code or ``None``)."""
        if lang is not None and lang not in MODEL_LANGS:
            return self._lexicon.analyze(text, lang)
        probs = self.probabilities(text, lang)
        best = 0 if probs[0] >= probs[1] and probs[0] >= probs[2] else (1 if probs[1] >= probs[2] else 2)
        return SentimentResult(LABELS[best], max(-1.0, min(1.0, probs[2] - probs[0])))

    def analyze_many(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[SentimentResult]:
        """Return :meth:`analyze` of each text with its language (all ``None`` if not given)."""
        if langs is None:
            return [self.analyze(text) for text in texts]
        if len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        return [self.analyze(text, lang) for text, lang in zip(texts, langs, strict=True)]
