"""Refuse dangerous or non-XML bodies before any feed parser sees them.

feedparser alone expands entities; an entity-expansion bomb ("billion laughs") or an external
entity would blow up memory or read local files. :func:`check_xml` runs the document through
defusedxml first and refuses any DTD entity declaration or external reference, and anything that
is not XML at all (an HTML error page, JSON, binary noise).
"""

from __future__ import annotations

import re
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from veille.ingest.http import FetchError

__all__ = ["check_xml"]

_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"


def check_xml(body: bytes) -> None:
    """Raise :class:`FetchError` (``unsafe_xml`` or ``not_xml``) unless ``body`` is a safe XML document.

    A document that is XML but not well-formed (a stray ``&`` in a title, say) is let through:
    feedparser recovers from those, and without entity declarations there is nothing to expand.
    """
    head = body.lstrip()
    if head.startswith(_BOM):
        head = head[3:].lstrip()
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16: let the XML parser judge it
        head = b"<"
    if not head.startswith(b"<"):
        preview = body[:40].decode("utf-8", errors="replace")
        raise FetchError("not_xml", f"body is not XML (starts with {preview!r})", retryable=False)
    if _ENTITY_DECL.search(body):
        raise FetchError(
            "unsafe_xml", "XML declares entities (possible entity-expansion bomb); refused", retryable=False
        )
    try:
        root = SafeET.fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise FetchError("unsafe_xml", f"unsafe XML refused: {type(exc).__name__}", retryable=False) from exc
    except ParseError:
        if head[:200].lower().lstrip().startswith((b"<!doctype html", b"<html")):
            raise FetchError("not_xml", "body is an HTML page, not a feed", retryable=False) from None
        return
    tag = root.tag.rsplit("}", 1)[-1].lower() if isinstance(root.tag, str) else ""
    if tag == "html":
        raise FetchError("not_xml", "body is an HTML page, not a feed", retryable=False)
