"""Text normalisation shared by matching, near-duplicate detection and display.

Three steps, each usable on its own:

* :func:`html_to_text` turns untrusted HTML into plain text: entities decoded, tags removed,
  the content of ``script``/``style`` (and other non-content elements) dropped, block elements
  turned into line breaks so words never run together.
* :func:`fold` folds case and accents: NFKD compatibility decomposition (so ligatures such as
  ``ﬁ`` and full-width letters become plain letters), Unicode case folding, removal of combining
  marks and invisible format characters (zero-width spaces, soft hyphens), and a few letters that
  do not decompose (``œ`` → ``oe``, ``æ`` → ``ae``, ``ß`` → ``ss``, ``ø`` → ``o``, ``ł`` → ``l`` ...).
  ``"Déçu"``, ``"DECU"`` and ``"décu"`` all fold to ``"decu"``.
* :func:`tokenize` splits folded text into words: maximal runs of Unicode letters and digits.
  Everything else separates words, including apostrophes (so the French elision
  ``"l'entreprise"`` gives ``["l", "entreprise"]`` and ``"aujourd'hui"`` gives
  ``["aujourd", "hui"]``), hyphens, underscores, ``#`` and ``@`` (``"#Acme"`` gives ``["acme"]``).
  Chinese and Japanese characters, which are written without spaces, are one token each.

:func:`normalise_for_match` is ``tokenize(fold(text))``; queries and documents both go through it,
which is what makes matching case-, accent- and punctuation-insensitive in the same way on
both sides.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from html.parser import HTMLParser

__all__ = [
    "fold",
    "html_to_text",
    "normalise_for_match",
    "normalise_whitespace",
    "normalised_words",
    "tokenize",
]

# --------------------------------------------------------------------------------------------
# HTML to text
# --------------------------------------------------------------------------------------------

# Elements whose content is never shown as text.
_DROPPED_ELEMENTS = frozenset(
    {"script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "canvas"}
)
# Elements that start a new line (so "<p>a</p><p>b</p>" gives "a\nb", not "ab").
_BLOCK_ELEMENTS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr",
        "li", "main", "nav", "ol", "p", "pre", "section", "table", "tr", "td", "th", "ul", "title",
        "caption", "summary", "details",
    }
)  # fmt: skip
_VOID_ELEMENTS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source",
     "track", "wbr"}
)  # fmt: skip

# C0/C1 control characters except tab and newline; they have no business in text.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HSPACE_RE = re.compile(r"[^\S\n]+")
_MANY_NEWLINES_RE = re.compile(r"\n{3,}")
_BLANK_LINES_RE = re.compile(r"\n{2,}")


class _TextExtractor(HTMLParser):
    """Collect the visible text of an HTML fragment."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._dropped_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_ELEMENTS:
            self._dropped_depth += 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")
        elif tag not in _VOID_ELEMENTS:
            # Inline elements: no separator ("<b>ac</b>me" is one word), like a browser.
            pass

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_ELEMENTS:
            if self._dropped_depth:
                self._dropped_depth -= 1
        elif tag in _BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._dropped_depth:
            self.parts.append(data)


def normalise_whitespace(text: str) -> str:
    """Collapse runs of spaces, drop control characters and keep at most one blank line.

    Each line is stripped; runs of horizontal whitespace (including non-breaking spaces) become a
    single space; three or more line breaks become two. Leading and trailing whitespace is removed.
    """
    text = _CONTROL_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _HSPACE_RE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _MANY_NEWLINES_RE.sub("\n\n", text).strip()


def html_to_text(markup: str) -> str:
    """Return the visible text of untrusted HTML ``markup`` as plain text.

    Entities are decoded (``&eacute;`` → ``é``), tags and comments removed, the content of
    ``script``, ``style``, ``noscript``, ``template``, ``head``, ``svg`` and similar elements dropped,
    block elements (``p``, ``div``, ``br``, ``li`` ...) turned into single line breaks, and
    whitespace normalised (see :func:`normalise_whitespace`). Never raises on malformed HTML.

    The result is *text*: an encoded ``&lt;script&gt;`` comes back as the characters
    ``<script>``, which whoever renders it must escape like any other text.
    """
    if "<" not in markup:
        if "&" in markup:
            markup = html.unescape(markup)
        return normalise_whitespace(markup)
    parser = _TextExtractor()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # pragma: no cover - HTMLParser is lenient; belt and braces for odd inputs
        return normalise_whitespace(re.sub(r"<[^>]*>", " ", html.unescape(markup)))
    return _BLANK_LINES_RE.sub("\n", normalise_whitespace("".join(parser.parts)))


# --------------------------------------------------------------------------------------------
# Case and accent folding
# --------------------------------------------------------------------------------------------

# Letters that NFKD does not decompose but that readers treat as letter + accent or as a ligature.
_SPECIAL_LETTERS = {
    "œ": "oe",
    "æ": "ae",
    "ß": "ss",
    "ø": "o",
    "đ": "d",
    "ð": "d",
    "þ": "th",
    "ł": "l",
    "ħ": "h",
    "ı": "i",
    "ŀ": "l",
    "ĸ": "k",
    "ſ": "s",
}


_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})  # combining marks, enclosing marks, format chars
_char_folds: dict[str, str] = {}


def _fold_char(char: str) -> str:
    """Return what a non-ASCII character of NFKD-decomposed, case-folded text becomes."""
    found = _char_folds.get(char)
    if found is None:
        dropped = unicodedata.category(char) in _DROPPED_CATEGORIES
        found = "" if dropped else _SPECIAL_LETTERS.get(char, char)
        if len(_char_folds) < 100_000:  # bounded: hostile text cannot grow it without limit
            _char_folds[char] = found
    return found


def fold(text: str) -> str:
    """Fold case and accents so that equivalent spellings compare equal.

    ``fold("Déçu")`` and ``fold("DECU")`` are both ``"decu"``; ``fold("Œuvre")`` is ``"oeuvre"``;
    ``fold("Straße")`` is ``"strasse"``; ``fold("ﬁnance")`` is ``"finance"``. Invisible characters
    that could split or hide a word (zero-width space, soft hyphen, joiners) are removed.
    Punctuation and spacing are kept; :func:`tokenize` deals with them. ``fold`` is idempotent.
    """
    if text.isascii():
        return text.lower()
    # Case folding can produce new decomposable characters (e.g. "İ" → "i̇"): decompose again.
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", text).casefold())
    # Replace each distinct non-ASCII character at most once (texts hold few distinct ones).
    for char in set(text):
        if char > "\x7f":
            folded = _fold_char(char)
            if folded != char:
                text = text.replace(char, folded)
    return text


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------

# Scripts written without spaces between words: one token per character.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_WORD_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_ASCII_WORD_RE = re.compile(r"[a-z0-9]+")
# Query words may also contain the wildcards "*" and "?".
_PATTERN_RE = re.compile(rf"[{_CJK}]|(?:[^\W_{_CJK}]|[*?])+")


def tokenize(folded: str, *, wildcards: bool = False) -> list[str]:
    """Split text (normally already :func:`fold`-ed) into words.

    A word is a maximal run of Unicode letters and digits; every other character separates words
    (apostrophes included: ``"l'entreprise"`` → ``["l", "entreprise"]``). Chinese and Japanese
    characters are one word each. With ``wildcards=True`` (used for query words) ``*`` and ``?``
    count as word characters, so ``"acme*"`` stays one pattern.
    """
    if wildcards:
        return _PATTERN_RE.findall(folded)
    if folded.isascii():
        return _ASCII_WORD_RE.findall(folded.lower())
    return _WORD_RE.findall(folded)


def normalise_for_match(text: str) -> list[str]:
    """Return the folded words of ``text``: the unit of every match (``tokenize(fold(text))``).

    ``normalise_for_match("L'entreprise a DÉÇU ses clients !")`` is
    ``["l", "entreprise", "a", "decu", "ses", "clients"]``. Applying it to the words it
    returns gives back the same words (it is idempotent).

    The last few results are remembered: the classifier normalises the same mention text for
    matching, story hashing and surge terms, one after the other.
    """
    return list(_normalised(text))


def normalised_words(text: str) -> tuple[str, ...]:
    """:func:`normalise_for_match` as a tuple, shared with the next callers (no copy): do not rely on identity."""
    return _normalised(text)


@functools.lru_cache(maxsize=8)
def _normalised(text: str) -> tuple[str, ...]:
    folded = fold(text)
    if folded.isascii():
        return tuple(_ASCII_WORD_RE.findall(folded))
    return tuple(_WORD_RE.findall(folded))
