"""The console's search page: the archive's query language and filters, highlighted hits, CSV export."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.archive.search import MentionHit, SearchFilters
from veille.durations import parse_duration

__all__ = ["Segment", "csv_rows", "filters_from", "highlight", "query_words"]

EXPORT_LIMIT = 10_000
_OPERATORS = {"and", "or", "not", "near", "to"}
_WORD = re.compile(r"[\w*]+", re.UNICODE)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Segment:
    """A piece of text, and whether it matched a query word (shown in <mark>)."""

    text: str
    match: bool


def moment(value: str) -> datetime | None:
    """``7d`` (that long ago) or an ISO 8601 time (UTC when no offset); None when empty."""
    if not value:
        return None
    try:
        return datetime.now(UTC) - parse_duration(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither a duration (7d, 12h) nor a time (2026-05-01T08:00)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def filters_from(query: Any) -> SearchFilters:
    """The filters of a search form (a mapping of lists or strings); ValueError in words on a bad one."""

    def many(name: str) -> tuple[str, ...]:
        values = query.getall(name, []) if hasattr(query, "getall") else [query.get(name, "")]
        return tuple(v.strip() for v in values if v and v.strip())

    sentiment = many("sentiment")
    for value in sentiment:
        if value not in ("negative", "neutral", "positive"):
            raise ValueError(f"sentiment {value!r} is not negative, neutral or positive")
    return SearchFilters(
        watch=query.get("watch") or None,
        since=moment(query.get("since", "")),
        until=moment(query.get("until", "")),
        sentiment=sentiment,  # type: ignore[arg-type]
        lang=many("lang"),
        source=many("source"),
        site=many("site"),
        story=query.get("story") or None,
    )


def query_words(query: str) -> list[str]:
    """The plain words of a query (fields, operators and quotes dropped), folded, for highlighting."""
    words = []
    for token in _WORD.findall(query):
        if ":" in token or token.lower() in _OPERATORS or len(token.strip("*")) < 2:
            continue
        words.append(token.lower())
    return words


def highlight(text: str, words: list[str], limit: int = 600) -> list[Segment]:
    """``text`` cut to ``limit`` characters, split around the query's words (prefix* matches a prefix)."""
    text = text[:limit]
    if not words:
        return [Segment(text, False)]
    parts = []
    for word in sorted(set(words), key=len, reverse=True):
        stem = re.escape(word.rstrip("*"))
        parts.append(rf"\b{stem}\w*" if word.endswith("*") else rf"\b{stem}\b")
    pattern = re.compile("|".join(parts), re.IGNORECASE | re.UNICODE)
    out: list[Segment] = []
    last = 0
    for found in pattern.finditer(text):
        if found.start() > last:
            out.append(Segment(text[last : found.start()], False))
        out.append(Segment(found.group(0), True))
        last = found.end()
    if last < len(text):
        out.append(Segment(text[last:], False))
    return out


def _cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(str(v) for v in value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


COLUMNS = ("id", "ts", "watches", "source", "site", "lang", "sentiment", "sentiment_score", "title", "text", "url")


def csv_rows(hits: list[MentionHit]) -> str:
    """The hits as CSV text with a header (formula-looking cells neutralised)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for hit in hits:
        writer.writerow([_cell(getattr(hit, column)) for column in COLUMNS])
    return out.getvalue()
