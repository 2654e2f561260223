"""Pure GDELT logic: the DOC 2.0 query, article mapping, the seen-window cursor."""

from __future__ import annotations

import contextlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from veille.ingest.cursors import Cursor
from veille.ingest.items import MalformedItem, a_type_name, item_mapping, optional_text, type_name
from veille.ingest.textclean import clean_text
from veille.ingest.urls import canonical_url, is_http_url
from veille.models import MentionIngested, mention_id_for

__all__ = [
    "SOURCE",
    "ArticleList",
    "article_mention",
    "gdelt_query",
    "gdelt_time",
    "parse_artlist",
    "parse_seendate",
    "remember",
    "request_params",
]

SOURCE = "gdelt"
OVERLAP = timedelta(minutes=15)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEEN_MAX = 3000

# GDELT names languages in English; the ones veille users meet most, as ISO 639-1.
LANGUAGES = {
    "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "russian": "ru", "arabic": "ar", "chinese": "zh", "japanese": "ja", "korean": "ko",
    "polish": "pl", "turkish": "tr", "swedish": "sv", "norwegian": "no", "danish": "da", "finnish": "fi",
    "greek": "el", "czech": "cs", "romanian": "ro", "hungarian": "hu", "ukrainian": "uk", "catalan": "ca",
}  # fmt: skip
SOURCELANG = {"en": "english", "fr": "french", "de": "german", "es": "spanish", "it": "italian", "pt": "portuguese"}


# A JSON escape as RFC 8259 allows it, or a backslash followed by anything else. GDELT's DOC API
# copies titles from the pages it crawls without escaping them properly: ``\'``, ``\x`` and other
# invalid escapes ("json.decoder.JSONDecodeError: Invalid \escape", alex9smith/gdelt-doc-api#26,
# #28, fixed in that client by PR #47 which blanks each offending character and parses again) and raw
# control characters in strings (abresler/gdeltr2#13, "invalid char in json text").
_ESCAPE = re.compile(r'\\(?:(["\\/bfnrt]|u[0-9A-Fa-f]{4})|(.))', re.DOTALL)
_DECODER = json.JSONDecoder(strict=False)  # strict=False: raw control characters in strings are kept
_ARTICLES = re.compile(r'\{\s*"articles"\s*:\s*\[')
_RECORD_END = re.compile(r"\}\s*(?=,\s*\{|\]|\s*$)")


@dataclass
class ArticleList:
    """A DOC 2.0 ``artlist`` answer read leniently: the articles, the records that could not be read, repairs."""

    articles: list[Any] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    """The text of each article record no repair could make JSON (dead-lettered, the others go on)."""
    repairs: Counter[str] = field(default_factory=Counter)
    bad_utf8: bool = False
    """Whether bytes of the answer were not UTF-8 (replaced, counted as an ``invalid_utf8`` repair)."""


def _fix_escape(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1) is not None else match.group(2)


def parse_artlist(text: str) -> ArticleList:
    """Read an ``artlist`` JSON answer, repairing what GDELT is known to get wrong, record by record.

    A valid answer is read as is. Otherwise invalid escapes lose their backslash (``L\'Oréal`` is
    ``L'Oréal``) and raw control characters are accepted: one ``invalid_json`` repair. A record
    still unreadable after that (an unescaped quote in a title, a record cut short) is kept in
    :attr:`ArticleList.broken` and the records after it are read on. Raises ``ValueError`` when
    the text is not an article list at all.
    """
    out = ArticleList()
    try:
        body = json.loads(text)
    except ValueError:
        body = None
        fixed = _ESCAPE.sub(_fix_escape, text)
        try:
            body = _DECODER.decode(fixed)
        except ValueError:
            out.repairs["invalid_json"] += 1
            return _salvage(fixed, out)
        out.repairs["invalid_json"] += 1
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc
    if not isinstance(body, dict):
        raise ValueError("the answer is not a JSON object")
    articles = body.get("articles", [])
    if not isinstance(articles, list):
        raise ValueError("'articles' is not a list")
    out.articles = articles
    return out


def _salvage(text: str, out: ArticleList) -> ArticleList:
    """Read the records of a broken ``{"articles": [ ... ]}`` one by one (GDELT's records are flat objects)."""
    start = _ARTICLES.match(text.lstrip())
    if start is None:
        raise ValueError("not an article list, and not JSON")
    offset = len(text) - len(text.lstrip())
    pos = offset + start.end()
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            record, pos = _DECODER.raw_decode(text, pos)
            out.articles.append(record)
            continue
        except (ValueError, RecursionError):
            pass
        end = _RECORD_END.search(text, pos + 1)
        stop = end.end() if end is not None else len(text)
        out.broken.append(text[pos:stop].strip())
        pos = stop
    return out


def gdelt_query(terms: list[str], languages: list[str]) -> str:
    """A DOC 2.0 query: phrases quoted, alternatives in ``( ... OR ... )``, ``sourcelang:`` from the watch."""
    quoted = [f'"{t}"' if not t.isalnum() else t for t in (term.replace('"', " ").strip() for term in terms) if t]
    query = quoted[0] if len(quoted) == 1 else "(" + " OR ".join(quoted) + ")"
    langs = [SOURCELANG[code] for code in languages if code in SOURCELANG]
    if len(langs) == 1:
        query += f" sourcelang:{langs[0]}"
    elif langs:
        query += " (" + " OR ".join(f"sourcelang:{name}" for name in langs) + ")"
    return query


def gdelt_time(moment: datetime) -> str:
    """GDELT's ``YYYYMMDDHHMMSS`` in UTC."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def parse_seendate(value: Any) -> datetime | None:
    """``20250612T081500Z`` as a datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def request_params(
    query: str, cursor: Cursor, *, now: datetime, timespan: timedelta, max_records: int
) -> dict[str, str]:
    """Parameters of the article-list request: from the last seen date (less an overlap), else the timespan."""
    since = now - timespan
    last = cursor.get("last_seen")
    if isinstance(last, str):
        with contextlib.suppress(ValueError, OverflowError):
            since = datetime.fromisoformat(last) - OVERLAP
    return {
        "query": query,
        "mode": "artlist",
        "format": "json",
        "maxrecords": str(max_records),
        "sort": "datedesc",
        "startdatetime": gdelt_time(since),
        "enddatetime": gdelt_time(now),
    }


@item_mapping
def article_mention(article: Any, watch: str | None, problems: Counter[str]) -> MentionIngested:
    """Map one article of the list to a mention; raise :class:`MalformedItem` if it has no usable URL.

    A missing or unreadable ``seendate`` is a repair (counted in ``problems``); a title that is not
    a string is malformed.
    """
    if not isinstance(article, dict):
        raise MalformedItem(f"an article is {a_type_name(article)}, expected an object", kind="wrong_type")
    url = article.get("url")
    if not isinstance(url, str) or not is_http_url(url):
        raise MalformedItem(f"'url' is not an http(s) URL ({type_name(url)})", kind="no_link")
    published = parse_seendate(article.get("seendate"))
    if published is None:
        problems["no_date"] += 1
    language = article.get("language")
    lang = LANGUAGES.get(language.strip().lower()) if isinstance(language, str) else None
    domain = article.get("domain")
    return MentionIngested(
        id=mention_id_for(SOURCE, canonical_url(url)),
        source=SOURCE,
        watch=watch,
        url=url,  # type: ignore[arg-type]
        title=clean_text(optional_text(article, "title"))[0] or None,
        text="",
        site=domain if isinstance(domain, str) and domain else None,
        lang=lang,
        published_at=published,
    )


def remember(
    cursor: Cursor, mentions: list[MentionIngested], *, latest: datetime | None = None
) -> tuple[list[MentionIngested], Cursor]:
    """Mentions not seen in the overlap window, and the cursor with them remembered.

    Only dates from 1970 up to ``latest`` (now plus some skew) move ``last_seen``: a far-future
    ``seendate`` would make every later request ask for articles not yet written.
    """
    seen: list[str] = [s for s in cursor.get("seen", []) if isinstance(s, str)]
    known = set(seen)
    fresh = []
    for mention in mentions:
        if mention.id not in known:
            known.add(mention.id)
            fresh.append(mention)
    out = dict(cursor)
    out["seen"] = ([m.id for m in fresh] + seen)[:SEEN_MAX]
    dates = [
        m.published_at for m in mentions if m.published_at and EPOCH <= m.published_at <= (latest or m.published_at)
    ]
    last = cursor.get("last_seen")
    if dates:
        newest = max(dates)
        if not isinstance(last, str) or newest.isoformat() > last:
            out["last_seen"] = newest.isoformat()
    return fresh, out
