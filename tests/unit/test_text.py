"""Tests of text normalisation: HTML to text, case/accent folding and tokenisation."""

from __future__ import annotations

import pytest

from veille.text import fold, html_to_text, normalise_for_match, normalise_whitespace, tokenize

HTML_CASES = [
    ("plain text", "plain text"),
    ("caf&eacute; &amp; th&#233; &lt;b&gt;", "café & thé <b>"),
    ("<p>Hello <b>wor</b>ld</p>", "Hello world"),
    ("<p>one</p><p>two</p>", "one\ntwo"),
    ("a<br>b<br/>c", "a\nb\nc"),
    ("<ul><li>x</li><li>y</li></ul>", "x\ny"),
    ("before<script>alert('x')</script>after", "beforeafter"),
    ("<style>p { color: red }</style>text", "text"),
    ("<script>var s = '</p><p>';</script>ok", "ok"),
    ("<noscript><img src=x>enable js</noscript>shown", "shown"),
    ("<!-- a comment -->visible", "visible"),
    ("<head><title>t</title></head><body>body</body>", "body"),
    ("<div   class='x'>  lots \t of   space </div>", "lots of space"),
    ("<p>unclosed <b>bold", "unclosed bold"),
    ("<<<>>> < p >", "<<<>>> < p >"),
    ("<a href='javascript:alert(1)'>link</a>", "link"),
    ("nul\x00 and \x1b escape", "nul and escape"),
    ("<script>never closed", ""),
    ("<svg><text>drawn</text></svg>kept", "kept"),
]


@pytest.mark.parametrize(("markup", "expected"), HTML_CASES, ids=[m[:25] for m, _ in HTML_CASES])
def test_html_to_text_keeps_only_visible_text(markup: str, expected: str) -> None:
    """Tags, comments, scripts and styles go; entities are decoded; blocks become line breaks."""
    assert html_to_text(markup) == expected


def test_html_to_text_never_returns_markup_from_tags() -> None:
    """Tags in the input never survive as tags; only escaped text does."""
    text = html_to_text("<img src=x onerror=alert(1)><iframe src='evil'></iframe>&lt;i&gt;")
    assert text == "<i>"
    assert "onerror" not in text


def test_normalise_whitespace_collapses_spaces_and_blank_lines() -> None:
    """Runs of spaces collapse, lines are stripped, and at most one blank line remains."""
    assert normalise_whitespace("  a \u00a0 b \r\n\r\n\r\n\n c  ") == "a b\n\nc"


FOLD_CASES = [
    ("Déçu", "decu"),
    ("DÉÇU", "decu"),
    ("Œuvre", "oeuvre"),
    ("Ærø", "aero"),
    ("Straße", "strasse"),
    ("ﬁnance ﬂux", "finance flux"),
    ("ＡＣＭＥ", "acme"),
    ("ac\u00adme ac\u200bme", "acme acme"),
    ("İstanbul", "istanbul"),
    ("Łódź", "lodz"),
    ("Ελληνικά", "ελληνικα"),
    ("l’entreprise", "l’entreprise"),
    ("ASCII Only", "ascii only"),
]


@pytest.mark.parametrize(("text", "expected"), FOLD_CASES)
def test_fold_removes_case_accents_and_ligatures(text: str, expected: str) -> None:
    """fold() lower-cases, strips accents, expands ligatures and drops invisible characters."""
    assert fold(text) == expected


TOKEN_CASES = [
    ("L'entreprise a DÉÇU ses clients !", ["l", "entreprise", "a", "decu", "ses", "clients"]),
    ("aujourd’hui", ["aujourd", "hui"]),
    ("#Acme @acme_corp", ["acme", "acme", "corp"]),
    ("covid-19, 3.5%", ["covid", "19", "3", "5"]),
    ("e-mail: bob@example.com", ["e", "mail", "bob", "example", "com"]),
    ("東京タワー", ["東", "京", "タ", "ワ", "ー"]),
    ("Москва́ 2024", ["москва", "2024"]),
    ("", []),
    ("... !!! ???", []),
]


@pytest.mark.parametrize(("text", "expected"), TOKEN_CASES)
def test_normalise_for_match_splits_folded_words(text: str, expected: list[str]) -> None:
    """normalise_for_match() yields folded words split on every non-letter, non-digit character."""
    assert normalise_for_match(text) == expected


def test_tokenize_keeps_wildcards_only_when_asked() -> None:
    """Query words keep * and ? as word characters; document words never do."""
    assert tokenize("acme* te?t") == ["acme", "te", "t"]
    assert tokenize("acme* te?t", wildcards=True) == ["acme*", "te?t"]
