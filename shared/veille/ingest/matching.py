"""Local re-check of candidates with the classifier's query engine, and query translation helpers.

A source that searches remotely (Google Alerts, Google News, HN Algolia, GDELT, Reddit, X, ...)
returns fuzzy candidates; each is checked against the watch's query with :mod:`veille.query`
before it is published, so a stemmed or approximate remote match never becomes a false mention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from veille.config import VeilleConfig, Watch
from veille.models import MentionIngested

__all__ = ["Recheck", "build_recheck", "build_watch_matcher", "positive_terms", "quote_term", "watches_for"]

Recheck = Callable[[str, MentionIngested], bool]


def _document(mention: MentionIngested) -> Any:
    from veille.query import Document

    return Document(
        title=mention.title or "",
        text=mention.text,
        url=str(mention.url) if mention.url else "",
        site=mention.site or "",
        author=mention.author or "",
        lang=mention.lang or "",
        source=mention.source,
    )


def build_recheck(config: VeilleConfig) -> Recheck:
    """A function telling whether a mention really matches the named watch's query."""
    from veille.query import parse_query

    queries = {watch.name: parse_query(watch.query) for watch in config.watches}

    def recheck(watch: str, mention: MentionIngested) -> bool:
        query = queries.get(watch)
        if query is None:
            return False
        return bool(query.matches(_document(mention)))

    return recheck


def build_watch_matcher(
    config: VeilleConfig, source: str, only: Iterable[str] = ()
) -> Callable[[MentionIngested], list[str]]:
    """A function naming the watches (allowing ``source``) a mention matches, for firehose sources."""
    from veille.query import WatchIndex

    index = WatchIndex({watch.name: watch.query for watch in watches_for(config, source, only)})

    def match(mention: MentionIngested) -> list[str]:
        return list(index.match(_document(mention)))

    return match


def positive_terms(query: str, *, wildcards: bool = False) -> list[str]:
    """The words and phrases (as the user wrote them) a document must or may contain to match ``query``.

    Wildcards are left out unless ``wildcards`` is true: most remote searches do not support them,
    and the local re-check catches what a broader remote search returns.
    """
    from veille.query import parse_query

    out: list[str] = []
    for leaf in parse_query(query).positive_terms():
        kind = type(leaf).__name__
        if kind == "Wildcard" and not wildcards:
            continue
        raw = getattr(leaf, "raw", None)
        if raw is None:
            words = getattr(leaf, "words", None)
            raw = " ".join(words) if words else getattr(leaf, "word", None) or getattr(leaf, "pattern", "")
        text = str(raw).replace('"', " ").strip()
        if text and text not in out:
            out.append(text)
    return out


def quote_term(term: str) -> str:
    """A term as a remote search engine expects it: phrases in double quotes."""
    cleaned = term.replace('"', " ").strip()
    return f'"{cleaned}"' if any(ch.isspace() for ch in cleaned) else cleaned


def watches_for(config: VeilleConfig, source: str, only: Iterable[str] = ()) -> list[Watch]:
    """The watches a source should search for: those allowing it, limited to ``only`` if given."""
    wanted = set(only)
    return [
        watch
        for watch in config.watches
        if (not watch.sources or source in watch.sources) and (not wanted or watch.name in wanted)
    ]
