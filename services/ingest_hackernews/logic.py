"""Pure Hacker News logic: the Algolia request parameters, hit mapping, cursor on ``created_at_i``."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

from veille.ingest.cursors import Cursor
from veille.ingest.items import MalformedItem, a_type_name, item_mapping, optional_text, type_name
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = ["SOURCE", "advance_cursor", "hit_mention", "search_params"]

SOURCE = "hackernews"
ITEM_URL = "https://news.ycombinator.com/item?id={}"
MAX_UNIX_TIME = 253402300799  # 9999-12-31T23:59:59Z


def search_params(
    terms: list[str], tags: list[str], cursor: Cursor, *, hits_per_page: int, page: int
) -> dict[str, str]:
    """Query parameters of one ``search_by_date`` page.

    All terms are optional words (any of them is enough), so the remote search is broad and the
    local re-check decides; ``created_at_i >= cursor`` skips what was already seen.

    Checked against HN Search's source (github.com/algolia/hn-search): its API controller forwards
    every query parameter to the Algolia index unchanged (``params.to_param``; only ``action``,
    ``controller`` and ``format`` are removed, ``advancedSyntax`` and ``analytics`` defaulted), and its
    API page points to Algolia's parameter list as "the complete list of search parameters"; so
    ``optionalWords`` reaches Algolia and one query per watch is enough (no query per term). Two
    Algolia limits apply (algolia.com/doc/api-reference/api-parameters/optionalWords): with four or
    more optional words, records past the first 1,000 must match more of them; and Algolia serves at
    most 1,000 hits of a query (paginationLimitedTo). max_pages x hits_per_page stays under that by
    default (5 x 100); a poll that does not reach the cursor is counted in
    veille_source_backlog_truncated_total.
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


@item_mapping
def hit_mention(hit: Any, watch: str | None, problems: Counter[str]) -> MentionIngested:
    """Map one Algolia hit (story or comment) to a mention; raise :class:`MalformedItem` if it cannot be.

    A missing date is a repair (counted in ``problems``); a wrong-typed id, text or title is malformed.
    """
    if not isinstance(hit, dict):
        raise MalformedItem(f"a hit is {a_type_name(hit)}, expected an object", kind="wrong_type")
    object_id = hit.get("objectID")
    if isinstance(object_id, bool) or not isinstance(object_id, str | int) or not str(object_id).strip():
        raise MalformedItem(f"'objectID' is missing or not an id ({type_name(object_id)})", kind="no_id")
    object_id = str(object_id).strip()
    raw_tags = hit.get("_tags")
    tags = [t for t in raw_tags if isinstance(t, str)] if isinstance(raw_tags, list) else []
    comment_text = optional_text(hit, "comment_text")
    is_comment = "comment" in tags or comment_text is not None
    published = parse_time(hit.get("created_at_i")) or parse_time(hit.get("created_at"))
    if published is None:
        problems["no_date"] += 1
    if is_comment:
        text, had_html = clean_text(comment_text)
        title = None
        engagement = Engagement(score=_int(hit.get("points")))
    else:
        text, had_html = clean_text(optional_text(hit, "story_text"))
        link = optional_text(hit, "url")
        if link:
            text = f"{text}\n{link}".strip()
        title = clean_text(optional_text(hit, "title"))[0] or None
        engagement = Engagement(score=_int(hit.get("points")), replies=_int(hit.get("num_comments")))
    del had_html  # HN text fields are HTML by design: stripping them is not a repair
    return MentionIngested(
        id=mention_id_for(SOURCE, object_id),
        source=SOURCE,
        watch=watch,
        url=ITEM_URL.format(quote(object_id, safe="")),  # type: ignore[arg-type]
        title=title,
        text=text,
        author=hit.get("author") if isinstance(hit.get("author"), str) else None,
        site="news.ycombinator.com",
        published_at=published,
        engagement=engagement,
    )


def advance_cursor(cursor: Cursor, hits: list[dict[str, Any]], *, latest: int | None = None) -> Cursor:
    """The cursor after ``hits``: the newest ``created_at_i`` and the ids seen at that second.

    Malformed hits count too (the cursor moves past them), but a ``created_at_i`` that is not a
    Unix time up to ``latest`` (a far-future or negative one) never moves it: that would skip
    every real hit from then on.
    """
    newest = cursor.get("created_at_i") if _unix_time(cursor.get("created_at_i"), latest) else None
    saved = cursor.get("ids_at")
    at_newest = (
        {str(i) for i in saved if isinstance(i, str)} if newest is not None and isinstance(saved, list) else set()
    )
    for hit in hits:
        when = hit.get("created_at_i")
        if not _unix_time(when, latest):
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
    else:
        out.pop("created_at_i", None)  # an unusable saved value: start afresh rather than fail
        out.pop("ids_at", None)
    return out


def _unix_time(value: Any, latest: int | None) -> bool:
    """Whether ``value`` is an int Unix time from 1970 to ``latest`` (and before the year 10000)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return 0 <= value <= (latest if latest is not None else MAX_UNIX_TIME) and value <= MAX_UNIX_TIME


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
