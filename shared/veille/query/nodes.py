"""The query tree: small immutable nodes that know how to match a document.

Semantics, shared by every node:

* Words are compared after :func:`veille.text.fold` and :func:`veille.text.tokenize`: case-,
  accent- and punctuation-insensitive, whole words only (``acme`` does not match ``acmeist``).
* ``*`` matches any run of letters/digits *within one word* (possibly empty), ``?`` exactly one
  (``acme*`` matches ``acme`` and ``acmeist``; ``te?t`` matches ``test`` and ``text``).
* A phrase matches consecutive words. Bare words and phrases look in the title and the text
  (a phrase never spans the end of the title and the start of the text).
* ``Near(a, b, n)`` matches when an occurrence of ``a`` and one of ``b`` have at most ``n``
  words between them, in either order (``ordered=True``: ``a`` first); overlapping occurrences
  do not count.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, Literal

from veille.query.document import Document, PreparedDocument, Scope, Span, normalise_host, prepare
from veille.text import fold, normalise_for_match

__all__ = [
    "FILTER_FIELDS",
    "MAX_NEAR_DISTANCE",
    "TEXT_FIELDS",
    "And",
    "Field",
    "Filter",
    "FilterField",
    "Near",
    "Not",
    "Or",
    "Phrase",
    "Query",
    "Term",
    "TextField",
    "Wildcard",
    "is_pattern",
]

MAX_NEAR_DISTANCE: Final = 100
"""Largest ``n`` accepted in ``NEAR/n``."""

TextField = Literal["title", "text", "url", "author"]
FilterField = Literal["lang", "source", "site"]
TEXT_FIELDS: Final[frozenset[str]] = frozenset({"title", "text", "url", "author"})
"""Fields whose value is text, searched word by word like the title and text."""
FILTER_FIELDS: Final[frozenset[str]] = frozenset({"lang", "source", "site"})
"""Fields compared as a whole value (language code, source name, host)."""


def is_pattern(word: str) -> bool:
    """Return whether a query word contains a wildcard (``*`` or ``?``)."""
    return "*" in word or "?" in word


@functools.lru_cache(maxsize=8192)
def _compile_pattern(pattern: str) -> Callable[[str], bool]:
    """Return a predicate testing whether a whole word matches a wildcard pattern."""
    if "?" not in pattern:  # only "*": string tests, no regex
        parts = pattern.split("*")
        if len(parts) == 1:
            return pattern.__eq__
        if len(parts) == 2:
            head, tail = parts
            if not tail:
                return lambda word: word.startswith(head)  # acme*: the common case
            if not head:
                return lambda word: word.endswith(tail)  # *corp
            size = len(head) + len(tail)
            return lambda word: len(word) >= size and word.startswith(head) and word.endswith(tail)
        if len(parts) == 3 and not parts[0] and not parts[2]:
            middle = parts[1]
            return lambda word: middle in word  # *bank*
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    regex = re.sub(r"(?:\.\*)+", ".*", regex)
    compiled = re.compile(regex, re.DOTALL)
    return lambda word: compiled.fullmatch(word) is not None


def _needle(pattern: str) -> str:
    """Return the longest literal run of a pattern, with a space where it touches a word boundary.

    Every word matching ``pattern`` contains it once the words are joined by spaces and framed by
    spaces: ``acme*`` → ``" acme"``, ``*corp`` → ``"corp "``, ``*bank*`` → ``"bank"``.
    """
    runs = re.split(r"([*?]+)", pattern)
    best, best_index = "", -1
    for i, run in enumerate(runs):
        if i % 2 == 0 and len(run) > len(best):
            best, best_index = run, i
    if not best:
        return ""
    if best_index == 0:
        best = " " + best
    if best_index == len(runs) - 1:
        best += " "
    return best


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Query:
    """A parsed query: an immutable tree of nodes (:class:`Term`, :class:`Phrase`, :class:`And` ...).

    ``str(query)`` renders it back in canonical query syntax (folded words, explicit operators
    and parentheses); parsing that text gives an equal query.
    """

    __slots__ = ()

    def matches(self, document: Document | PreparedDocument) -> bool:
        """Return whether the document matches this query.

        Pass a :class:`PreparedDocument` (see :func:`prepare`) when checking several queries
        against the same document, so it is tokenised only once.
        """
        return self._eval(prepare(document), "default")

    def positive_terms(self) -> tuple[Term | Phrase | Wildcard, ...]:
        """Return the words, phrases and wildcards the query looks for in the title or text.

        Those under an odd number of ``NOT`` and those of ``url:``/``author:`` are left out; each
        appears once, in query order. A source with a remote search can search for these, then
        re-check every candidate locally with :meth:`matches`.
        """
        seen: dict[Term | Phrase | Wildcard, None] = {}
        for leaf, positive, scope in self._leaves(True, "default"):
            if positive and scope in ("default", "title", "text"):
                seen.setdefault(leaf)
        return tuple(seen)

    def walk(self) -> Iterator[Query]:
        """Yield this node and all its descendants, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()

    def children(self) -> tuple[Query, ...]:
        """Return the direct sub-queries of this node."""
        return ()

    # -- internals -------------------------------------------------------------------------------

    def _positional(self) -> bool:
        """Whether occurrences of this node have word positions (so it can be a NEAR operand)."""
        return False

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        raise NotImplementedError

    def _spans(self, doc: PreparedDocument, scope: Scope) -> list[Span]:
        raise TypeError(f"{type(self).__name__} has no word positions")

    def _leaves(self, positive: bool, scope: Scope) -> Iterator[tuple[Term | Phrase | Wildcard, bool, Scope]]:
        for child in self.children():
            yield from child._leaves(positive, scope)


@dataclass(frozen=True, slots=True)
class Term(Query):
    """One whole word (already folded: ``Term("decu")`` matches "déçu", "DECU", "Déçu")."""

    word: str
    raw: str | None = field(default=None, compare=False, repr=False)
    """The word as the user wrote it (with case and accents), for remote searches."""

    def _positional(self) -> bool:
        return True

    def __post_init__(self) -> None:
        if not self.word or is_pattern(self.word):
            raise ValueError(f"not a plain word: {self.word!r}")

    def __str__(self) -> str:
        return self.word

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return self.word in doc.words(scope)

    def _spans(self, doc: PreparedDocument, scope: Scope) -> list[Span]:
        return [(p, p) for p in doc.positions(scope).get(self.word, ())]

    def _leaves(self, positive: bool, scope: Scope) -> Iterator[tuple[Term | Phrase | Wildcard, bool, Scope]]:
        yield self, positive, scope


@dataclass(frozen=True, slots=True)
class Wildcard(Query):
    """One word matching a pattern: ``*`` is any run of letters/digits, ``?`` exactly one."""

    pattern: str
    raw: str | None = field(default=None, compare=False, repr=False)
    _match: Callable[[str], bool] = field(init=False, compare=False, repr=False, hash=False)
    _needle: str = field(init=False, compare=False, repr=False, hash=False)

    def _positional(self) -> bool:
        return True

    def __post_init__(self) -> None:
        if not is_pattern(self.pattern):
            raise ValueError(f"not a wildcard pattern: {self.pattern!r}")
        object.__setattr__(self, "_match", _compile_pattern(self.pattern))
        object.__setattr__(self, "_needle", _needle(self.pattern))

    @property
    def prefix(self) -> str:
        """The literal characters before the first wildcard (``"acme"`` for ``acme*``)."""
        return re.split(r"[*?]", self.pattern, maxsplit=1)[0]

    def matches_word(self, word: str) -> bool:
        """Return whether one folded word matches the pattern."""
        return self._match(word)

    def __str__(self) -> str:
        return self.pattern

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return bool(doc.wildcard_positions(scope, self.pattern, self._match, self._needle))

    def _spans(self, doc: PreparedDocument, scope: Scope) -> list[Span]:
        return [(p, p) for p in doc.wildcard_positions(scope, self.pattern, self._match, self._needle)]

    def _leaves(self, positive: bool, scope: Scope) -> Iterator[tuple[Term | Phrase | Wildcard, bool, Scope]]:
        yield self, positive, scope


@dataclass(frozen=True, slots=True)
class Phrase(Query):
    """Two or more consecutive words; a word may be a wildcard pattern (``"acme *"``)."""

    words: tuple[str, ...]
    raw: str | None = field(default=None, compare=False, repr=False)
    _matchers: tuple[Callable[[str], bool] | None, ...] = field(init=False, compare=False, repr=False, hash=False)
    _needles: tuple[str, ...] = field(init=False, compare=False, repr=False, hash=False)

    def _positional(self) -> bool:
        return True

    def __post_init__(self) -> None:
        if len(self.words) < 2 or not all(self.words):
            raise ValueError("a phrase has at least two words")
        object.__setattr__(self, "_matchers", tuple(_compile_pattern(w) if is_pattern(w) else None for w in self.words))
        object.__setattr__(self, "_needles", tuple(_needle(w) if is_pattern(w) else "" for w in self.words))

    def __str__(self) -> str:
        return _quote(" ".join(self.words))

    def _word_positions(self, doc: PreparedDocument, scope: Scope, i: int) -> list[int]:
        matcher = self._matchers[i]
        word = self.words[i]
        if matcher is None:
            return doc.positions(scope).get(word, [])
        return doc.wildcard_positions(scope, word, matcher, self._needles[i])

    def _starts(self, doc: PreparedDocument, scope: Scope, first_only: bool) -> list[int]:
        lists = [self._word_positions(doc, scope, i) for i in range(len(self.words))]
        if not all(lists):
            return []
        sets = [set(p) for p in lists[1:]]
        starts = []
        for start in lists[0]:
            if all(start + i in s for i, s in enumerate(sets, 1)):
                starts.append(start)
                if first_only:
                    break
        return starts

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return bool(self._starts(doc, scope, True))

    def _spans(self, doc: PreparedDocument, scope: Scope) -> list[Span]:
        last = len(self.words) - 1
        return [(p, p + last) for p in self._starts(doc, scope, False)]

    def _leaves(self, positive: bool, scope: Scope) -> Iterator[tuple[Term | Phrase | Wildcard, bool, Scope]]:
        yield self, positive, scope


@dataclass(frozen=True, slots=True)
class Near(Query):
    """``left NEAR/n right``: occurrences with at most ``distance`` words between them.

    Either order unless ``ordered`` (written ``NEAR/nf``: ``left`` comes first). Operands are
    words, phrases, wildcards, ``OR`` groups of them, or other ``Near`` nodes (whose occurrence
    runs from its first word to its last).
    """

    left: Query
    right: Query
    distance: int
    ordered: bool = False

    def _positional(self) -> bool:
        return True

    def __post_init__(self) -> None:
        if not 0 <= self.distance <= MAX_NEAR_DISTANCE:
            raise ValueError(f"NEAR distance must be between 0 and {MAX_NEAR_DISTANCE}")
        for operand in (self.left, self.right):
            if not operand._positional():
                raise ValueError("NEAR operands must be words, phrases, wildcards or OR groups of them")

    def __str__(self) -> str:
        return f"({self.left} NEAR/{self.distance}{'f' if self.ordered else ''} {self.right})"

    def children(self) -> tuple[Query, ...]:
        """Return the two operands."""
        return (self.left, self.right)

    def _pairs(self, doc: PreparedDocument, scope: Scope, first_only: bool) -> list[Span]:
        lefts = self.left._spans(doc, scope)
        if not lefts:
            return []
        rights = self.right._spans(doc, scope)
        if not rights:
            return []
        n = self.distance
        by_start = sorted(rights)
        starts = [s for s, _ in by_start]
        out: list[Span] = []
        for a_start, a_end in lefts:
            # right after left: right starts within n words after left ends
            lo = bisect_left(starts, a_end + 1)
            hi = bisect_right(starts, a_end + 1 + n)
            for _b_start, b_end in by_start[lo:hi]:
                out.append((a_start, b_end))
                if first_only:
                    return out
        if not self.ordered:
            by_end = sorted(rights, key=lambda s: s[1])
            ends = [e for _, e in by_end]
            for a_start, a_end in lefts:
                lo = bisect_left(ends, a_start - 1 - n)
                hi = bisect_right(ends, a_start - 1)
                for b_start, _b_end in by_end[lo:hi]:
                    out.append((b_start, a_end))
                    if first_only:
                        return out
        return out

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return bool(self._pairs(doc, scope, True))

    def _spans(self, doc: PreparedDocument, scope: Scope) -> list[Span]:
        return self._pairs(doc, scope, False)


@dataclass(frozen=True, slots=True)
class And(Query):
    """All operands match (also what bare juxtaposition means: ``a b`` is ``a AND b``)."""

    operands: tuple[Query, ...]

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("AND needs at least two operands")

    def __str__(self) -> str:
        return "(" + " AND ".join(map(str, self.operands)) + ")"

    def children(self) -> tuple[Query, ...]:
        """Return the operands."""
        return self.operands

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return all(q._eval(doc, scope) for q in self.operands)


@dataclass(frozen=True, slots=True)
class Or(Query):
    """At least one operand matches."""

    operands: tuple[Query, ...]

    def __post_init__(self) -> None:
        if len(self.operands) < 2:
            raise ValueError("OR needs at least two operands")

    def _positional(self) -> bool:
        return all(q._positional() for q in self.operands)

    def __str__(self) -> str:
        return "(" + " OR ".join(map(str, self.operands)) + ")"

    def children(self) -> tuple[Query, ...]:
        """Return the operands."""
        return self.operands

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return any(q._eval(doc, scope) for q in self.operands)

    def _spans(self, doc: PreparedDocument, scope: Scope) -> list[Span]:
        out: list[Span] = []
        for q in self.operands:
            out.extend(q._spans(doc, scope))
        return out


@dataclass(frozen=True, slots=True)
class Not(Query):
    """The operand does not match (``acme NOT recipe``, ``-recipe``)."""

    operand: Query

    def __str__(self) -> str:
        return f"(NOT {self.operand})"

    def children(self) -> tuple[Query, ...]:
        """Return the negated operand."""
        return (self.operand,)

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return not self.operand._eval(doc, scope)

    def _leaves(self, positive: bool, scope: Scope) -> Iterator[tuple[Term | Phrase | Wildcard, bool, Scope]]:
        yield from self.operand._leaves(not positive, scope)


@dataclass(frozen=True, slots=True)
class Field(Query):
    """A sub-query looked for in one text field only: ``title:acme``, ``url:economie``, ``author:"jean dupont"``.

    ``title`` and ``text`` split the default scope; ``url`` and ``author`` are only searched
    through such a field (their words: ``https://www.lemonde.fr/economie`` has the words
    ``https``, ``www``, ``lemonde``, ``fr``, ``economie``).
    """

    name: TextField
    query: Query

    def __post_init__(self) -> None:
        if self.name not in TEXT_FIELDS:
            raise ValueError(f"not a text field: {self.name!r}")
        if any(isinstance(q, Field | Filter) for q in self.query.walk()):
            raise ValueError("fields cannot be nested")

    def __str__(self) -> str:
        inner = str(self.query)
        if isinstance(self.query, Not):
            inner = f"({inner})"
        return f"{self.name}:{inner}"

    def children(self) -> tuple[Query, ...]:
        """Return the field's sub-query."""
        return (self.query,)

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        return self.query._eval(doc, self.name)

    def _leaves(self, positive: bool, scope: Scope) -> Iterator[tuple[Term | Phrase | Wildcard, bool, Scope]]:
        yield from self.query._leaves(positive, self.name)


@dataclass(frozen=True, slots=True)
class Filter(Query):
    """A metadata filter compared as a whole value, case-insensitively; wildcards allowed.

    * ``lang:fr`` matches documents in ``fr`` or a regional variant (``fr-CA``).
    * ``source:bluesky`` matches the ingestor name exactly.
    * ``site:lemonde.fr`` matches the host ``lemonde.fr`` and its subdomains (``www.lemonde.fr``),
      taken from the document's ``site`` and from its URL; ``site:"Le Monde"`` matches a ``site``
      given as a publisher name.
    """

    name: FilterField
    value: str
    _match: Callable[[str], bool] | None = field(init=False, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if self.name not in FILTER_FIELDS:
            raise ValueError(f"not a filter field: {self.name!r}")
        if not self.value:
            raise ValueError(f"{self.name}: needs a value")
        object.__setattr__(self, "_match", _compile_pattern(self.value) if is_pattern(self.value) else None)

    @classmethod
    def make(cls, name: FilterField, raw_value: str) -> Filter:
        """Build a filter from a value as written, normalising it (``site:https://WWW.X.fr/`` → ``www.x.fr``)."""
        if name == "site":
            value = normalise_host(raw_value)
            if " " in raw_value.strip() and "://" not in raw_value:
                value = " ".join(normalise_for_match(raw_value))
        else:
            value = fold(raw_value).strip()
            if name == "lang":
                value = value.replace("_", "-")
        return cls(name, value)

    def __str__(self) -> str:
        return f"{self.name}:{_quote(self.value)}"

    def _eval(self, doc: PreparedDocument, scope: Scope) -> bool:
        match = self._match
        value = self.value
        if self.name == "lang":
            lang = doc.lang
            if match is not None:
                return bool(lang) and (match(lang) or match(lang.split("-", 1)[0]))
            return lang == value or lang.startswith(value + "-")
        if self.name == "source":
            return match(doc.source) if match is not None else doc.source == value
        # site
        if match is not None:
            return any(match(h) for h in doc.hosts) or (bool(doc.site_name) and match(doc.site_name))
        return value in doc.hosts or value == doc.site_name
