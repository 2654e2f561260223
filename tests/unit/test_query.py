"""Table tests of the watch query language: parsing, matching semantics and the watch index."""

from __future__ import annotations

import dataclasses

import pytest

from veille.models import MentionIngested
from veille.query import (
    And,
    Document,
    Field,
    Filter,
    Near,
    Not,
    Or,
    Phrase,
    QuerySyntaxError,
    Term,
    WatchIndex,
    Wildcard,
    parse_query,
    prepare,
)

D = Document

MATCHES: list[tuple[str, Document, bool]] = [
    # bare words, default AND
    ("acme", D("Acme is down"), True),
    ("acme", D("Globex is down"), False),
    ("acme outage", D("outage at Acme"), True),
    ("acme outage", D("Acme is fine"), False),
    ("acme AND outage", D("acme outage"), True),
    ("acme AND outage", D("acme"), False),
    ("+acme +outage", D("acme outage"), True),
    ("+acme +outage", D("outage"), False),
    # OR
    ("acme OR globex", D("Globex news"), True),
    ("acme OR globex", D("Initech news"), False),
    # NOT and -
    ("acme NOT recipe", D("Acme recipe"), False),
    ("acme NOT recipe", D("Acme outage"), True),
    ("acme -recipe", D("Acme recipe"), False),
    ("NOT spam", D("fine text"), True),
    ("NOT spam", D("buy spam"), False),
    ("acme AND NOT (recipe OR cooking)", D("Acme cooking class"), False),
    # precedence: OR binds tighter than juxtaposition, AND tighter than OR
    ("acme panne OR outage", D("acme outage"), True),
    ("acme panne OR outage", D("outage"), False),
    ("acme AND panne OR outage", D("outage"), True),
    ("(acme OR globex) (panne OR outage)", D("globex panne"), True),
    ("(acme OR globex) (panne OR outage)", D("globex news"), False),
    # case and accents
    ("déçu", D("Je suis decu"), True),
    ("decu", D("Je suis DÉÇU"), True),
    ("DÉÇU", D("déçue"), False),
    ("oeuvre", D("Une Œuvre"), True),
    ("strasse", D("Hauptstraße"), False),
    ("hauptstrasse", D("Hauptstraße"), True),
    ("finance", D("ﬁnance"), True),
    ("acme", D("ac\u00adme hidden by a soft hyphen"), True),
    # whole words and wildcards
    ("acme", D("the acmeist movement"), False),
    ("acme*", D("the acmeist movement"), True),
    ("acme*", D("acme"), True),
    ("*corp", D("megacorp"), True),
    ("*corp", D("corporate"), False),
    ("te?t", D("text"), True),
    ("te?t", D("tet"), False),
    ("te?t", D("teest"), False),
    ("a*e", D("acme"), True),
    ("acme", D("#Acme @acme"), True),
    ("acme", D("#AcmeFail"), False),
    ("acme*", D("#AcmeFail"), True),
    # phrases
    ('"acme corp"', D("Acme Corp said"), True),
    ('"acme corp"', D("Acme, Corp. said"), True),
    ('"acme corp"', D("Corp Acme said"), False),
    ('"acme corp"', D("Acme big Corp"), False),
    ('"acme corp"', D("Corp", title="Acme"), False),
    ('"acme corp"', D("nothing", title="Acme corp"), True),
    ('"acme *"', D("acme anything"), True),
    ('"acme *"', D("acme"), False),
    ("l'entreprise", D("L’entreprise Acme"), True),
    ("l'entreprise", D("la entreprise"), False),
    ("covid-19", D("covid 19 cases"), True),
    ("covid19", D("covid-19 cases"), False),
    # NEAR
    ("acme NEAR/2 outage", D("acme had an outage"), True),
    ("acme NEAR/1 outage", D("acme had an outage"), False),
    ("acme NEAR/0 outage", D("outage acme"), True),
    ("acme NEAR/2 outage", D("outage, said acme"), True),
    ("acme NEAR/2f outage", D("outage, said acme"), False),
    ("acme NEAR/2f outage", D("acme had an outage"), True),
    ('acme NEAR/1 "big outage"', D("a big outage at acme"), True),
    ("(acme OR globex) NEAR/1 outage", D("globex outage"), True),
    ("acme NEAR/3 acme", D("acme"), False),
    ("acme NEAR/3 acme", D("acme and acme"), True),
    ("acme NEAR/5 outage", D("acme", title="outage"), False),
    ("acme NEAR/1 b NEAR/1 c", D("acme b x c"), True),
    ("acme NEAR/1 b NEAR/1 c", D("acme b x x c"), False),
    ("x OR acme NEAR/1 outage", D("x"), True),
    ("x OR acme NEAR/1 outage", D("outage, acme"), True),
    ('"acme outage"~2', D("outage hit acme"), True),
    ('"acme outage"~0', D("outage hit acme"), False),
    ("acme* NEAR/1 outage", D("acmeist outage"), True),
    # text fields
    ("title:acme", D("x", title="Acme news"), True),
    ("title:acme", D("acme", title="news"), False),
    ("text:acme", D("acme", title="news"), True),
    ("text:acme", D("x", title="acme"), False),
    ('title:"acme corp"', D("x", title="Acme Corp"), True),
    ("title:(acme OR globex)", D("x", title="Globex"), True),
    ("title:(acme NEAR/1 outage)", D("x", title="outage at acme"), True),
    ("url:economie", D("x", url="https://www.lemonde.fr/economie/a.html"), True),
    ("url:economie", D("economie"), False),
    ('url:"lemonde.fr/economie"', D("x", url="https://www.lemonde.fr/economie/a"), True),
    ('author:"jean dupont"', D("x", author="Jean Dupont"), True),
    ("author:jack", D("x", author="@jack.bsky.social"), True),
    ("author:jack", D("jack", author="bob"), False),
    # filters
    ("lang:fr", D("x", lang="fr"), True),
    ("lang:fr", D("x", lang="fr-CA"), True),
    ("lang:fr", D("x", lang="FR"), True),
    ("lang:fr", D("x", lang="en"), False),
    ("lang:fr", D("x"), False),
    ("lang:fr-ca", D("x", lang="fr"), False),
    ("lang:(fr OR en) acme", D("acme", lang="en"), True),
    ("NOT lang:fr", D("x", lang="en"), True),
    ("source:hackernews", D("x", source="hackernews"), True),
    ("source:hackernews", D("x", source="rss"), False),
    ("source:mastodon*", D("x", source="mastodon_social"), True),
    ("site:lemonde.fr", D("x", site="lemonde.fr"), True),
    ("site:lemonde.fr", D("x", site="www.lemonde.fr"), True),
    ("site:lemonde.fr", D("x", url="https://www.lemonde.fr/a"), True),
    ("site:lemonde.fr", D("x", url="https://notlemonde.fr/a"), False),
    ("site:lemonde.fr", D("x", url="https://lemonde.fr.evil.com/a"), False),
    ("site:www.lemonde.fr", D("x", url="https://lemonde.fr/a"), False),
    ('site:"https://www.LeMonde.fr/"', D("x", url="https://www.lemonde.fr/a"), True),
    ('site:"Le Monde"', D("x", site="Le Monde"), True),
    ("site:*.lemonde.fr", D("x", site="www.lemonde.fr"), True),
    ("site:*.lemonde.fr", D("x", site="lemonde.fr"), False),
]


@pytest.mark.parametrize(("query", "doc", "expected"), MATCHES, ids=[f"{q}|{d.text[:20]}" for q, d, _ in MATCHES])
def test_query_matches_table(query: str, doc: Document, expected: bool) -> None:
    """Each operator, field and normalisation rule matches exactly the documents it should."""
    assert parse_query(query).matches(doc) is expected


PARSES = [
    ("acme outage", And((Term("acme"), Term("outage")))),
    ("acme OR globex", Or((Term("acme"), Term("globex")))),
    ("acme panne OR outage", And((Term("acme"), Or((Term("panne"), Term("outage")))))),
    ("a AND b OR c", Or((And((Term("a"), Term("b"))), Term("c")))),
    ("-spam", Not(Term("spam"))),
    ("Déçu", Term("decu")),
    ('"Acme Corp"', Phrase(("acme", "corp"))),
    ("l'entreprise", Phrase(("l", "entreprise"))),
    ("acme*", Wildcard("acme*")),
    ("a NEAR/5 b", Near(Term("a"), Term("b"), 5)),
    ("a NEAR/5f b", Near(Term("a"), Term("b"), 5, ordered=True)),
    ("a near/5 b", Near(Term("a"), Term("b"), 5)),
    ("a OR b NEAR/3 c", Or((Term("a"), Near(Term("b"), Term("c"), 3)))),
    ("a AND b NEAR/3 c", And((Term("a"), Near(Term("b"), Term("c"), 3)))),
    ("a NEAR/1 b NEAR/2 c", Near(Near(Term("a"), Term("b"), 1), Term("c"), 2)),
    ('"a b c"~2', Near(Near(Term("a"), Term("b"), 2), Term("c"), 2)),
    ("title:acme", Field("title", Term("acme"))),
    ("TITLE:acme", Field("title", Term("acme"))),
    ("lang:FR", Filter("lang", "fr")),
    ("lang:(fr OR en)", Or((Filter("lang", "fr"), Filter("lang", "en")))),
    ('site:"https://WWW.Lemonde.fr/x"', Filter("site", "www.lemonde.fr")),
    ('"a b"~', Near(Term("a"), Term("b"), 1)),
    ("a (b OR (c OR d))", And((Term("a"), Or((Term("b"), Term("c"), Term("d")))))),
]


@pytest.mark.parametrize(("query", "tree"), PARSES, ids=[q for q, _ in PARSES])
def test_parse_builds_the_expected_tree(query: str, tree: object) -> None:
    """Queries parse into the documented tree: default AND, precedence, NEAR binding, fields."""
    assert parse_query(query) == tree


ERRORS = [
    ("", 0, "empty query"),
    ("   ", 0, "empty query"),
    ("acme AND", 8, "ends too early"),
    ("AND acme", 0, "AND"),
    ("acme AND AND outage", 9, "AND"),
    ("(acme OR globex", 0, "unclosed parenthesis"),
    ("acme OR globex)", 14, "unmatched closing parenthesis"),
    ('acme "big outage', 5, "unterminated phrase"),
    ("foo:bar", 0, "unknown field 'foo'"),
    ("acme https://x.com", 5, "quote it"),
    ("acme~2", 4, "fuzzy"),
    ("acme^2", 4, "boost"),
    ("acme /ac.e/", 5, "regular expressions"),
    ("date:[1 TO 5]", 5, "ranges"),
    ("acme && outage", 5, "use AND, OR or NOT"),
    ("acme !outage", 5, "use AND, OR or NOT"),
    ("NEAR/5 outage", 0, "on its left"),
    ("acme NEAR/5", 5, "on its right"),
    ("acme NEAR/5 -outage", 5, "on its right"),
    ("acme NEAR outage", 5, "NEAR/n"),
    ("acme NEAR/500 outage", 5, "at most 100"),
    ("acme NEAR/5 title:outage", 12, "title:(a NEAR/5 b)"),
    ("acme NEAR/5 (a AND b)", 12, "NEAR operands"),
    ('""', 0, "no letters or digits"),
    ("acme ++", 7, "ends too early"),
    ("acme )(", 5, "unmatched closing parenthesis"),
    ("acme ()", 6, "unexpected ')'"),
    ("title:(acme lang:fr)", 12, "inside field"),
    ("'acme'", 0, "double quotes"),
    ('"acme outage"~1.5', 13, "whole number"),
    ("site:https://lemonde.fr", 5, "quote URLs"),
    ("(" * 60 + "a" + ")" * 60, 50, "nested"),
]


@pytest.mark.parametrize(("query", "position", "fragment"), ERRORS, ids=[q[:30] or "empty" for q, _, _ in ERRORS])
def test_syntax_errors_name_the_position(query: str, position: int, fragment: str) -> None:
    """Every unsupported or malformed query raises QuerySyntaxError pointing at the mistake."""
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query(query)
    assert fragment in caught.value.message
    assert caught.value.position == position
    assert caught.value.query == query


def test_syntax_error_renders_a_caret_under_the_mistake() -> None:
    """QuerySyntaxError.pointer() shows the query and a caret at the faulty character."""
    with pytest.raises(QuerySyntaxError) as caught:
        parse_query("acme AND AND outage")
    assert caught.value.pointer() == "acme AND AND outage\n         ^"
    assert "(at character 10)" in str(caught.value)


def test_rendered_queries_parse_back_to_equal_queries() -> None:
    """str(query) is canonical syntax that parses back to the same tree."""
    for query, _ in PARSES:
        parsed = parse_query(query)
        assert parse_query(str(parsed)) == parsed


def test_positive_terms_lists_what_a_remote_search_can_use() -> None:
    """positive_terms() keeps the searched words and phrases, skipping negations, metadata and url/author."""
    query = parse_query('(Acme OR "Acme Corp") déçu* NOT recette lang:fr url:x author:y title:globex')
    terms = query.positive_terms()
    assert terms == (Term("acme"), Phrase(("acme", "corp")), Wildcard("decu*"), Term("globex"))
    assert [t.raw for t in terms] == ["Acme", "Acme Corp", "déçu*", "globex"]


def test_double_negation_counts_as_positive() -> None:
    """A word under two NOTs is a positive term again."""
    assert parse_query("NOT (NOT acme)").positive_terms() == (Term("acme"),)


def test_query_nodes_are_immutable_and_hashable() -> None:
    """Parsed queries are frozen values usable as dict keys."""
    query = parse_query("acme OR globex")
    with pytest.raises(dataclasses.FrozenInstanceError):
        query.operands = ()  # type: ignore[attr-defined,misc]
    assert {query: 1}[parse_query("acme OR globex")] == 1


def test_invalid_trees_are_rejected_at_construction() -> None:
    """Building a NEAR over an AND, or nesting fields, raises ValueError."""
    with pytest.raises(ValueError, match="NEAR operands"):
        Near(And((Term("a"), Term("b"))), Term("c"), 2)
    with pytest.raises(ValueError, match="nested"):
        Field("title", Field("text", Term("a")))
    with pytest.raises(ValueError):
        Term("acme*")


def test_document_from_mention_copies_fields_and_overrides_language() -> None:
    """Document.from_mention takes the mention's fields, with a detected language overriding its own."""
    mention = MentionIngested(
        id="rss:1",
        source="rss",
        url="https://www.lemonde.fr/a",  # type: ignore[arg-type]
        title="Acme",
        text="déçu",
        author="Jean",
        site="lemonde.fr",
        lang="en",
    )
    doc = Document.from_mention(mention, lang="fr")
    assert doc == Document("déçu", "Acme", "https://www.lemonde.fr/a", "lemonde.fr", "Jean", "fr", "rss")
    assert parse_query("decu lang:fr site:lemonde.fr title:acme source:rss").matches(doc)


def test_prepared_document_can_be_shared_between_queries() -> None:
    """A PreparedDocument gives the same answers as the Document it wraps."""
    doc = D("Acme outage in Paris", lang="fr")
    prepared = prepare(doc)
    assert prepare(prepared) is prepared
    for query in ["acme", "paris NEAR/2 outage", "lang:en", "acm*"]:
        assert parse_query(query).matches(prepared) is parse_query(query).matches(doc)


WATCHES = {
    "acme": 'acme OR "acme corp"',
    "acme-fr-negative": "acme (déçu OR panne) lang:fr",
    "not-spam": "NOT spam",
    "globex": "globex* -recipe",
    "lemonde": "site:lemonde.fr",
    "leading-wildcard": "*corp",
    "url": "url:economie",
}


def test_watch_index_returns_matching_watches_in_given_order() -> None:
    """WatchIndex.match names every matching watch, in configuration order."""
    index = WatchIndex(WATCHES)
    doc = D("Panne géante chez ACME et Globexcorp", lang="fr", url="https://www.lemonde.fr/economie/x")
    assert index.match(doc) == [
        "acme", "acme-fr-negative", "not-spam", "globex", "lemonde", "leading-wildcard", "url"
    ]  # fmt: skip
    assert index.match(D("spam about nothing")) == []
    assert index.match(D("a recipe from Globex")) == ["not-spam"]


def test_watch_index_only_checks_candidate_watches() -> None:
    """Only anchored watches sharing a key with the document, plus unanchored ones, are candidates."""
    index = WatchIndex(WATCHES)
    stats = index.stats()
    assert (stats.watches, stats.always_checked) == (7, 2)  # NOT spam, *corp
    names = index.names
    candidates = {names[i] for i in index.candidates(D("nothing relevant here"))}
    assert candidates == {"not-spam", "leading-wildcard"}


def test_watch_index_agrees_with_checking_every_query() -> None:
    """match() and match_exhaustive() agree on a few hand-picked documents."""
    index = WatchIndex(WATCHES)
    docs = [
        D("acme corp", lang="fr"),
        D("Acme déçu", lang="fr-CA"),
        D("globex recipe"),
        D("x", site="www.lemonde.fr"),
        D("megacorp spam"),
    ]
    for doc in docs:
        assert index.match(doc) == index.match_exhaustive(doc)


def test_watch_index_reports_bad_queries() -> None:
    """A watch query that does not parse raises QuerySyntaxError when the index is built."""
    with pytest.raises(QuerySyntaxError):
        WatchIndex({"bad": "acme AND"})


def test_watch_index_exposes_parsed_queries() -> None:
    """WatchIndex.query returns the parsed query of a named watch."""
    index = WatchIndex({"a": "acme", "b": parse_query("globex")})
    assert index.query("b") == Term("globex")
    assert len(index) == 2
