"""Pure Hacker News logic: the Algolia request parameters, hit mapping, cursor on ``created_at_i``."""

from __future__ import annotations

from collections import Counter
from typing import Any

from veille.ingest.cursors import Cursor
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = ["SOURCE", "advance_cursor", "hit_mention", "search_params"]

SOURCE = "hackernews"
ITEM_URL = "https://news.ycombinator.com/item?id={}"


def search_params(
    terms: list[str], tags: list[str], cursor: Cursor, *, hits_per_page: int, page: int
) -> dict[str, str]:
    """Query parameters of one ``search_by_date`` page.

    All terms are optional words (any of them is enough), so the remote search is broad and the
    local re-check decides; ``created_at_i >= cursor`` skips what was already seen.
    """
    params = {
        "query": " ".join(terms),
        "optionalWords": ",".join(terms),
        "tags": "(" + ",".join(tags) + ")" if len(tags) > 1 else tags[0],
        "hitsPerPage": str(hits_per_page),
        "page": str(page),
    }
    since = cursor.get("created_at_i")
    if isinstance(since, int):
        params["numericFilters"] = f"created_at_i>={since}"
    return params


def hit_mention(hit: dict[str, Any], watch: str | None, problems: Counter[str]) -> MentionIngested | None:
    """Map one Algolia hit (story or comment) to a mention; None (with the reason counted) if unusable."""
    object_id = hit.get("objectID")
    if not isinstance(object_id, str | int) or not str(object_id).strip():
        problems["no_id"] += 1
        return None
    tags = hit.get("_tags") or []
    is_comment = "comment" in tags or hit.get("comment_text") is not None
    published = parse_time(hit.get("created_at_i")) or parse_time(hit.get("created_at"))
    if published is None:
        problems["no_date"] += 1
    if is_comment:
        text, had_html = clean_text(hit.get("comment_text"))
        title = None
        engagement = Engagement(score=_int(hit.get("points")))
    else:
        text, had_html = clean_text(hit.get("story_text"))
        link = hit.get("url")
        if isinstance(link, str) and link:
            text = f"{text}\n{link}".strip()
        title = clean_text(hit.get("title"))[0] or None
        engagement = Engagement(score=_int(hit.get("points")), replies=_int(hit.get("num_comments")))
    del had_html  # HN text fields are HTML by design: stripping them is not a repair
    return MentionIngested(
        id=mention_id_for(SOURCE, str(object_id)),
        source=SOURCE,
        watch=watch,
        url=ITEM_URL.format(object_id),  # type: ignore[arg-type]
        title=title,
        text=text,
        author=hit.get("author") if isinstance(hit.get("author"), str) else None,
        site="news.ycombinator.com",
        published_at=published,
        engagement=engagement,
    )


def advance_cursor(cursor: Cursor, hits: list[dict[str, Any]]) -> Cursor:
    """The cursor after ``hits``: the newest ``created_at_i`` and the ids seen at that second."""
    newest = cursor.get("created_at_i") if isinstance(cursor.get("created_at_i"), int) else None
    at_newest: set[str] = set(cursor.get("ids_at", [])) if newest is not None else set()
    for hit in hits:
        when = hit.get("created_at_i")
        if not isinstance(when, int):
            continue
        object_id = str(hit.get("objectID"))
        if newest is None or when > newest:
            newest, at_newest = when, {object_id}
        elif when == newest:
            at_newest.add(object_id)
    out = dict(cursor)
    if newest is not None:
        out["created_at_i"] = newest
        out["ids_at"] = sorted(at_newest)
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
