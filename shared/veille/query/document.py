"""What queries match against: a :class:`Document` and its prepared (tokenised) form."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

from veille.text import fold, normalise_for_match, normalised_words

if TYPE_CHECKING:
    from veille.models import MentionIngested

__all__ = ["SCOPES", "Document", "PreparedDocument", "Scope", "host_suffixes", "normalise_host", "prepare"]

Scope = Literal["default", "title", "text", "url", "author"]
"""Where words are looked for: ``default`` is the title and the text; the others are one field."""

SCOPES: Final[tuple[Scope, ...]] = ("default", "title", "text", "url", "author")

# Positions of the text start after the title plus this gap, so that no phrase or NEAR (whose
# distance is at most MAX_NEAR_DISTANCE) ever spans the end of the title and the start of the text.
TITLE_TEXT_GAP: Final = 10_000

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Document:
    """A mention as the query engine sees it: its text fields and its metadata.

    ``title`` and ``text`` are plain text (HTML already stripped); ``url`` is the permalink;
    ``site`` the publisher's host or name; ``lang`` an ISO 639-1 code (``fr``, ``en``, ``fr-CA``);
    ``source`` the ingestor name (``rss``, ``bluesky``, ``hackernews`` ...).
    """

    text: str = ""
    title: str | None = None
    url: str | None = None
    site: str | None = None
    author: str | None = None
    lang: str | None = None
    source: str | None = None

    @classmethod
    def from_mention(cls, mention: MentionIngested, *, lang: str | None = None) -> Document:
        """Build the document for a mention; ``lang`` (e.g. a detected language) overrides its own."""
        return cls(
            text=mention.text,
            title=mention.title,
            url=str(mention.url) if mention.url is not None else None,
            site=mention.site,
            author=mention.author,
            lang=lang if lang is not None else mention.lang,
            source=mention.source,
        )


def normalise_host(value: str) -> str:
    """Return the lower-case host in a host name or URL (``"https://WWW.LeMonde.fr/x"`` → ``"www.lemonde.fr"``).

    A trailing dot is dropped; a value that is not a host is returned folded.
    """
    value = value.strip()
    if "://" in value:
        value = urlsplit(value).hostname or ""
    else:
        value = value.split("/", 1)[0]
        if ":" in value and value.count(":") == 1:  # host:port
            value = value.split(":", 1)[0]
    return fold(value).strip().rstrip(".")


_SIMPLE_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://([A-Za-z0-9.-]+)(?::[0-9]*)?(?:[/?#]|$)")


def _url_host(url: str) -> str:
    """Return the folded host of a URL, or ``""`` (fast path for the usual ``scheme://host/...``)."""
    url = url.strip()
    simple = _SIMPLE_URL_RE.match(url)
    if simple:
        return simple.group(1).lower().rstrip(".")
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return ""
    return fold(host).rstrip(".") if host else ""


def host_suffixes(host: str) -> list[str]:
    """Return a host and every parent domain of it (``a.b.fr`` → ``["a.b.fr", "b.fr", "fr"]``)."""
    parts = host.split(".")
    return [".".join(parts[i:]) for i in range(len(parts)) if parts[i]]


class PreparedDocument:
    """A :class:`Document` tokenised once, so that many queries can be checked against it cheaply.

    Word positions are computed per scope on first use and cached, as are the results of
    wildcard patterns; build one with :func:`prepare` and pass it to
    :meth:`~veille.query.Query.matches` or :meth:`~veille.query.WatchIndex.match`.
    """

    __slots__ = (
        "_hosts", "_joined_words", "_lang", "_positions", "_site_name", "_source", "_wildcards", "_words",
        "document",
    )  # fmt: skip

    def __init__(self, document: Document) -> None:
        self.document: Final = document
        self._positions: dict[Scope, dict[str, list[int]]] = {}
        self._words: dict[Scope, Collection[str]] = {}
        self._wildcards: dict[tuple[Scope, str], list[int]] = {}
        self._joined_words: dict[Scope, str] = {}
        self._lang: str | None = None
        self._source: str | None = None
        self._hosts: frozenset[str] | None = None
        self._site_name: str | None = None

    @property
    def lang(self) -> str:
        """The folded language code (``fr-ca``), or ``""``."""
        if self._lang is None:
            lang = self.document.lang
            self._lang = fold(lang).strip().replace("_", "-") if lang else ""
        return self._lang

    @property
    def source(self) -> str:
        """The folded source name, or ``""``."""
        if self._source is None:
            source = self.document.source
            self._source = fold(source).strip() if source else ""
        return self._source

    @property
    def site_name(self) -> str:
        """The words of ``site`` joined by spaces (``"Le Monde"`` → ``"le monde"``), or ``""``."""
        if self._site_name is None:
            site = self.document.site
            self._site_name = " ".join(normalise_for_match(site)) if site else ""
        return self._site_name

    @property
    def hosts(self) -> frozenset[str]:
        """Hosts of ``site`` (when it is a host name) and of ``url``, with all their parent domains."""
        if self._hosts is None:
            hosts: set[str] = set()
            site = self.document.site
            if site and " " not in site.strip():
                host = normalise_host(site)
                if "." in host:
                    hosts.update(host_suffixes(host))
            url = self.document.url
            if url:
                url_host = _url_host(url)
                if url_host:
                    hosts.update(host_suffixes(url_host))
            self._hosts = frozenset(hosts)
        return self._hosts

    def words(self, scope: Scope) -> Collection[str]:
        """Return the distinct words of a scope (what a single word and the index's anchors need).

        Cheaper than :meth:`positions` (a set, no position lists), which only phrases, ``NEAR``
        and wildcards need; once the positions are built, their keys serve.
        """
        found = self._words.get(scope)
        if found is None:
            built = self._positions.get(scope)
            if built is not None:
                found = built.keys()
            else:
                doc = self.document
                if scope == "default":
                    found = set(normalised_words(doc.title)) if doc.title else set()
                    if doc.text:
                        found.update(normalised_words(doc.text))
                else:
                    raw = {"title": doc.title, "text": doc.text, "url": doc.url, "author": doc.author}[scope]
                    found = set(normalised_words(raw)) if raw else set()
            self._words[scope] = found
        return found

    def positions(self, scope: Scope) -> dict[str, list[int]]:
        """Return ``{word: [positions]}`` for a scope (positions ascending)."""
        found = self._positions.get(scope)
        if found is None:
            found = self._positions[scope] = self._build(scope)
        return found

    def _build(self, scope: Scope) -> dict[str, list[int]]:
        doc = self.document
        out: dict[str, list[int]] = {}
        get = out.get
        if scope == "default":
            title = normalise_for_match(doc.title) if doc.title else []
            for i, word in enumerate(title):
                found = get(word)
                if found is None:
                    out[word] = [i]
                else:
                    found.append(i)
            offset = len(title) + TITLE_TEXT_GAP if title else 0
            words = normalise_for_match(doc.text) if doc.text else []
        else:
            offset = 0
            raw = {"title": doc.title, "text": doc.text, "url": doc.url, "author": doc.author}[scope]
            words = normalise_for_match(raw) if raw else []
        for i, word in enumerate(words, offset):
            found = get(word)
            if found is None:
                out[word] = [i]
            else:
                found.append(i)
        return out

    def wildcard_positions(
        self, scope: Scope, pattern: str, matcher: Callable[[str], bool], needle: str = ""
    ) -> list[int]:
        """Return the sorted positions of the words of a scope that ``matcher`` accepts (cached by pattern).

        ``needle``, when given, is text that every matching word contains (``" acme"`` for
        ``acme*``, with a space marking a word boundary): a document whose words, joined by spaces,
        do not contain it has no match, which is found without testing each word.
        """
        key = (scope, pattern)
        found = self._wildcards.get(key)
        if found is None:
            found = []
            words = self.positions(scope)
            if not needle or needle in self._joined(scope, words):
                for word, where in words.items():
                    if matcher(word):
                        found.extend(where)
                found.sort()
            self._wildcards[key] = found
        return found

    def _joined(self, scope: Scope, words: dict[str, list[int]]) -> str:
        joined = self._joined_words.get(scope)
        if joined is None:
            joined = self._joined_words[scope] = " " + " ".join(words) + " "
        return joined


def prepare(document: Document | PreparedDocument) -> PreparedDocument:
    """Return the prepared form of a document (itself when it is already prepared)."""
    if isinstance(document, PreparedDocument):
        return document
    return PreparedDocument(document)
