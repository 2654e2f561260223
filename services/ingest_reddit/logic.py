"""Pure Reddit logic: the search query, listing children to mentions, the ``created_utc`` cursor."""

from __future__ import annotations

from collections import Counter
from typing import Any

from veille.ingest.cursors import Cursor
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.ingest.urls import is_http_url
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = ["SOURCE", "advance_cursor", "is_seen", "post_mention", "reddit_query"]

SOURCE = "reddit"


def reddit_query(terms: list[str]) -> str:
    """Reddit search syntax: phrases quoted, alternatives joined by OR."""
    return " OR ".join(f'"{t}"' if " " in t else t for t in terms)


def post_mention(child: Any, watch: str | None, problems: Counter[str]) -> MentionIngested | None:
    """Map a listing child (``kind`` t3, a post) to a mention; None (reason counted) when unusable."""
    if not isinstance(child, dict) or child.get("kind") != "t3" or not isinstance(child.get("data"), dict):
        problems["invalid"] += 1
        return None
    data = child["data"]
    name, permalink = data.get("name"), data.get("permalink")
    if not isinstance(name, str) or not isinstance(permalink, str) or not permalink.startswith("/"):
        problems["no_link"] += 1
        return None
    text, _ = clean_text(data.get("selftext"), html_allowed=False)
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
        url=f"https://www.reddit.com{permalink}",  # type: ignore[arg-type]
        title=clean_text(data.get("title"), html_allowed=False)[0] or None,
        text=text,
        author=f"u/{author}" if isinstance(author, str) and author != "[deleted]" else None,
        site=f"reddit.com/{subreddit}" if isinstance(subreddit, str) else "reddit.com",
        published_at=published,
        engagement=Engagement(score=_int(data.get("score")), replies=_int(data.get("num_comments"))),
    )


def is_seen(child: Any, cursor: Cursor) -> bool:
    """Whether a listing child is at or before the cursor (already handled)."""
    data = child.get("data") if isinstance(child, dict) else None
    if not isinstance(data, dict):
        return False
    created = data.get("created_utc")
    newest = cursor.get("created_utc")
    if not isinstance(created, int | float) or not isinstance(newest, int | float):
        return False
    return created < newest or (created == newest and data.get("name") in cursor.get("names_at", []))


def advance_cursor(cursor: Cursor, children: list[Any]) -> Cursor:
    """The newest ``created_utc`` and the names seen at that instant."""
    newest = cursor.get("created_utc") if isinstance(cursor.get("created_utc"), int | float) else None
    names: set[str] = set(cursor.get("names_at", [])) if newest is not None else set()
    for child in children:
        data = child.get("data") if isinstance(child, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("created_utc"), int | float):
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
