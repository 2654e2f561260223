"""Turning a social-media text into tokens a lexicon can score.

Handles what tweets and posts are made of: ``@handles`` and URLs (dropped), ``&amp;`` entities and
literal ``\\u2019`` escapes (decoded), ``#HashTags`` (split into words), elongations (``soooo`` →
``soo``), shouting (ALL CAPS), runs of ``!``/``?``, emoticons (``:-)``), emoji, French elisions
(``l'``, ``d'``, ``qu'``, ``n'`` ...) and accents (looked up folded: ``déçu`` = ``decu``).
"""

from __future__ import annotations

import html
import re
import unicodedata
from functools import lru_cache
from typing import NamedTuple

from veille.sentiment.memo import Memo

__all__ = [
    "Token",
    "chunk_tokens",
    "clean",
    "elongated",
    "emoticon_chunk",
    "fold",
    "piece_tokens",
    "pieces",
    "tokenize",
    "tripled",
]

_ESCAPED = re.compile(r"\\u([0-9a-fA-F]{4})")
_NOISE = re.compile(r"https?://\S+|w(?<!\w\w)ww\.\S+|@\w+|h(?<!\w\w)ttps?\b")
r"""Links, handles and a lone ``http``: ``https?://\S+|\bwww\.\S+|@\w+|\bhttps?\b``, written so that every
branch starts with a letter (the word boundary checked just after it, ``(?<!\w\w)``): the regular
expression engine then skips to the next ``h``, ``w`` or ``@`` in C instead of trying each branch
at every place (three times faster on tweets)."""
_PIECE = re.compile(r"#?[^\W_]+(?:['’\-][^\W_]+)*'?|[!?]+|[.,;:]+|[^\w\s]")
_CAMEL = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_ELONGATION = re.compile(r"([^\W\d_])\1{2,}")
_TRIPLE = re.compile(r"(.)\1\1")
"""Any character three times in a row: what a word must have to match ``_ELONGATION``, found about
eight times faster (``.`` needs no character-class test); in a word of letters only it is the same."""
_FR_ELISION = re.compile(r"^(l|d|j|n|m|t|s|c|qu|jusqu|lorsqu|puisqu|quoiqu)['’](?=\w)", re.IGNORECASE)
_CLAUSE_END = frozenset(".,;:")


@lru_cache(maxsize=65_536)
def fold(word: str) -> str:
    """Return ``word`` lower-cased and without accents (``Déçu`` → ``decu``), for lexicon lookup."""
    lowered = word.lower().replace("’", "'")
    if lowered.isascii():
        return lowered
    decomposed = unicodedata.normalize("NFKD", lowered)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class Token(NamedTuple):
    """One unit of text: a word, an emoticon, an emoji, or punctuation.

    ``key`` is the folded form used for lookup; ``shouted`` marks a word in capitals (of two
    letters or more), ``elongated`` one with a letter repeated three times or more (``sooo``),
    ``titled`` one written Capitalised (``Blood``; not ``I``, not a part of a ``#HashTag``).
    ``kind`` is ``"word"``, ``"emoticon"``, ``"symbol"`` (emoji or other sign), ``"bang"`` (a run of
    ``!``/``?``) or ``"stop"`` (punctuation that ends a clause).
    """

    text: str
    key: str
    kind: str
    shouted: bool = False
    elongated: bool = False
    titled: bool = False


def clean(text: str) -> str:
    """Return ``text`` with ``\\uXXXX`` escapes and HTML entities decoded and links and handles
    replaced by a space: :func:`tokenize` splits what this returns at whitespace."""
    if "\\u" in text:
        text = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)
    if "&" in text:
        text = html.unescape(text)
    if "@" in text or "http" in text or "www." in text:  # what _NOISE can match starts so
        return _NOISE.sub(" ", text)
    return text


def _split_word(piece: str, french: bool, out: list[Token], tag: bool = False) -> None:
    if piece.startswith("#"):
        body = piece[1:]
        parts = _CAMEL.findall(body) if not body.islower() and not body.isupper() else [body]
        for part in parts or [body]:
            _split_word(part, french, out, True)
        return
    if french:
        match = _FR_ELISION.match(piece)
        if match:
            out.append(Token(match.group(0), fold(match.group(1)) + "'", "word"))
            piece = piece[match.end() :]
    if "’" in piece:
        piece = piece.replace("’", "'")
    elongated = False
    if _TRIPLE.search(piece) and _ELONGATION.search(piece):
        elongated = True
        piece = _ELONGATION.sub(r"\1\1", piece)
    shouted = len(piece) > 1 and piece.isupper()
    titled = not tag and not shouted and piece[0].isupper() and piece != "I"
    out.append(Token(piece, fold(piece), "word", shouted, elongated, titled))


def tokenize(text: str, lang: str | None = None, emoticons: frozenset[str] = frozenset()) -> list[Token]:
    """Split ``text`` into :class:`Token` s; ``lang="fr"`` also splits French elisions.

    Whitespace-separated chunks found in ``emoticons`` are kept whole (``:-)``, ``<3``). The tokens
    of each chunk are memoised (they are immutable; a bounded :class:`~veille.sentiment.memo.Memo`):
    a stream of posts repeats most of its words.
    """
    french = lang == "fr"
    memo = _CHUNK_MEMOS.get((french, emoticons))
    if memo is None:

        def compute(chunk: str) -> tuple[Token, ...]:
            return _chunk_tokens(chunk, french, emoticons)

        memo = _CHUNK_MEMOS.setdefault((french, emoticons), Memo(compute, _CHUNK_CACHE_SIZE))
    get = memo.young.get
    out: list[Token] = []
    for chunk in clean(text).split():
        tokens = get(chunk)
        out.extend(tokens if tokens is not None else memo.miss(chunk))
    return out


_CHUNK_MEMOS: dict[tuple[bool, frozenset[str]], Memo[str, tuple[Token, ...]]] = {}
"""Tokens of each whitespace-separated chunk already seen, per (French?, emoticon set)."""
_CHUNK_CACHE_SIZE = 50_000


def chunk_tokens(chunk: str, lang: str | None = None, emoticons: frozenset[str] = frozenset()) -> tuple[Token, ...]:
    """Return the tokens of one whitespace-separated chunk of :func:`clean` 's output (not memoised):
    :func:`tokenize` is these, chunk after chunk."""
    return _chunk_tokens(chunk, lang == "fr", emoticons)


def emoticon_chunk(chunk: str, emoticons: frozenset[str]) -> bool:
    """Whether a chunk is kept whole as an emoticon; any other chunk's tokens are those of its
    :func:`pieces`, piece after piece (:func:`piece_tokens`)."""
    return chunk in emoticons or chunk.lower() in emoticons


pieces = _PIECE.findall
elongated = _ELONGATION.search
"""A match when a word has a letter three times in a row or more (``sooo``), else ``None``."""
tripled = _TRIPLE.search
"""A match when a word has a character three times in a row, else ``None``: for a word of letters
only (``str.isalpha``), the same answer as :func:`elongated`, faster."""
"""The pieces of a chunk that is not an emoticon (a word, a ``#tag``, a run of ``!?`` or of
``.,;:``, another sign)."""


def piece_tokens(piece: str, lang: str | None = None) -> tuple[Token, ...]:
    """Return the tokens of one of a chunk's :func:`pieces` (not memoised)."""
    out: list[Token] = []
    _piece_tokens(piece, lang == "fr", out)
    return tuple(out)


def _chunk_tokens(chunk: str, french: bool, emoticons: frozenset[str]) -> tuple[Token, ...]:
    """Return the tokens of one whitespace-separated chunk of a cleaned text."""
    if chunk in emoticons:
        return (Token(chunk, chunk, "emoticon"),)
    lowered = chunk.lower()
    if lowered in emoticons:
        return (Token(chunk, lowered, "emoticon"),)
    out: list[Token] = []
    for piece in _PIECE.findall(chunk):
        _piece_tokens(piece, french, out)
    return tuple(out)


def _piece_tokens(piece: str, french: bool, out: list[Token]) -> None:
    """Append the tokens of one piece (a match of ``_PIECE``) of a chunk to ``out``."""
    first = piece[0]
    if first in "!?":
        out.append(Token(piece, piece, "bang"))
    elif first in _CLAUSE_END:
        out.append(Token(piece, piece, "stop"))
    elif first == "#" or first.isalnum():
        if piece.endswith("'") and len(piece) > 1:
            piece = piece[:-1]
        _split_word(piece, french, out)
    else:
        out.append(Token(piece, piece, "symbol"))
