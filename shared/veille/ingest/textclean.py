"""Plain text from what sources send: HTML stripped, entities decoded, control characters removed.

This is the ingestors' single entry point for text cleaning; it delegates to :mod:`veille.text`
when that module provides ``html_to_text``, and otherwise uses the small standard-library parser
below.
"""

from __future__ import annotations

import html
import re
import unicodedata
from html.parser import HTMLParser

__all__ = ["clean_text", "decode_utf8", "looks_like_html"]

_TAG = re.compile(r"<\s*/?\s*[A-Za-z][A-Za-z0-9:-]*(\s[^<>]*)?/?\s*>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]{1,31});")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
_BLOCK = frozenset(
    {"p", "br", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote", "pre", "hr"}
)
_SKIP = frozenset({"script", "style", "template", "noscript", "head", "title"})


def looks_like_html(value: str) -> bool:
    """Whether ``value`` contains HTML tags or entities."""
    return bool(_TAG.search(value) or _ENTITY.search(value))


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _html_to_text(value: str) -> str:
    try:
        from veille.text import html_to_text
    except ImportError:
        parser = _TextExtractor()
        parser.feed(value)
        parser.close()
        return "".join(parser.parts)
    return str(html_to_text(value))


def _normalise(value: str) -> str:
    value = "".join(
        ch if ch in "\n\t" or unicodedata.category(ch)[0] != "C" else " " for ch in unicodedata.normalize("NFC", value)
    )
    lines = [_SPACES.sub(" ", line).strip() for line in value.replace("\r", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_text(value: str | None, *, html_allowed: bool = True) -> tuple[str, bool]:
    """Return plain text from ``value`` and whether HTML had to be stripped.

    With ``html_allowed`` false the value is taken as plain text (only entities are decoded and
    control characters removed); tags in it are still stripped and reported, never passed on.
    """
    if not value:
        return "", False
    had_html = looks_like_html(value)
    text = _html_to_text(value) if had_html else value
    if not html_allowed and not had_html:
        text = html.unescape(text)
    return _normalise(text), had_html


def decode_utf8(body: bytes) -> tuple[str, bool]:
    """Decode ``body`` as UTF-8; invalid bytes become U+FFFD. Return the text and whether any were."""
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return body.decode("utf-8", errors="replace"), True
