"""Plain text from what sources send: HTML stripped, entities decoded, control characters removed.

This is the ingestors' single entry point for text cleaning; HTML goes through
:func:`veille.text.html_to_text`, shared with matching and display.
"""

from __future__ import annotations

import html
import re
import unicodedata

from veille.text import html_to_text

__all__ = ["clean_text", "decode_utf8", "looks_like_html"]

_TAG = re.compile(r"<\s*/?\s*[A-Za-z][A-Za-z0-9:-]*(\s[^<>]*)?/?\s*>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]{1,31});")
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def looks_like_html(value: str) -> bool:
    """Whether ``value`` contains HTML tags or entities."""
    return bool(_TAG.search(value) or _ENTITY.search(value))


def _html_to_text(value: str) -> str:
    return html_to_text(value)


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
