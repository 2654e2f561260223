"""Match one document against many watches quickly, with an inverted index of required terms.

Each query gets an *anchor*: a set of keys (words, word prefixes, field words, metadata values)
such that the query cannot match a document holding none of them. ``acme AND (panne OR outage)``
is anchored on ``{acme}``; ``(acme OR globex) NOT recipe`` on ``{acme, globex}``; ``lang:fr``
on the language ``fr``. A document is then checked only against the queries anchored on one of
its keys, plus the few queries that have no anchor (pure negations such as ``NOT spam``,
wildcards with no literal prefix such as ``*corp``), which are always checked.

Anchors only ever *skip* queries that cannot match; every candidate is checked with the full
query, so :meth:`WatchIndex.match` gives exactly the same answer as checking every query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from veille.query.document import Document, PreparedDocument, Scope, prepare
from veille.query.nodes import And, Field, Filter, Near, Not, Or, Phrase, Query, Term, Wildcard, is_pattern
from veille.query.parser import parse_query

__all__ = ["IndexStats", "WatchIndex"]

# Indexed wildcard prefixes are at most this long (``acmecorp*`` is filed under ``acme``).
PREFIX_KEY_LENGTH: Final = 4

# Very common words make poor anchors: an AND picks another operand when it can.
# fmt: off
_COMMON_WORDS: Final = frozenset({
    "a", "an", "and", "are", "as", "at", "be", "by", "d", "de", "des", "du", "en", "et", "for",
    "from", "has", "have", "in", "is", "it", "l", "la", "le", "les", "of", "on", "or", "pour", "que",
    "qui", "s", "sur", "t", "the", "this", "to", "un", "une", "was", "with",
})
# fmt: on

# Keys: ("w", word) a title/text word; ("p", prefix) a title/text word prefix of a given length;
# ("s", scope, word) a url/author word; ("f", field, value) a metadata value.
_Key = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Anchor:
    keys: frozenset[_Key]
    cost: float


def _word_cost(word: str) -> float:
    if word in _COMMON_WORDS:
        return 50.0
    return {1: 20.0, 2: 10.0, 3: 4.0}.get(len(word), 1.0)


def _anchor(query: Query, scope: Scope) -> _Anchor | None:
    """Return keys one of which every document matching ``query`` has, or None if there are none."""
    if isinstance(query, Term):
        if scope in ("url", "author"):
            return _Anchor(frozenset({("s", scope, query.word)}), _word_cost(query.word))
        return _Anchor(frozenset({("w", query.word)}), _word_cost(query.word))
    if isinstance(query, Wildcard):
        prefix = query.prefix[:PREFIX_KEY_LENGTH]
        if not prefix or scope in ("url", "author"):
            return None
        return _Anchor(frozenset({("p", prefix)}), 8.0 * (PREFIX_KEY_LENGTH + 1 - len(prefix)))
    if isinstance(query, Phrase):
        parts = [_anchor(Wildcard(w) if is_pattern(w) else Term(w), scope) for w in query.words]
        return _cheapest(parts)
    if isinstance(query, Near):
        return _cheapest([_anchor(query.left, scope), _anchor(query.right, scope)])
    if isinstance(query, And):
        return _cheapest([_anchor(q, scope) for q in query.operands])
    if isinstance(query, Or):
        keys: set[_Key] = set()
        cost = 0.0
        for operand in query.operands:
            found = _anchor(operand, scope)
            if found is None:
                return None
            keys |= found.keys
            cost += found.cost
        return _Anchor(frozenset(keys), cost)
    if isinstance(query, Not):
        if isinstance(query.operand, Not):
            return _anchor(query.operand.operand, scope)
        return None
    if isinstance(query, Field):
        return _anchor(query.query, query.name)
    if isinstance(query, Filter):
        if is_pattern(query.value):
            return None
        return _Anchor(frozenset({("f", query.name, query.value)}), 100.0)
    return None  # pragma: no cover - every node kind is handled above


def _cheapest(anchors: Iterable[_Anchor | None]) -> _Anchor | None:
    best: _Anchor | None = None
    for found in anchors:
        if found is not None and (best is None or found.cost < best.cost):
            best = found
    return best


@dataclass(frozen=True, slots=True)
class IndexStats:
    """How a :class:`WatchIndex` filed its watches."""

    watches: int
    anchored: int
    always_checked: int
    keys: int


class WatchIndex:
    """Many named watch queries, matched against a document in one go.

    Build it from ``{watch_name: query}`` (query text or a parsed :class:`Query`; text that does
    not parse raises :class:`~veille.query.QuerySyntaxError`). :meth:`match` returns the names
    of the matching watches, in the order they were given.
    """

    __slots__ = ("_always", "_filters", "_names", "_prefixes", "_queries", "_scoped", "_terms")

    def __init__(self, watches: Mapping[str, Query | str]) -> None:
        self._names: list[str] = []
        self._queries: list[Query] = []
        self._terms: dict[str, list[int]] = {}
        self._prefixes: dict[int, dict[str, list[int]]] = {}
        self._scoped: dict[Scope, dict[str, list[int]]] = {}
        self._filters: dict[str, dict[str, list[int]]] = {}
        self._always: list[int] = []
        for i, (name, query) in enumerate(watches.items()):
            parsed = parse_query(query) if isinstance(query, str) else query
            self._names.append(name)
            self._queries.append(parsed)
            anchor = _anchor(parsed, "default")
            if anchor is None:
                self._always.append(i)
                continue
            for key in anchor.keys:
                table: dict[str, list[int]]
                if key[0] == "w":
                    table = self._terms
                elif key[0] == "p":
                    table = self._prefixes.setdefault(len(key[1]), {})
                elif key[0] == "s":
                    table = self._scoped.setdefault(key[1], {})  # type: ignore[arg-type]
                else:
                    table = self._filters.setdefault(key[1], {})
                table.setdefault(key[-1], []).append(i)

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> tuple[str, ...]:
        """The watch names, in the order given."""
        return tuple(self._names)

    def query(self, name: str) -> Query:
        """Return the parsed query of a watch."""
        return self._queries[self._names.index(name)]

    def stats(self) -> IndexStats:
        """Return how many watches are anchored and how many are checked for every document."""
        keys = len(self._terms) + sum(len(t) for t in self._prefixes.values())
        keys += sum(len(t) for t in self._scoped.values()) + sum(len(t) for t in self._filters.values())
        return IndexStats(len(self._names), len(self._names) - len(self._always), len(self._always), keys)

    def candidates(self, document: Document | PreparedDocument) -> list[int]:
        """Return the positions of the watches that could match the document (a superset of the matches)."""
        doc = prepare(document)
        hit: set[int] = set(self._always)
        words = doc.words("default")
        terms = self._terms
        if len(words) <= len(terms):
            for word in words:
                ids = terms.get(word)
                if ids is not None:
                    hit.update(ids)
        else:
            for word, ids in terms.items():
                if word in words:
                    hit.update(ids)
        for length, table in self._prefixes.items():
            for word in words:
                ids = table.get(word[:length])
                if ids is not None:
                    hit.update(ids)
        for scope, table in self._scoped.items():
            for word in doc.words(scope):
                ids = table.get(word)
                if ids is not None:
                    hit.update(ids)
        if self._filters:
            self._filter_candidates(doc, hit)
        return sorted(hit)

    def _filter_candidates(self, doc: PreparedDocument, hit: set[int]) -> None:
        values: dict[str, Iterable[str]] = {
            "lang": _lang_prefixes(doc.lang),
            "source": (doc.source,) if doc.source else (),
            "site": [*doc.hosts, doc.site_name] if doc.site_name else doc.hosts,
        }
        for name, table in self._filters.items():
            for value in values[name]:
                ids = table.get(value)
                if ids is not None:
                    hit.update(ids)

    def match(self, document: Document | PreparedDocument) -> list[str]:
        """Return the names of the watches whose query matches the document, in the order given."""
        doc = prepare(document)
        queries = self._queries
        names = self._names
        return [names[i] for i in self.candidates(doc) if queries[i]._eval(doc, "default")]

    def match_exhaustive(self, document: Document | PreparedDocument) -> list[str]:
        """Return the same as :meth:`match` by checking every query (the reference, and the slow way)."""
        doc = prepare(document)
        return [name for name, q in zip(self._names, self._queries, strict=True) if q._eval(doc, "default")]


def _lang_prefixes(lang: str) -> list[str]:
    """``zh-hant-tw`` → ``["zh", "zh-hant", "zh-hant-tw"]``: the ``lang:`` values that match it."""
    if not lang:
        return []
    parts = lang.split("-")
    return ["-".join(parts[: i + 1]) for i in range(len(parts))]
