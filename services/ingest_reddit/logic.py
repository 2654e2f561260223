"""Pure Reddit logic: the search query, listing children to mentions, the ``created_utc`` cursor."""

from __future__ import annotations

import re
import sys
from collections import Counter
from typing import Any, TypeGuard
from urllib.parse import quote

from veille.ingest.cursors import Cursor
from veille.ingest.items import MalformedItem, item_mapping, optional_text
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.ingest.urls import is_http_url
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = [
    "OVERLAP",
    "SOURCE",
    "advance_cursor",
    "created_times",
    "is_seen",
    "post_mention",
    "reddit_query",
    "reddit_user_agent",
    "window_start",
]

SOURCE = "reddit"
MAX_UNIX_TIME = 253402300799  # 9999-12-31T23:59:59Z
OVERLAP = 2 * 3600.0
"""Seconds before the newest post seen that each poll reads again.

Reddit's search index lags behind the site: a post can be searchable hours after it was created
("it's normal for Reddit search to sometimes delay posts ... it doesn't immediately go into the
database that Reddit's search works on", flytaly/reddit-post-notifier#46, a post two hours late;
AdeelH/find-on-reddit#25). A cursor on ``created_utc`` alone skips such a post for good, since it
arrives older than the cursor; so each poll reads back this far and the names remembered in the
cursor (``seen``) keep what was published from being published again.
"""
SEEN_MAX = 3000
"""Post names a cursor remembers (newest first): far more than two hours of a busy watch's posts."""
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


# Reddit's API rules (github.com/reddit-archive/reddit/wiki/API): "Change your client's User-Agent
# string to something unique and descriptive, including the target platform, a unique application
# identifier, a version string, and your username as contact information, in the following format:
# <platform>:<app ID>:<version string> (by /u/<reddit username>)"; "many default User-Agents ... are
# drastically limited". Reddit usernames are 3 to 20 letters, digits, '_' or '-'.
_USER_AGENT = re.compile(r"^[^\s:]+:[^\s:]+:[^\s:]+ \(by /u/[A-Za-z0-9_-]{3,20}\)$")
_USERNAME = re.compile(r"^(?:/?u/)?([A-Za-z0-9_-]{3,20})$")


def reddit_user_agent(
    configured: str | None, client_id: str | None, username: str | None, version: str
) -> tuple[str, str | None]:
    """The User-Agent to send to Reddit, and why it breaks Reddit's rules (None when it does not).

    A configured one in Reddit's format is used as is; otherwise one is made from the platform,
    the client id and ``username``: ``linux:veille.<client id>:v0.1.0 (by /u/<username>)``.
    Without a username none can conform: the configured one (or the derived one without its
    contact) is sent, with the reason.
    """
    if configured and _USER_AGENT.match(configured.strip()):
        return configured.strip(), None
    platform = re.sub(r"[^A-Za-z0-9._-]", "", sys.platform) or "server"
    app = "veille." + (re.sub(r"[^A-Za-z0-9._-]", "", client_id or "") or "app")
    base = f"{platform}:{app}:v{version}"
    matched = _USERNAME.match((username or "").strip())
    if matched is None:
        why = "no valid sources.reddit.username" if username else "no sources.reddit.username"
        return (configured or base), (
            f"{why}: Reddit requires a User-Agent '<platform>:<app id>:<version> (by /u/<username>)' "
            "and drastically limits others"
        )
    return f"{base} (by /u/{matched.group(1)})", None


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


def window_start(cursor: Cursor) -> float | None:
    """The oldest ``created_utc`` a poll still reads: the cursor less :data:`OVERLAP` (the cursor itself for
    an older cursor without ``seen``), or None on the first poll."""
    newest = cursor.get("created_utc")
    if not _epoch(newest):
        return None
    return float(newest) - OVERLAP if isinstance(cursor.get("seen"), list) else float(newest)


def is_seen(child: Any, cursor: Cursor) -> bool:
    """Whether a listing child was already handled: its name is remembered, or it is older than the window."""
    data = child.get("data") if isinstance(child, dict) else None
    if not isinstance(data, dict):
        return False
    seen = cursor.get("seen")
    if isinstance(seen, list):
        if data.get("name") in seen:
            return True
        start = window_start(cursor)
        created = data.get("created_utc")
        return start is not None and _epoch(created) and created < start
    created = data.get("created_utc")  # a cursor written before the overlap window: as it was then
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
    handled = [n for c in children if isinstance(n := _data(c).get("name"), str)]
    old = [n for n in cursor.get("seen", []) if isinstance(n, str)] if isinstance(cursor.get("seen"), list) else []
    out["seen"] = list(dict.fromkeys(handled + old))[:SEEN_MAX]
    return out


def _data(child: Any) -> dict[str, Any]:
    data = child.get("data") if isinstance(child, dict) else None
    return data if isinstance(data, dict) else {}


def created_times(page: list[Any]) -> list[float]:
    """The ``created_utc`` of a listing page's posts that are Unix times."""
    return [float(t) for c in page if _epoch(t := _data(c).get("created_utc"))]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
