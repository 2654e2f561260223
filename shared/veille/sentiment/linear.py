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
character n-gram counts (two separate blocks), so that every group is linear in per-token sums.
So what a whitespace-separated chunk of text adds (its unigram and inner bigram weights, its
character n-gram weight sums and their number, its word-list valences with their places, the
bigrams its last token starts) is computed once and remembered, in bounded memos that keep what a
stream repeats (:mod:`veille.sentiment.memo`), per chunk, per piece (``good`` in ``"good,"``) and
per token. A text then costs its cleaning, a split, one lookup per chunk, sums taken column by column
in C, one lookup per chunk pair (the bigram across them), the word-list sums of its chunks added
column by column, and Python code only for a text with a negator (its scope is walked token by
token). A chunk never seen before is joined from its pieces; a word never seen before costs one
lookup per place in it (:attr:`LinearModel.prefix_sums`).
No numpy, no scikit-learn at run time. Where ``make install`` could compile it, the same steps run in
C (``_speedups.c``, loaded by :mod:`veille.sentiment.speedups`): the sums over a text's chunks, the
memos' misses and a new chunk's, piece's and word's entry, on the same objects and in the same order,
so the scores are equal to the bit; about twice as fast in steady state (``docs/benchmarks.md``).

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
from functools import partial
from importlib import resources
from itertools import accumulate, compress
from operator import itemgetter
from types import ModuleType
from typing import Any

from veille.sentiment import speedups
from veille.sentiment.base import LABELS, SentimentResult
from veille.sentiment.lexicon import LOOKUPS_KEPT, LanguageProfile, LexiconBackend, load_profile
from veille.sentiment.memo import Memo
from veille.sentiment.text import (
    Token,
    chunk_tokens,
    clean,
    fold,
    piece_tokens,
    pieces,
    tokenize,
    tripled,
)

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
NEGATOR_ENDING = "n't"
"""A word ending so is a negator (``don't``, ``can't``), besides the language's negator words."""
SQUASH_ALPHA = 15.0
"""VADER's normalisation constant: a valence sum ``x`` becomes ``x / sqrt(x² + 15)``."""
LEXICON_FEATURES: tuple[str, ...] = ("positive", "negative", "negated_positive", "negated_negative")
"""The word-list features of each word list, in order (then :data:`SURFACE_FEATURES` once)."""
SURFACE_FEATURES: tuple[str, ...] = ("has_link", "handles", "hashtags")
_BREAK = 2
_CHAR_COUNTS = tuple(sum(max(0, size - n + 1) for n in range(CHAR_RANGE[0], CHAR_RANGE[1] + 1)) for size in range(8))
"""The number of character n-grams of a word padded to ``size`` characters (``4 * size - 10`` from 5 on)."""
_NEGATOR = 1
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_fast = speedups.accept(
    {
        "CHAR_RANGE": CHAR_RANGE,
        "NEGATOR": _NEGATOR,
        "NEGATOR_ENDING": NEGATOR_ENDING,
        "LOOKUPS_KEPT": LOOKUPS_KEPT,
        "TOKEN_KEY": Token._fields.index("key"),
        "TOKEN_KIND": Token._fields.index("kind"),
    }
)
"""The compiled inner loops (:mod:`veille.sentiment.speedups`), or ``None``: this module's own code."""


def _squashed(z0: float, z2: float, lexicon: Sequence[Pair], sums: Sequence[float]) -> tuple[float, float]:
    """``z0`` and ``z2`` plus the word-list sums, each squashed and weighted by its pair of ``lexicon``."""
    for w, x in zip(lexicon, sums, strict=False):
        if x:
            x = x / math.sqrt(x * x + SQUASH_ALPHA)
            z0 += w[0] * x
            z2 += w[1] * x
    return z0, z2


def _same_arithmetic(fast: ModuleType) -> bool:
    """Whether the module's word-list tail (``lex_logits``, ``negated_logits``) rounds as this module does,
    on values where a fused multiply-add would round otherwise (a compiler can fuse them: ``hatch_build.py``
    asks it not to, and this checks the module that was built)."""
    lexicon = tuple((1.03181761176121 - i / 7, -0.4821664994140733 + i / 9) for i in range(8))
    for i in range(40):
        z0, z2 = -0.4821664994140733 + i / 13, 0.2035100206825039 - i / 17
        values = (3.4442185152504816 - i / 5, -1.1 + i / 11)
        sums = (values[0], 0.0, values[1], 0.7 - i / 3, 0.0, 0.0, 2.5 / (i + 1), -0.3)
        lexes = [(False, sums, ((0, 0, values), (1, _NEGATOR, ()), (2, 0, values[::-1])))]
        if fast.lex_logits(z0, z2, lexes, lexicon, SQUASH_ALPHA) != _squashed(z0, z2, lexicon, sums):
            return False
        negated = _negated_sums_at([i % 3], lexes, len(sums))
        if fast.negated_logits(z0, z2, [i % 3], lexes, lexicon, len(sums), NEGATION_SCOPE, SQUASH_ALPHA) != _squashed(
            z0, z2, lexicon, negated
        ):
            return False
    return True


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
    if kind == "word" and (key in profile.negators or key in profile.ne_words or key.endswith(NEGATOR_ENDING)):
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
_NO_PAIRS: dict[str, Pair] = {}
"""The bigrams a token that starts none starts (never written to)."""
_TokenEntry = tuple[float, float, float, float, int, int, tuple[float, ...], int]
"""Per token: unigram weights (2), summed character n-gram weights (2), their number, its role
(negator, clause break), its word-list valences, and the bigrams it starts (the index in
:attr:`LinearModel.follow_list` of their second word's key → weights; 0 when it starts none)."""
_Event = tuple[int, int, tuple[float, ...]]
"""A token of a chunk that has a role or word-list valences: (its place in the chunk, role, valences)."""
_Lex = tuple[bool, tuple[float, ...], tuple[_Event, ...]]
"""The word-list evidence of a run of tokens: whether one of them is a negator; its word-list sums
as if nothing were negated (:func:`lexicon_feature_names` order, negated columns 0), what a text
without a negator adds up column by column; and its :data:`_Event` s, for a text with one."""
_ChunkEntry = tuple[float, float, float, float, int, int, str, int, "_Lex | None"]
"""Per whitespace-separated chunk of a cleaned text: its unigram and inner bigram weights (2), its
summed character n-gram weights (2), their number, its number of tokens, its first token's key,
the bigrams its last token starts (an index, as in :data:`_TokenEntry`), and its :data:`_Lex`
(``None`` when no token has a role or a valence)."""
PIECE_MEMO_SIZE = 65_536
"""Pieces remembered per language and generation (:class:`~veille.sentiment.memo.Memo`): the
48,273 English training tweets hold 64,108 distinct pieces."""
MEMO_SIZE = 65_536
"""Whitespace-separated chunks remembered per language and generation."""
TOKEN_MEMO_SIZE = 32_768
"""Tokens remembered per language and generation (looked up only for a piece never seen)."""


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
    compiled: bool = True
    """Use the compiled loops when they are there (:mod:`veille.sentiment.speedups`); ``False``: this
    module's own code (the benchmark's side-by-side peer; the scores are the same)."""
    fast: ModuleType | None = field(init=False, repr=False, default=None)
    """The compiled module this model runs with, or ``None``."""
    follows: dict[str, dict[str, Pair]] = field(init=False, repr=False)
    """:attr:`bigrams` by first word: ``follows[a][b]`` is ``bigrams[f"{a} {b}"]`` (no string built
    per token pair at run time)."""
    follow_list: list[dict[str, Pair]] = field(init=False, repr=False)
    """The values of :attr:`follows`, after :data:`_NO_PAIRS` (index 0)."""
    follow_ids: dict[str, int] = field(init=False, repr=False)
    """A word's index in :attr:`follow_list` (absent: it starts no bigram, index 0). The memos' entries
    hold this int, not the dict: an entry of numbers, strings and tuples of them is not tracked by
    Python's cyclic garbage collector once it has seen it, so the memos' hundred thousand entries
    cost nothing to every full collection of the process (they cost 0.1-0.2 s each before, in a
    classifier's process as in the benchmark's)."""
    prefix_sums: dict[str, Pair] = field(init=False, repr=False)
    """For each character n-gram of :attr:`chars`, the summed weights of its prefixes of 2 or more
    characters (itself included). The vocabulary is prefix-closed (a prefix occurs in every tweet
    its extension occurs in), so the n-grams of 2 to 5 characters starting at one place of a word
    weigh the prefix sum of the longest of them in the vocabulary: one lookup per place, not four."""
    char_table: Any = field(init=False, repr=False, default=None)
    """:attr:`prefix_sums` as the compiled module's table (``None`` without it): a new word's n-grams
    are looked up by their characters, with no string made per window."""
    profile: LanguageProfile = field(init=False, repr=False)
    width: int = field(init=False, repr=False)
    """The number of word-list sums (:data:`LEXICON_FEATURES` per word list)."""
    """The language's word lists, negators and emoticons (:func:`~veille.sentiment.lexicon.load_profile`)."""
    tokens: Memo[Any, _TokenEntry] = field(init=False, repr=False)
    """Per token (a word's key; ``(kind, key)`` for other tokens): its :data:`_TokenEntry`."""
    pieces: Memo[str, _ChunkEntry] = field(init=False, repr=False)
    """Per piece of a chunk (a word, a ``#tag``, punctuation ...): its :data:`_ChunkEntry`."""
    chunks: Memo[str, _ChunkEntry] = field(init=False, repr=False)
    """Per whitespace-separated chunk of a cleaned text: its :data:`_ChunkEntry`. The memos are
    bounded and shared by every backend using this model: a stream repeats its words."""

    def __post_init__(self) -> None:
        follows: dict[str, dict[str, Pair]] = {}
        for name, pair in self.bigrams.items():
            # Split at every space: a key with a space in it (rare) still finds its pairs.
            at = name.find(" ")
            while at >= 0:
                follows.setdefault(name[:at], {})[name[at + 1 :]] = pair
                at = name.find(" ", at + 1)
        self.follows = follows
        self.follow_list = [_NO_PAIRS, *follows.values()]
        self.follow_ids = {key: at for at, key in enumerate(follows, start=1)}
        chars = self.chars
        if any(gram[:k] not in chars for gram in chars for k in range(CHAR_RANGE[0], len(gram))):
            raise ValueError(f"the {self.lang} model's character n-grams are not prefix-closed")
        sums: dict[str, Pair] = {}
        for gram in sorted(chars, key=len):
            a, b = chars[gram]
            if len(gram) > CHAR_RANGE[0]:
                shorter = sums[gram[:-1]]
                a, b = shorter[0] + a, shorter[1] + b
            sums[gram] = (a, b)
        self.prefix_sums = sums
        self.profile = load_profile(self.lang)
        self.width = len(self.lexicon) - len(SURFACE_FEATURES)
        fast = self.fast = _fast if self.compiled else None
        if fast is not None:  # the same entries, computed by the compiled loops (speedups.py)
            self.char_table = fast.ngram_table(sums)
            self.tokens = Memo(partial(fast.token_entry, self), TOKEN_MEMO_SIZE)
            self.pieces = Memo(partial(fast.piece_entry, self, fold, piece_tokens), PIECE_MEMO_SIZE)
            self.chunks = Memo(partial(fast.chunk_entry, self, pieces), MEMO_SIZE)
        else:
            self.tokens = Memo(self._token_entry, TOKEN_MEMO_SIZE)
            self.pieces = Memo(self._piece_entry, PIECE_MEMO_SIZE)
            self.chunks = Memo(self._chunk_entry, MEMO_SIZE)

    def char_weights(self, key: str) -> tuple[float, float, int]:
        """The summed weights of the character n-grams of a word (see :attr:`prefix_sums`), and
        their number (the n-grams of :func:`char_ngrams`, in the vocabulary or not)."""
        padded = f" {key} "
        size = len(padded)
        low, high = CHAR_RANGE
        if self.fast is not None:
            a, b = self.fast.char_weights(padded, self.prefix_sums, low, high)
            return a, b, _CHAR_COUNTS[size] if size < len(_CHAR_COUNTS) else 4 * size - 10
        get = self.prefix_sums.get
        a = b = 0.0
        for start in range(size - low + 1):
            window = padded[start : start + high]
            w = get(window)
            while w is None and len(window) > low:
                window = window[:-1]
                w = get(window)
            if w is not None:
                a += w[0]
                b += w[1]
        return a, b, _CHAR_COUNTS[size] if size < len(_CHAR_COUNTS) else 4 * size - 10

    def _token_entry(self, token_key: Any) -> _TokenEntry:
        """The :data:`_TokenEntry` of a word's key, or of a ``(kind, key)`` pair."""
        profile = self.profile
        uni = self.unigrams.get
        if isinstance(token_key, str):  # a word: _role and _valences of a word token, inlined
            key = token_key
            u = uni(key, _ZERO)
            a, b, count = self.char_weights(key)
            negator = key in profile.negators or key in profile.ne_words or key.endswith(NEGATOR_ENDING)
            valence, extras = profile.lookup(key)
            values = (valence, *extras) if extras else ((valence,) if valence else ())
            return (u[0], u[1], a, b, count, _NEGATOR if negator else 0, values, self.follow_ids.get(key, 0))
        kind, key = token_key
        token = Token(key, key, kind)
        u = uni(key, _ZERO)
        after = self.follow_ids.get(key, 0)
        return (u[0], u[1], 0.0, 0.0, 0, _role(token, profile), _valences(token, profile), after)

    def _piece_entry(self, piece: str) -> _ChunkEntry:
        """The :data:`_ChunkEntry` of one of a chunk's pieces (:func:`~veille.sentiment.text.pieces`)."""
        if piece.isalpha() and not tripled(piece):
            # Most new pieces are plain words (letters only, no elongation): one token, its key the
            # piece folded (what piece_tokens gives, without building it; no elision without an
            # apostrophe).
            key = piece.lower() if piece.isascii() else fold(piece)
            u0, u2, c0, c2, n, role, values, after = self.tokens.get(key)
            return (
                u0,
                u2,
                c0,
                c2,
                n,
                1,
                key,
                after,
                _lex(((0, role, values),), self.width) if role or values else None,
            )
        return self._tokens_entry(piece_tokens(piece, self.lang))

    def _tokens_entry(self, tokens: Sequence[Token]) -> _ChunkEntry:
        """The :data:`_ChunkEntry` of a run of tokens, from each token's :data:`_TokenEntry`."""
        memo = self.tokens
        ua = ub = ca = cb = 0.0
        count = 0
        events: list[_Event] = []
        follow_list = self.follow_list
        follow = 0
        for at, token in enumerate(tokens):
            key = token.key
            u0, u2, c0, c2, n, role, values, after = memo.get(key if token.kind == "word" else (token.kind, key))
            pair = follow_list[follow].get(key) if follow else None
            if pair is not None:
                u0 += pair[0]
                u2 += pair[1]
            ua += u0
            ub += u2
            ca += c0
            cb += c2
            count += n
            if role or values:
                events.append((at, role, values))
            follow = after
        first = tokens[0].key if tokens else ""
        return (ua, ub, ca, cb, count, len(tokens), first, follow, _lex(tuple(events), self.width) if events else None)

    def _chunk_entry(self, chunk: str) -> _ChunkEntry:
        """The :data:`_ChunkEntry` of a whitespace-separated chunk of a cleaned text: its pieces'
        (remembered: a new chunk is mostly known words with new punctuation around them), joined."""
        profile = self.profile
        emoticons = profile.emoticons
        if chunk in emoticons or chunk.lower() in emoticons:  # emoticon_chunk, inlined
            return self._tokens_entry(chunk_tokens(chunk, profile.lang, emoticons))
        memo = self.pieces
        get = memo.young.get
        parts = pieces(chunk)
        if len(parts) == 1:
            return get(parts[0]) or memo.miss(parts[0])
        return _join([get(piece) or memo.miss(piece) for piece in parts], self.follow_list, self.width)

    def clear_memos(self) -> None:
        """Forget every remembered token, piece and chunk (benchmarks measure a cold start with this)."""
        self.tokens.clear()
        self.pieces.clear()
        self.chunks.clear()


def _join(parts: Sequence[_ChunkEntry], follow_list: Sequence[dict[str, Pair]], width: int) -> _ChunkEntry:
    """The :data:`_ChunkEntry` of consecutive runs of tokens, from theirs."""
    ua = ub = ca = cb = 0.0
    count = total = 0
    events: list[_Event] = []
    first = ""
    follow = 0
    for u0, u2, c0, c2, n, size, head, after, inner in parts:
        if not size:
            continue
        if not total:
            first = head
        else:
            pair = follow_list[follow].get(head) if follow else None
            if pair is not None:
                ua += pair[0]
                ub += pair[1]
        ua += u0
        ub += u2
        ca += c0
        cb += c2
        count += n
        if inner is not None:
            events += [(total + at, role, values) for at, role, values in inner[2]]
        total += size
        follow = after
    return (ua, ub, ca, cb, count, total, first, follow, _lex(tuple(events), width) if events else None)


def _lex(events: tuple[_Event, ...], width: int) -> _Lex:
    """The :data:`_Lex` of a run of tokens with these events (``width``: the word-list sums' number)."""
    sums = [0.0] * width
    negator = False
    for _, role, values in events:
        if role:
            negator = negator or role == _NEGATOR
            continue
        slot = 0
        for value in values:
            if value > 0:
                sums[slot] += value
            elif value < 0:
                sums[slot + 1] += value
            slot += 4
    return (negator, tuple(sums), events)


@dataclass(slots=True)
class LinearModels:
    """The models of every language in ``linear.json``, and what the file says of their training."""

    models: dict[str, LinearModel]
    meta: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any], *, compiled: bool = True) -> LinearModels:
        """Build the models from the parsed ``linear.json`` (``compiled``: see :attr:`LinearModel.compiled`)."""
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
        models = {lang: _language_model(lang, part, compiled) for lang, part in data["models"].items()}
        return cls(models, dict(data.get("meta", {})))


def _language_model(lang: str, part: dict[str, Any], compiled: bool = True) -> LinearModel:
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
    return LinearModel(lang, bias, lex, groups["u"], groups["b"], groups["c"], compiled)


def _negated_sums_at(starts: Sequence[int], lexes: Sequence[_Lex], width: int) -> list[float]:
    """The word-list sums of a text with a negator, from its chunks' :data:`_Lex` es in order and the
    place of each chunk's first token: each valence goes in the negated columns when it is in a
    negator's scope (:data:`NEGATION_SCOPE`); a clause break ends the scope."""
    sums = [0.0] * width
    negated_until = -1
    for start, lex in zip(starts, lexes, strict=True):
        for at, role, values in lex[2]:
            if role:
                negated_until = start + at + NEGATION_SCOPE if role == _NEGATOR else -1
                continue
            slot = 2 if start + at <= negated_until else 0
            for value in values:
                if value > 0:
                    sums[slot] += value
                elif value < 0:
                    sums[slot + 1] += value
                slot += 4
    return sums


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

    def probabilities(self, text: str, lang: str | None = None) -> tuple[float, float, float]:
        """Return P(negative), P(neutral), P(positive) of ``text`` (``lang`` ``en``, ``fr`` or ``None``)."""
        return _softmax(*self.logits(text, lang))

    def logits(self, text: str, lang: str | None = None) -> tuple[float, float]:
        """Return the log-odds of negative and of positive against neutral (see :meth:`probabilities`)."""
        model = self.models.models[lang if lang in MODEL_LANGS else "en"]
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
        # One memo lookup per whitespace-separated chunk (see :data:`_ChunkEntry`; a new chunk is
        # joined from its pieces' entries, also remembered). The sums are taken column by column
        # (``zip``, ``sum``, ``map``: loops in C); Python code runs only for the few chunks with a
        # role or word-list valences, and for the chunks never seen before.
        units = clean(text).split()
        memo = model.chunks
        if model.fast is not None:
            return self._compiled_logits(model.fast, z0, z2, model, units)
        entries: list[Any] = list(map(memo.young.get, units))  # _ChunkEntry, or None for a new chunk
        if None in entries:
            miss = memo.miss
            entries = [entry or miss(unit) for entry, unit in zip(entries, units, strict=True)]
        if not entries:
            return z0, z2
        ua, ub, ca, cb, ns, sizes, firsts, afters, events = zip(*entries, strict=True)
        if 0 in sizes:  # a chunk without a token ("_"): the pair around it is a bigram
            entries = [entry for entry in entries if entry[5]]
            if not entries:
                return z0, z2
            ua, ub, ca, cb, ns, sizes, firsts, afters, events = zip(*entries, strict=True)
        total = sum(sizes)
        scale = 1.0 / math.sqrt(2 * total - 1)
        pairs = list(filter(None, map(dict.get, map(model.follow_list.__getitem__, afters), firsts[1:])))
        if pairs:
            z0 += (sum(ua) + sum(map(_FIRST, pairs))) * scale
            z2 += (sum(ub) + sum(map(_SECOND, pairs))) * scale
        else:
            z0 += sum(ua) * scale
            z2 += sum(ub) * scale
        count = sum(ns)
        if count:
            scale = 1.0 / math.sqrt(count)
            z0 += sum(ca) * scale
            z2 += sum(cb) * scale
        if any(events):
            lexes: list[_Lex] = list(filter(None, events))
            if not any(map(_FIRST, lexes)):
                # No negator in the text: each chunk's word-list sums, added column by column.
                sums: list[float] = list(map(sum, zip(*map(_SECOND, lexes), strict=True)))
            else:
                sums = self._negated_sums(sizes, events, model.width)
            return _squashed(z0, z2, lexicon, sums)
        return z0, z2

    @staticmethod
    def _compiled_logits(
        fast: ModuleType, z0: float, z2: float, model: LinearModel, units: list[str]
    ) -> tuple[float, float]:
        """The rest of :meth:`logits` with the chunks summed by :func:`_speedups.chunk_sums` (the same
        additions in the same order: equal to the bit)."""
        memo = model.chunks
        got = fast.chunk_sums(units, memo, model.follow_list)
        if got is None:
            return z0, z2
        ua, ub, pa, pb, pairs, total, ca, cb, count, lexes, starts, negator = got
        scale = 1.0 / math.sqrt(2 * total - 1)
        if pairs:
            z0 += (ua + pa) * scale
            z2 += (ub + pb) * scale
        else:
            z0 += ua * scale
            z2 += ub * scale
        if count:
            scale = 1.0 / math.sqrt(count)
            z0 += ca * scale
            z2 += cb * scale
        if not lexes:
            return z0, z2
        # The word-list sums (column by column; with a negator, :func:`_negated_sums_at`), squashed and
        # weighted into z0 and z2 as :meth:`logits` does, in C.
        if not negator:
            return fast.lex_logits(z0, z2, lexes, model.lexicon, SQUASH_ALPHA)  # type: ignore[no-any-return]
        return fast.negated_logits(  # type: ignore[no-any-return]
            z0, z2, starts, lexes, model.lexicon, model.width, NEGATION_SCOPE, SQUASH_ALPHA
        )

    @staticmethod
    def _negated_sums(sizes: Sequence[int], events: Sequence[_Lex | None], width: int) -> list[float]:
        """The word-list sums of a text with a negator: its chunks' events in order, each valence in
        the negated columns when it is in a negator's scope (:data:`NEGATION_SCOPE`)."""
        placed = list(compress(zip(accumulate(sizes, initial=0), events, strict=False), events))
        return _negated_sums_at([start for start, _ in placed], [lex for _, lex in placed], width)  # type: ignore[misc]

    def analyze(self, text: str, lang: str | None = None) -> SentimentResult:
        """Return the label and score of ``text`` (``lang``: ISO 639-1 code or ``None``)."""
        if lang is not None and lang not in MODEL_LANGS:
            return self._lexicon.analyze(text, lang)
        z0, z2 = self.logits(text, lang)
        # _softmax, inlined: this is the classifier's hot path.
        top = z0 if z0 > z2 else z2
        if top < 0.0:
            top = 0.0
        e0, e1, e2 = math.exp(z0 - top), math.exp(-top), math.exp(z2 - top)
        total = e0 + e1 + e2
        p0, p1, p2 = e0 / total, e1 / total, e2 / total
        best = 0 if p0 >= p1 and p0 >= p2 else (1 if p1 >= p2 else 2)
        score = p2 - p0
        return SentimentResult(LABELS[best], -1.0 if score < -1.0 else (1.0 if score > 1.0 else score))

    def analyze_many(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[SentimentResult]:
        """Return :meth:`analyze` of each text with its language (all ``None`` if not given)."""
        if langs is None:
            return [self.analyze(text) for text in texts]
        if len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        return [self.analyze(text, lang) for text, lang in zip(texts, langs, strict=True)]


if _fast is not None and not _same_arithmetic(_fast):
    speedups.refuse("the compiled module rounds otherwise than Python: built with fused multiply-adds?")
    _fast = None
