"""Pure RSS/Atom logic: targets from the config, feed parsing, entry mapping, new-entry selection.

Nothing here does I/O: :func:`parse_feed` takes the bytes of a response and returns candidate
mentions with the problems found, and :func:`select_new` compares them with the cursor.
:func:`parse_feed` is CPU-bound (feedparser is slow on some documents, quadratic in the
attributes of one element), so the service runs it in a worker process
(:mod:`services.ingest_rss.parsing`), never on the event loop.
"""

from __future__ import annotations

import calendar
import io
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit
from xml.parsers import expat

import feedparser

from veille.config import FeedConfig, GoogleNewsSearch, RssSource, VeilleConfig
from veille.gnews import edition_for
from veille.ingest.cursors import Cursor, cursor_key
from veille.ingest.http import FetchError
from veille.ingest.runner import Target
from veille.ingest.textclean import clean_text
from veille.ingest.urls import canonical_url, host_of, is_http_url, unwrap_redirect
from veille.ingest.xmlsafe import check_xml
from veille.models import MentionIngested, mention_id_for

__all__ = [
    "MAX_ENTRIES",
    "ParsedFeed",
    "check_complexity",
    "feed_targets",
    "google_news_query",
    "google_news_url",
    "is_google_alerts",
    "parse_feed",
    "select_new",
]

SOURCE = "rss"
MAX_ENTRIES = 1000
"""Entries read from one document; the newest are kept, the rest counted as ``too_many_entries``."""
SEEN_MIN = 500
SEEN_MAX = 5000
"""Ids a cursor remembers, beyond the current document's (which it always holds: at most MAX_ENTRIES)."""
MAX_ATTRIBUTES = 500
"""Attributes on one element; real feeds have a handful (namespace declarations included)."""
MAX_DEPTH = 1000
"""Element nesting; real feeds, inline XHTML included, stay in the tens."""
MAX_TEXT = 100_000
_LANG = re.compile(r"^([A-Za-z]{2})(?:[-_].*)?$")


def is_google_alerts(url: str) -> bool:
    """Whether ``url`` is a Google Alerts feed (``/alerts/feeds/<user>/<alert>`` on any host, for tests)."""
    return urlsplit(url).path.startswith("/alerts/feeds/")


def google_news_query(search: GoogleNewsSearch, terms: list[str]) -> str:
    """The ``q`` of a Google News search: the configured one, or the watch's terms joined by OR."""
    if search.q:
        return search.q
    quoted = [f'"{t}"' if " " in t else t for t in (term.replace('"', " ").strip() for term in terms) if t]
    return " OR ".join(quoted)


def google_news_url(base: str, search: GoogleNewsSearch, terms: list[str]) -> str:
    """The Google News RSS search URL for one watch."""
    # The edition is found (or required) when the configuration is read: see veille.gnews.
    ceid = search.ceid or edition_for(search.gl, search.hl) or f"{search.gl.upper()}:{search.hl.split('-')[0].lower()}"
    query = urlencode({"q": google_news_query(search, terms), "hl": search.hl, "gl": search.gl, "ceid": ceid})
    return f"{base}{'&' if '?' in base else '?'}{query}"


def feed_targets(rss: RssSource, config: VeilleConfig, terms_of: Any = None) -> list[Target]:
    """One target per feed and per Google News search of the RSS section.

    ``terms_of(query)`` returns a watch query's positive terms (for Google News ``q``).
    """
    targets: list[Target] = []
    for feed in rss.feeds:
        targets.append(_feed_target(feed, rss))
    for search in rss.google_news:
        watch = config.watch(search.watch)
        terms = terms_of(watch.query) if terms_of is not None and not search.q else []
        if not search.q and not terms:
            terms = [watch.query]
        url = google_news_url(str(rss.google_news_url), search, terms)
        interval = (search.interval or rss.interval).total_seconds()
        targets.append(
            Target(
                key=cursor_key(SOURCE, "google_news", url),
                name=f"google-news:{search.watch}",
                interval=interval,
                watch=search.watch,
                recheck=True,
                params={"url": url, "kind": "google_news"},
            )
        )
    return targets


def _feed_target(feed: FeedConfig, rss: RssSource) -> Target:
    url = str(feed.url)
    alerts = is_google_alerts(url)
    return Target(
        key=cursor_key(SOURCE, "feed", url),
        name=feed.name or host_of(url) or url,
        interval=(feed.interval or rss.interval).total_seconds(),
        watch=feed.watch,
        recheck=alerts and feed.watch is not None,
        params={"url": url, "kind": "google_alerts" if alerts else "feed"},
    )


@dataclass
class ParsedFeed:
    """Candidates from one feed document, and the problems met."""

    mentions: list[MentionIngested]
    rejected: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    title: str | None = None
    newest: datetime | None = None
    problems: list[str] = field(default_factory=list)
    entries: int = 0
    """Entries in the document, before the cap."""


def _lang(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    match = _LANG.match(value.strip())
    return match.group(1).lower() if match else None


def _when(entry: Any) -> tuple[datetime | None, str | None]:
    """Publication time of an entry and, if missing or unreadable, the problem."""
    for parsed_key in ("published_parsed", "updated_parsed"):
        parsed = dict.get(entry, parsed_key)  # not entry.get: feedparser maps updated_parsed with a warning
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC), None
    if dict.get(entry, "published") or dict.get(entry, "updated"):
        return None, "bad_date"
    return None, "no_date"


def check_complexity(body: bytes, *, max_attributes: int = MAX_ATTRIBUTES, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`FetchError` (``unsafe_xml``) for an element with absurdly many attributes or depth.

    A cheap streaming pass (expat, linear) before feedparser, which is quadratic in the attributes
    of one element. Not well-formed documents are checked up to their first error only: the
    parse's time budget is the real bound.
    """
    depth = 0

    def start(name: str, attributes: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if len(attributes) > max_attributes:
            raise FetchError(
                "unsafe_xml",
                f"element <{name[:40]}> has {len(attributes)} attributes (limit {max_attributes}); refused",
                retryable=False,
            )
        if depth > max_depth:
            raise FetchError("unsafe_xml", f"elements nested more than {max_depth} deep; refused", retryable=False)

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    parser = expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(body, True)
    except expat.ExpatError:
        return


def _capped(entries: list[Any], max_entries: int | None) -> Iterator[Any]:
    """The newest ``max_entries`` entries (undated ones ranked after dated ones), in document order."""
    if max_entries is None or len(entries) <= max_entries:
        yield from entries
        return
    oldest = datetime.min.replace(tzinfo=UTC)
    ranked = sorted(range(len(entries)), key=lambda i: (_when(entries[i])[0] or oldest, -i), reverse=True)
    keep = set(ranked[:max_entries])
    for index, entry in enumerate(entries):
        if index in keep:
            yield entry


def parse_feed(
    body: bytes,
    *,
    url: str,
    kind: str = "feed",
    watch: str | None = None,
    now: datetime | None = None,
    max_entries: int | None = MAX_ENTRIES,
) -> ParsedFeed:
    """Parse a feed document safely and map its entries to mentions.

    Raises :class:`FetchError` for a body that is unsafe (entity declarations, absurd attribute
    counts or depth), not XML, or not a feed. Entries without a usable link are rejected
    (``no_link``); entries without a readable date are published without one (``no_date`` /
    ``bad_date``). Only the newest ``max_entries`` entries are read; the others are counted as
    rejected (``too_many_entries``).
    """
    check_xml(body)
    check_complexity(body)
    parsed = feedparser.parse(io.BytesIO(body), response_headers={"content-location": url}, sanitize_html=False)
    if not parsed.get("version") and not parsed.entries:
        error = parsed.get("bozo_exception")
        detail = f": {error}" if error else ""
        raise FetchError("not_a_feed", f"body is XML but not an RSS or Atom feed{detail}", retryable=False)
    result = ParsedFeed(mentions=[])
    if type(parsed.get("bozo_exception")).__name__ == "CharacterEncodingOverride":
        result.repaired["invalid_utf8"] += 1
        result.problems.append(str(parsed.get("bozo_exception")))
    feed_info = parsed.get("feed", {})
    result.title = clean_text(feed_info.get("title"))[0] or None
    feed_lang = _lang(feed_info.get("language"))
    source = {"google_news": "google_news", "google_alerts": "google_alerts"}.get(kind, SOURCE)
    current = now or datetime.now(UTC)
    entries = list(parsed.entries)
    result.entries = len(entries)
    if max_entries is not None and len(entries) > max_entries:
        result.rejected["too_many_entries"] += len(entries) - max_entries
    for entry in _capped(entries, max_entries):
        mention, reason, repairs = _entry_mention(entry, source, kind, watch, feed_lang, current)
        result.repaired.update(repairs)
        if mention is None:
            result.rejected[reason or "invalid"] += 1
            continue
        result.mentions.append(mention)
        if mention.published_at and (result.newest is None or mention.published_at > result.newest):
            result.newest = mention.published_at
    return result


def _entry_mention(
    entry: Any, source: str, kind: str, watch: str | None, feed_lang: str | None, now: datetime
) -> tuple[MentionIngested | None, str | None, Counter[str]]:
    repairs: Counter[str] = Counter()
    link = entry.get("link")
    if not link:
        guid = entry.get("id")
        link = guid if is_http_url(guid) else None
    if not link or not is_http_url(link):
        return None, "no_link", repairs
    link = unwrap_redirect(str(link).strip())
    title, title_html = clean_text(entry.get("title"))
    summary = entry.get("summary")
    contents = entry.get("content") or []
    if contents and isinstance(contents[0], dict) and contents[0].get("value"):
        body_html = contents[0]["value"]
        if not summary or len(body_html) > len(summary):
            summary = body_html
    text, _ = clean_text(summary)
    if len(text) > MAX_TEXT or len(title) > MAX_TEXT:
        text, title = text[:MAX_TEXT], title[:1000]
        repairs["truncated"] += 1
    if title_html:
        repairs["html_stripped"] += 1
    published, date_problem = _when(entry)
    if published is not None and published > now + timedelta(days=1):
        published, date_problem = None, "bad_date"
    if date_problem:
        repairs[date_problem] += 1
    site: str | None = host_of(link)
    if kind == "google_news":
        publisher = entry.get("source") or {}
        name = clean_text(publisher.get("title"))[0] if isinstance(publisher, dict) else ""
        if name:
            site = name
            if title.endswith(f" - {name}"):
                title = title[: -len(name) - 3].rstrip()
            if text.startswith(title):
                text = text[len(title) :].strip()
            if text == name:
                text = ""
    native = entry.get("id") if kind == "google_news" and entry.get("id") else canonical_url(link)
    detail = entry.get("title_detail") or {}
    lang = _lang(detail.get("language") if isinstance(detail, dict) else None) or feed_lang
    author = clean_text(entry.get("author"))[0] or None
    try:
        mention = MentionIngested(
            id=mention_id_for(source, str(native)),
            source=source,
            watch=watch,
            url=link,  # type: ignore[arg-type]
            title=title or None,
            text=text,
            author=author,
            site=site,
            lang=lang,
            published_at=published,
            ingested_at=now,
        )
    except ValueError:
        return None, "invalid", repairs
    return mention, None, repairs


def select_new(
    mentions: list[MentionIngested], cursor: Cursor, *, newest: datetime | None
) -> tuple[list[MentionIngested], Cursor]:
    """The mentions not seen before, and the cursor remembering them (bounded, most recent first).

    The cursor always remembers every id of the current document (at most ``MAX_ENTRIES`` of
    them, see :func:`parse_feed`), so a document bigger than ``SEEN_MAX`` is not republished.
    """
    seen_before: list[str] = [s for s in cursor.get("seen", []) if isinstance(s, str)]
    known = set(seen_before)
    fresh: list[MentionIngested] = []
    current_ids: list[str] = []
    for mention in mentions:
        if mention.id in current_ids:
            continue
        current_ids.append(mention.id)
        if mention.id not in known:
            fresh.append(mention)
    limit = max(len(current_ids), min(SEEN_MAX, max(SEEN_MIN, 3 * len(current_ids))))
    seen = current_ids + [s for s in seen_before if s not in set(current_ids)]
    new_cursor = dict(cursor)
    new_cursor["seen"] = seen[:limit]
    previous = cursor.get("newest")
    best = newest
    if isinstance(previous, str):
        try:
            before = datetime.fromisoformat(previous)
        except ValueError:
            before = None
        if before is not None and (best is None or before > best):
            best = before
    if best is not None:
        new_cursor["newest"] = best.isoformat()
    return fresh, new_cursor
