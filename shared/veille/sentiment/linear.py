"""The default sentiment backend: linear models learned from labelled tweets, run in plain Python.

Each language (English, French) has its own multinomial logistic regression (three classes) over
four groups of features of a text:

* word unigrams and bigrams of the tokens of :mod:`veille.sentiment.text` (folded: lower case, no
  accents; handles and links dropped; emoji, emoticons and ``!``/``?`` runs kept as tokens);
* character n-grams (2 to 5 characters) of each word, padded with spaces (``" bad "``): they carry
  spelling variants, inflections and unseen compounds;
* word-list evidence (:data:`LEXICON_FEATURES`): for each word list of the language (English: the
  VADER and AFINN lists; French: the French VADER list; emoji valences in both), the sums of the
  positive and of the negative valences of the text's tokens, apart for the tokens within three
  tokens after a negator (``not``, ``n't``, ``pas``, ``ne`` ...; a clause break ends the scope),
  each squashed as VADER does (``x / sqrt(x² + 15)``); and three surface cues (a link, ``@``
  handles, ``#`` tags). These are looked up per token, in the same pass as the n-grams;
* a bias.

The word-list features are deliberately simple: the lexicon backend's rules (boosters, contrast,
names, capitals ...) were shaped while looking at the development tweets, and they cost twice the
rest of the scoring; the n-grams learn what such rules did (``not good``, ``but``) from the training
tweets instead. See ``model/README.md`` for the cross-validated comparison.

The French model may be trained on French and English tweets together (the features share one name
space, and a ``lang:fr`` indicator), when cross-validation says so; see ``model/README.md``.

Word n-gram counts are divided by the square root of their number in the text, and so are the
character n-gram counts (two separate blocks), so that every group is linear in per-token sums:
each token's unigram weights, the sum of its character n-gram weights and its word-list valences
are looked up once and remembered, and a text costs one dictionary lookup per token and one per
token pair. No numpy, no scikit-learn at run time.

The weights are in ``model/linear.json``, written by ``scripts/train_sentiment.py`` (``make
train``) from ``../shared/data/sentiment``; ``model/README.md`` says what it was trained on, how
its settings and its decision rule were chosen (cross-validation on the training data only) and the
licences.
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
from veille.sentiment.lexicon import LanguageProfile, LexiconBackend, load_profile
from veille.sentiment.text import Token, tokenize

__all__ = [
    "CHAR_RANGE",
    "FORMAT",
    "LEXICON_FEATURES",
    "MODEL_LANGS",
    "LinearBackend",
    "LinearModel",
    "LinearModels",
    "char_ngrams",
    "lexicon_feature_names",
    "load_model",
    "sparse_features",
]

FORMAT = "veille-sentiment-linear-3"
"""The model file's format (3: word-list evidence looked up per token, :data:`LEXICON_FEATURES`)."""
MODEL_LANGS: tuple[str, ...] = ("en", "fr")
"""Languages the model was trained on; ``None`` (unknown) is read as English, like the lexicon."""
CHAR_RANGE: tuple[int, int] = (2, 5)
"""Lengths of the character n-grams of each word (inclusive)."""
NEGATION_SCOPE = 3
"""How many tokens after a negator its scope reaches (VADER's three words)."""
SQUASH_ALPHA = 15.0
"""VADER's normalisation constant: a valence sum ``x`` becomes ``x / sqrt(x² + 15)``."""
LEXICON_FEATURES: tuple[str, ...] = ("positive", "negative", "negated_positive", "negated_negative")
"""The word-list features of each word list, in order (then :data:`SURFACE_FEATURES` once)."""
SURFACE_FEATURES: tuple[str, ...] = ("has_link", "handles", "hashtags")
_CACHE_LIMIT = 200_000
_BREAK = 2
_NEGATOR = 1


def lexicon_feature_names(profile: LanguageProfile) -> tuple[str, ...]:
    """Names of the word-list features of a language (``x<lang>:<i>`` is the i-th of these)."""
    names = [f"vader_{name}" for name in LEXICON_FEATURES]
    for j in range(len(profile.extra_lexicons)):
        names += [f"extra{j + 1}_{name}" for name in LEXICON_FEATURES]
    return (*names, *SURFACE_FEATURES)


def char_ngrams(key: str, low: int = CHAR_RANGE[0], high: int = CHAR_RANGE[1]) -> Iterator[str]:
    """Yield the character n-grams (``low`` to ``high`` long) of a word padded with spaces."""
    padded = f" {key} "
    size = len(padded)
    for n in range(low, high + 1):
        for start in range(size - n + 1):
            yield padded[start : start + n]


def _role(token: Token, profile: LanguageProfile) -> int:
    """:data:`_NEGATOR` for a negator, :data:`_BREAK` for a clause break (``.``, ``!``, not ``:``), else 0."""
    kind = token.kind
    if kind == "bang" or (kind == "stop" and token.key != ":"):
        return _BREAK
    key = token.key
    if kind == "word" and (key in profile.negators or key in profile.ne_words or key.endswith("n't")):
        return _NEGATOR
    return 0


def _valences(token: Token, profile: LanguageProfile) -> tuple[float, ...]:
    """The token's valence in each word list (VADER's first), or ``()`` when it has none."""
    if token.kind in ("bang", "stop"):
        return ()
    valence, extras = profile.lookup(token.key)
    if not extras:
        return (valence,) if valence else ()
    return (valence, *extras)


def _lexicon_values(tokens: Sequence[Token], text: str, profile: LanguageProfile) -> list[float]:
    """The word-list features of a text (see the module docstring), in :func:`lexicon_feature_names` order."""
    width = len(LEXICON_FEATURES)
    sums = [0.0] * (width * (1 + len(profile.extra_lexicons)))
    negated_until = -1
    for i, token in enumerate(tokens):
        role = _role(token, profile)
        if role == _NEGATOR:
            negated_until = i + NEGATION_SCOPE
            continue
        if role == _BREAK:
            negated_until = -1
            continue
        shift = 2 if i <= negated_until else 0
        for j, value in enumerate(_valences(token, profile)):
            if value > 0:
                sums[width * j + shift] += value
            elif value < 0:
                sums[width * j + shift + 1] += value
    return [_squash(x) for x in sums] + _surface(text)


def _squash(value: float) -> float:
    return value / math.sqrt(value * value + SQUASH_ALPHA)


def _surface(text: str) -> list[float]:
    """A link, the number of ``@`` (at most 3), of ``#`` (at most 4): the tokens drop links and handles."""
    return [
        1.0 if ("http" in text or "www." in text) else 0.0,
        float(min(text.count("@"), 3)),
        float(min(text.count("#"), 4)),
    ]


def sparse_features(text: str, lang: str, lexicon: LexiconBackend | None = None) -> dict[str, float]:
    """Return the named feature values of ``text`` (training uses this; :class:`LinearBackend`
    computes the same dot product faster). ``lang`` is ``"en"`` or ``"fr"``; ``lexicon`` is unused
    (kept for callers of the earlier signature).

    Names: ``u:<word>``, ``b:<word> <word>``, ``c:<char n-gram>``, ``x<lang>:<i>`` (word-list
    evidence, :func:`lexicon_feature_names`) and ``lang:fr``.
    """
    del lexicon
    profile = load_profile(lang)
    tokens = tokenize(text, profile.lang, profile.emoticons)
    keys = [t.key for t in tokens]
    out: dict[str, float] = {}
    grams = [f"u:{k}" for k in keys] + [f"b:{a} {b}" for a, b in itertools.pairwise(keys)]
    if grams:
        scale = 1.0 / math.sqrt(len(grams))
        for gram in grams:
            out[gram] = out.get(gram, 0.0) + scale
    chars = [f"c:{g}" for t in tokens if t.kind == "word" for g in char_ngrams(t.key)]
    if chars:
        scale = 1.0 / math.sqrt(len(chars))
        for gram in chars:
            out[gram] = out.get(gram, 0.0) + scale
    for i, value in enumerate(_lexicon_values(tokens, text, profile)):
        if value:
            out[f"x{lang}:{i}"] = value
    if lang != "en":
        out[f"lang:{lang}"] = 1.0
    return out


Pair = tuple[float, float]
"""Weights of a feature for the negative and the positive class (neutral is the reference, 0)."""
_ZERO: Pair = (0.0, 0.0)
_Entry = tuple[float, float, float, float, int, int, tuple[float, ...]]
"""Per token: unigram weights (2), summed character n-gram weights (2), their number, its role
(negator, clause break), its word-list valences."""


@dataclass(slots=True)
class LinearModel:
    """Weights of the three-class linear model (negative, neutral, positive) of one language, each
    relative to the neutral class (softmax is unchanged; neutral's logit is 0)."""

    lang: str
    bias: Pair
    """The intercept plus the language's indicator weight."""
    lexicon: tuple[Pair, ...]
    """One weight pair per word-list feature (:func:`lexicon_feature_names`)."""
    unigrams: dict[str, Pair]
    bigrams: dict[str, Pair]
    chars: dict[str, Pair]
    token_cache: dict[Token, _Entry] = field(default_factory=dict, repr=False)
    """Per token (a word, emoji, emoticon or punctuation: the tokeniser's memoised, immutable
    :class:`~veille.sentiment.text.Token`): what :meth:`LinearBackend._entry` found. Shared by every
    backend using this model, like the lexicon's memo: a stream repeats its words."""


@dataclass(slots=True)
class LinearModels:
    """The models of every language in ``linear.json``, and what the file says of their training."""

    models: dict[str, LinearModel]
    meta: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModels:
        """Build the models from the parsed ``linear.json``."""
        if data.get("format") != FORMAT:
            raise ValueError(
                f"not a veille linear sentiment model of format {FORMAT!r} (format {data.get('format')!r}); "
                "rebuild it with `make train`"
            )
        labels = tuple(data.get("labels", ()))
        if labels != LABELS:
            raise ValueError(f"model labels {labels} are not {LABELS}")
        missing = set(MODEL_LANGS) - set(data.get("models", {}))
        if missing:
            raise ValueError(f"the model file has no weights for {', '.join(sorted(missing))}")
        models = {lang: _language_model(lang, part) for lang, part in data["models"].items()}
        return cls(models, dict(data.get("meta", {})))


def _language_model(lang: str, part: dict[str, Any]) -> LinearModel:
    weights: dict[str, list[float]] = part["weights"]
    intercept = _pair(part["intercept"])
    extra = _pair(weights.get(f"lang:{lang}", (0.0, 0.0)))
    bias = (intercept[0] + extra[0], intercept[1] + extra[1])
    expected = len(lexicon_feature_names(load_profile(lang)))
    if int(part["lexicon_features"]) != expected:
        raise ValueError(f"the {lang} model has {part['lexicon_features']} word-list features, expected {expected}")
    lex = tuple(_pair(weights.get(f"x{lang}:{i}", (0.0, 0.0))) for i in range(expected))
    groups: dict[str, dict[str, Pair]] = {"u": {}, "b": {}, "c": {}}
    for name, pair in weights.items():
        kind, _, gram = name.partition(":")
        if kind in groups:
            groups[kind][gram] = _pair(pair)
    return LinearModel(lang, bias, lex, groups["u"], groups["b"], groups["c"])


def _pair(values: Sequence[float]) -> Pair:
    """Weights as stored (negative, positive; neutral is the reference class, 0)."""
    if len(values) != 2:
        raise ValueError(f"expected two weights (negative, positive), got {len(values)}")
    return (float(values[0]), float(values[1]))


def _softmax(z0: float, z2: float) -> tuple[float, float, float]:
    """Probabilities of (negative, neutral, positive) from the logits relative to neutral."""
    top = max(z0, 0.0, z2)
    e0, e1, e2 = math.exp(z0 - top), math.exp(-top), math.exp(z2 - top)
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
        self._profiles = {lang: load_profile(lang) for lang in MODEL_LANGS}

    @staticmethod
    def _entry(model: LinearModel, profile: LanguageProfile, token: Token) -> _Entry:
        """What one token adds to a text's score (see :data:`_Entry`); remembered per language and token."""
        key = token.key
        uni = model.unigrams.get(key, _ZERO)
        a = b = 0.0
        count = 0
        is_word = token.kind == "word"
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
        found = (uni[0], uni[1], a, b, count, _role(token, profile), _valences(token, profile))
        cache = model.token_cache
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[token] = found
        return found

    def probabilities(self, text: str, lang: str | None = None) -> tuple[float, float, float]:
        """Return P(negative), P(neutral), P(positive) of ``text`` (``lang`` ``en``, ``fr`` or ``None``)."""
        lang = lang if lang in MODEL_LANGS else "en"
        model = self.models.models[lang]
        profile = self._profiles[lang]
        tokens = tokenize(text, profile.lang, profile.emoticons)
        lexicon = model.lexicon
        z0, z2 = model.bias
        # The surface cues (the last three word-list features).
        if "http" in text or "www." in text:
            w = lexicon[-3]
            z0 += w[0]
            z2 += w[1]
        if "@" in text:
            x = float(min(text.count("@"), 3))
            w = lexicon[-2]
            z0 += w[0] * x
            z2 += w[1] * x
        if "#" in text:
            x = float(min(text.count("#"), 4))
            w = lexicon[-1]
            z0 += w[0] * x
            z2 += w[1] * x
        if not tokens:
            return _softmax(z0, z2)
        cache, bigrams = model.token_cache, model.bigrams
        entry = self._entry
        ua = ub = ca = cb = 0.0
        count = 0
        sums: list[float] | None = None
        negated_until = -1
        previous = ""
        for i, token in enumerate(tokens):
            u0, u2, c0, c2, n, role, values = cache.get(token) or entry(model, profile, token)
            key = token.key
            if i:
                pair = bigrams.get(f"{previous} {key}")
                if pair is not None:
                    u0 += pair[0]
                    u2 += pair[1]
            previous = key
            ua += u0
            ub += u2
            if n:
                ca += c0
                cb += c2
                count += n
            if role:
                negated_until = i + NEGATION_SCOPE if role == _NEGATOR else -1
            elif values:
                if sums is None:
                    sums = [0.0] * (len(lexicon) - len(SURFACE_FEATURES))
                at = 2 if i <= negated_until else 0
                for value in values:
                    if value > 0:
                        sums[at] += value
                    elif value < 0:
                        sums[at + 1] += value
                    at += 4
        scale = 1.0 / math.sqrt(2 * len(tokens) - 1)
        z0 += ua * scale
        z2 += ub * scale
        if count:
            scale = 1.0 / math.sqrt(count)
            z0 += ca * scale
            z2 += cb * scale
        if sums is not None:
            for w, x in zip(lexicon, sums, strict=False):
                if x:
                    x = x / math.sqrt(x * x + SQUASH_ALPHA)
                    z0 += w[0] * x
                    z2 += w[1] * x
        return _softmax(z0, z2)

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
