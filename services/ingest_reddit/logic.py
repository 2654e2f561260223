"""Pure Reddit logic: the search query, listing children to mentions, the ``created_utc`` cursor."""

from __future__ import annotations

from collections import Counter
from typing import Any, TypeGuard
from urllib.parse import quote

from veille.ingest.cursors import Cursor
from veille.ingest.items import MalformedItem, item_mapping, optional_text
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.ingest.urls import is_http_url
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = ["SOURCE", "advance_cursor", "is_seen", "post_mention", "reddit_query"]

SOURCE = "reddit"
MAX_UNIX_TIME = 253402300799  # 9999-12-31T23:59:59Z
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


def reddit_query(terms: list[str]) -> str:
    """Reddit search syntax: phrases quoted, alternatives joined by OR."""
    return " OR ".join(f'"{t}"' if " " in t else t for t in terms)


@item_mapping
def post_mention(child: Any, watch: str | None, problems: Counter[str]) -> MentionIngested:
    """Map a listing child (``kind`` t3, a post) to a mention; raise :class:`MalformedItem` when unusable.

    A missing date is a repair (counted in ``problems``); a title or text that is not a string is malformed.
    """
    if not isinstance(child, dict) or child.get("kind") != "t3" or not isinstance(child.get("data"), dict):
        raise MalformedItem("a listing child is not a post ('kind' t3 with a 'data' object)", kind="invalid")
    data = child["data"]
    name, permalink = data.get("name"), data.get("permalink")
    if not isinstance(name, str) or not isinstance(permalink, str) or not permalink.startswith("/"):
        raise MalformedItem("a post needs a string 'name' and a 'permalink' starting with '/'", kind="no_link")
    text, _ = clean_text(optional_text(data, "selftext"), html_allowed=False)
    link = data.get("url")
    if isinstance(link, str) and is_http_url(link) and not data.get("is_self"):
        text = f"{text}\n{link}".strip()
    published = parse_time(data.get("created_utc"))
    if published is None:
        problems["no_date"] += 1
    author = data.get("author")
    subreddit = data.get("subreddit_name_prefixed")
    return MentionIngested(
        id=mention_id_for(SOURCE, name),
        source=SOURCE,
        watch=watch,
        url=f"https://www.reddit.com{quote(permalink, safe=_PATH_SAFE)}",  # type: ignore[arg-type]
        title=clean_text(optional_text(data, "title"), html_allowed=False)[0] or None,
        text=text,
        author=f"u/{author}" if isinstance(author, str) and author != "[deleted]" else None,
        site=f"reddit.com/{subreddit}" if isinstance(subreddit, str) else "reddit.com",
        published_at=published,
        engagement=Engagement(score=_int(data.get("score")), replies=_int(data.get("num_comments"))),
    )


def _epoch(value: Any, latest: float | None = None) -> TypeGuard[int | float]:
    """Whether ``value`` is a Unix time (a number from 1970 to ``latest`` and before the year 10000)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return 0 <= value <= min(latest if latest is not None else MAX_UNIX_TIME, MAX_UNIX_TIME)


def is_seen(child: Any, cursor: Cursor) -> bool:
    """Whether a listing child is at or before the cursor (already handled)."""
    data = child.get("data") if isinstance(child, dict) else None
    if not isinstance(data, dict):
        return False
    created = data.get("created_utc")
    newest = cursor.get("created_utc")
    if not _epoch(created) or not _epoch(newest):
        return False
    return created < newest or (created == newest and data.get("name") in cursor.get("names_at", []))


def advance_cursor(cursor: Cursor, children: list[Any], *, latest: float | None = None) -> Cursor:
    """The newest ``created_utc`` and the names seen at that instant.

    Malformed children count too (the cursor moves past them), but a ``created_utc`` that is not
    a Unix time up to ``latest`` never moves it: a far-future one would hide every later post.
    """
    newest = cursor.get("created_utc") if _epoch(cursor.get("created_utc")) else None
    names: set[str] = set(cursor.get("names_at", [])) if newest is not None else set()
    for child in children:
        data = child.get("data") if isinstance(child, dict) else None
        if not isinstance(data, dict) or not _epoch(data.get("created_utc"), latest):
            continue
        created, name = data["created_utc"], str(data.get("name"))
        if newest is None or created > newest:
            newest, names = created, {name}
        elif created == newest:
            names.add(name)
    out = dict(cursor)
    if newest is not None:
        out["created_utc"] = newest
        out["names_at"] = sorted(names)
    return out


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
