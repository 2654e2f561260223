"""Pure X logic: the recent-search query, tweets with their expanded authors to mentions, ``since_id``."""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import quote

from veille.ingest.items import MalformedItem, a_type_name, item_mapping, optional_text, type_name
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = ["MAX_QUERY", "SOURCE", "TWEET_FIELDS", "USER_FIELDS", "tweet_mention", "users_by_id", "x_query"]

SOURCE = "x"
MAX_QUERY = 512
TWEET_FIELDS = "created_at,lang,public_metrics,author_id,conversation_id"
USER_FIELDS = "username,name,public_metrics"


def x_query(terms: list[str], languages: list[str]) -> str:
    """A recent-search query: ``(a OR "b c") -is:retweet`` plus ``lang:`` for a single-language watch."""
    suffix = " -is:retweet" + (f" lang:{languages[0]}" if len(languages) == 1 else "")
    parts: list[str] = []
    for term in terms:
        quoted = f'"{term}"' if " " in term or not term.isalnum() else term
        candidate = "(" + " OR ".join([*parts, quoted]) + ")" + suffix
        if len(candidate) > MAX_QUERY:
            break
        parts.append(quoted)
    if not parts:
        return ""
    return ("(" + " OR ".join(parts) + ")" if len(parts) > 1 else parts[0]) + suffix


def users_by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The expanded users of a response, by id."""
    includes = body.get("includes") if isinstance(body.get("includes"), dict) else {}
    users = includes.get("users") if isinstance(includes, dict) else None
    listed = users if isinstance(users, list) else []  # a wrong-typed includes.users expands no author
    return {u["id"]: u for u in listed if isinstance(u, dict) and isinstance(u.get("id"), str)}


@item_mapping
def tweet_mention(
    tweet: Any, users: dict[str, dict[str, Any]], watch: str | None, problems: Counter[str]
) -> MentionIngested:
    """Map a tweet (with ``includes.users``) to a mention; raise :class:`MalformedItem` when unusable.

    A missing date is a repair (counted in ``problems``); an id that is not a string of digits or a
    text that is not a string is malformed.
    """
    if not isinstance(tweet, dict):
        raise MalformedItem(f"a tweet is {a_type_name(tweet)}, expected an object", kind="invalid")
    tweet_id = tweet.get("id")
    if not isinstance(tweet_id, str) or not (tweet_id.isascii() and tweet_id.isdigit()):
        raise MalformedItem(f"'id' is not a string of digits ({type_name(tweet_id)})", kind="invalid")
    raw_user = users.get(str(tweet.get("author_id")))
    user: dict[str, Any] = raw_user if isinstance(raw_user, dict) else {}
    username = user.get("username") if isinstance(user.get("username"), str) else None
    raw_metrics = tweet.get("public_metrics")
    metrics: dict[str, Any] = raw_metrics if isinstance(raw_metrics, dict) else {}
    user_metrics = user.get("public_metrics")
    followers = user_metrics.get("followers_count") if isinstance(user_metrics, dict) else None
    published = parse_time(tweet.get("created_at"))
    if published is None:
        problems["no_date"] += 1
    lang = tweet.get("lang")
    text, _ = clean_text(optional_text(tweet, "text"), html_allowed=False)
    return MentionIngested(
        id=mention_id_for(SOURCE, tweet_id),
        source=SOURCE,
        watch=watch,
        url=f"https://x.com/{quote(username, safe='') if username else 'i/web'}/status/{tweet_id}",  # type: ignore[arg-type]
        text=text,
        author=f"@{username}" if username else None,
        author_followers=followers if isinstance(followers, int) else None,
        site="x.com",
        lang=lang if isinstance(lang, str) and len(lang) == 2 else None,
        published_at=published,
        engagement=Engagement(
            likes=_int(metrics.get("like_count")),
            reposts=_int(metrics.get("retweet_count")),
            replies=_int(metrics.get("reply_count")),
        ),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
