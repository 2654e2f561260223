"""Property-based tests of the query engine: the parser, the matcher and the watch index."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veille.query import (
    And,
    Document,
    Field,
    Filter,
    Near,
    Not,
    Or,
    Phrase,
    Query,
    QuerySyntaxError,
    Term,
    WatchIndex,
    Wildcard,
    parse_query,
    prepare,
)
from veille.text import fold, normalise_for_match

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A small vocabulary, so that random queries and random documents often share words.
WORDS = ["acme", "acmeist", "outage", "panne", "decu", "corp", "globex", "le", "monde", "x1"]
SURFACE = {
    "acme": ["acme", "ACME", "Acme", "#acme", "@Acme"],
    "decu": ["déçu", "DÉÇU", "decu", "Déçu"],
    "monde": ["monde", "Monde", "MONDE"],
    "le": ["le", "Le", "l'"],
}
PATTERNS = ["acm*", "*corp", "d?cu", "*", "pan*e", "glo*", "x?", "*e*"]


def _flat(kind: type[And] | type[Or], operands: list[Query]) -> Query:
    flat: list[Query] = []
    for q in operands:
        flat.extend(q.operands if isinstance(q, kind) else [q])
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


terms = st.sampled_from(WORDS).map(Term)
wildcards = st.sampled_from(PATTERNS).map(Wildcard)
phrases = st.lists(st.sampled_from(WORDS + PATTERNS[:3]), min_size=2, max_size=3).map(lambda ws: Phrase(tuple(ws)))
positional_leaves = st.one_of(terms, terms, wildcards, phrases)


def _positional(children: st.SearchStrategy[Query]) -> st.SearchStrategy[Query]:
    return st.one_of(
        st.builds(Near, children, children, st.integers(min_value=0, max_value=4), st.booleans()),
        st.lists(children, min_size=2, max_size=3).map(lambda qs: _flat(Or, qs)),
    )


positional = st.recursive(positional_leaves, _positional, max_leaves=4)


def _boolean(children: st.SearchStrategy[Query]) -> st.SearchStrategy[Query]:
    return st.one_of(
        st.lists(children, min_size=2, max_size=3).map(lambda qs: _flat(And, qs)),
        st.lists(children, min_size=2, max_size=3).map(lambda qs: _flat(Or, qs)),
        children.map(Not),
    )


text_queries = st.recursive(positional, _boolean, max_leaves=6)
filters = st.one_of(
    st.sampled_from(["fr", "en", "fr-ca"]).map(lambda v: Filter("lang", v)),
    st.sampled_from(["bluesky", "rss"]).map(lambda v: Filter("source", v)),
    st.sampled_from(["lemonde.fr", "www.lemonde.fr", "example.com", "le monde", "*.fr"]).map(
        lambda v: Filter("site", v)
    ),
)
fields = st.builds(Field, st.sampled_from(["title", "text", "url", "author"]), text_queries)
queries = st.recursive(st.one_of(text_queries, filters, fields), _boolean, max_leaves=8)


@st.composite
def texts(draw: st.DrawFn) -> str:
    """Draw a short text mixing vocabulary words (in various spellings), noise and punctuation."""
    parts = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        word = draw(st.sampled_from([*WORDS, "the", "globexcorp", "panne", "décu"]))
        parts.append(draw(st.sampled_from(SURFACE.get(word, [word]))))
        parts.append(draw(st.sampled_from([" ", " ", ", ", ". ", "-", "\n"])))
    return "".join(parts)


documents = st.builds(
    Document,
    text=texts(),
    title=st.one_of(st.none(), texts()),
    url=st.sampled_from([None, "https://www.lemonde.fr/economie/acme", "https://example.com/x1/outage", "not a url"]),
    site=st.sampled_from([None, "lemonde.fr", "Le Monde", "www.example.com"]),
    author=st.sampled_from([None, "Jean Panne", "@acme.bsky.social"]),
    lang=st.sampled_from([None, "fr", "en", "fr-CA", "FR"]),
    source=st.sampled_from([None, "bluesky", "rss", "RSS"]),
)


@SETTINGS
@given(st.text(max_size=60))
def test_parse_only_raises_query_syntax_error_on_any_text(text: str) -> None:
    """Any text either parses or raises QuerySyntaxError with a position inside the query."""
    try:
        parse_query(text)
    except QuerySyntaxError as exc:
        assert 0 <= exc.position <= len(text)


QUERYISH = [
    "acme", "déçu", "AND", "OR", "NOT", "NEAR/3", "NEAR/2f", "(", ")", '"', "*", "?", "-", "+",
    ":", "title:", "lang:", "site:", "foo:", "~", "~2", "^2", "[", "]", "TO", "/", "\\", "&&",
    "l'x", "covid-19", '"a b"', "NEAR", "url:", "!", '"a b"~1.5', "~0.5", "^1.5", "NEAR/0f",
]  # fmt: skip


@SETTINGS
@given(
    st.tuples(st.sampled_from([" ", ""]), st.lists(st.sampled_from(QUERYISH), max_size=10)).map(
        lambda t: t[0].join(t[1])
    )
)
def test_parse_only_raises_query_syntax_error_on_query_like_text(text: str) -> None:
    """Sequences of query syntax either parse or raise QuerySyntaxError with a position inside the query."""
    try:
        parse_query(text)
    except QuerySyntaxError as exc:
        assert 0 <= exc.position <= len(text)


@SETTINGS
@given(queries)
def test_rendered_query_parses_back_to_itself(query: Query) -> None:
    """str(query) is query syntax that parses back to an equal query."""
    assert parse_query(str(query)) == query


@SETTINGS
@given(st.lists(queries, min_size=1, max_size=12), st.lists(documents, min_size=1, max_size=4))
def test_index_matches_exactly_like_checking_every_query(qs: list[Query], docs: list[Document]) -> None:
    """WatchIndex.match returns exactly the watches whose query matches, as checking each query does."""
    index = WatchIndex({f"w{i}": q for i, q in enumerate(qs)})
    for doc in docs:
        expected = [f"w{i}" for i, q in enumerate(qs) if q.matches(doc)]
        assert index.match(doc) == expected
        assert index.match_exhaustive(prepare(doc)) == expected


@SETTINGS
@given(queries, documents)
def test_not_query_is_the_negation_of_the_query(query: Query, doc: Document) -> None:
    """NOT q matches exactly the documents q does not match."""
    assert Not(query).matches(doc) is (not query.matches(doc))


@SETTINGS
@given(queries, documents)
def test_parsed_not_query_is_the_negation_of_the_query(query: Query, doc: Document) -> None:
    """Parsing "NOT (q)" gives a query matching exactly what q does not."""
    assert parse_query(f"NOT ({query})").matches(doc) is (not query.matches(doc))


@SETTINGS
@given(st.text(max_size=80))
def test_normalisation_is_idempotent(text: str) -> None:
    """Folding twice equals folding once, and re-normalising the words gives the same words."""
    assert fold(fold(text)) == fold(text)
    words = normalise_for_match(text)
    assert normalise_for_match(" ".join(words)) == words
    for word in words:
        assert normalise_for_match(word) == [word]


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_word_query_matches_its_own_text(text: str) -> None:
    """A quoted query of any text with at least one word matches a document holding that text."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if not normalise_for_match(text) or "*" in text or "?" in text:
        return
    assert parse_query(f'"{escaped}"').matches(Document(text=f"before {text} after"))


def _reference_word(pattern: str, word: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, word) is not None


def _reference_spans(query: Query, words: list[str]) -> set[tuple[int, int]]:
    """Occurrences of a positional query in a word list, computed the obvious, slow way."""
    if isinstance(query, Term | Wildcard):
        pattern = query.word if isinstance(query, Term) else query.pattern
        return {(i, i) for i, w in enumerate(words) if _reference_word(pattern, w)}
    if isinstance(query, Phrase):
        n = len(query.words)
        return {
            (i, i + n - 1)
            for i in range(len(words) - n + 1)
            if all(_reference_word(p, w) for p, w in zip(query.words, words[i : i + n], strict=True))
        }
    if isinstance(query, Or):
        return set().union(*(_reference_spans(q, words) for q in query.operands))
    assert isinstance(query, Near)
    out = set()
    for a in _reference_spans(query.left, words):
        for b in _reference_spans(query.right, words):
            if a[1] < b[0] and b[0] - a[1] - 1 <= query.distance:
                out.add((a[0], b[1]))
            elif not query.ordered and b[1] < a[0] and a[0] - b[1] - 1 <= query.distance:
                out.add((b[0], a[1]))
    return out


small_words = st.text(alphabet="abc", min_size=1, max_size=3)
small_patterns = st.text(alphabet="abc*?", min_size=1, max_size=4)
small_leaves = st.one_of(
    small_words.map(Term),
    small_patterns.filter(lambda p: "*" in p or "?" in p).map(Wildcard),
    st.lists(st.one_of(small_words, small_patterns), min_size=2, max_size=3).map(lambda ws: Phrase(tuple(ws))),
)
small_positional = st.recursive(small_leaves, _positional, max_leaves=4)


@SETTINGS
@given(small_positional, st.lists(small_words, max_size=12))
def test_positional_queries_match_like_a_brute_force_reference(query: Query, words: list[str]) -> None:
    """Words, wildcards, phrases, OR and NEAR match exactly when a brute-force search finds an occurrence."""
    doc = Document(text=" ".join(words))
    assert query.matches(doc) is bool(_reference_spans(query, words))
