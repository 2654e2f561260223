"""Pure Bluesky logic: Jetstream events and searchPosts views to mentions, local matching, cursors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = [
    "POST_COLLECTION",
    "SOURCE",
    "Matcher",
    "event_mention",
    "jetstream_url",
    "post_view_mention",
    "search_query",
]

SOURCE = "bluesky"
POST_COLLECTION = "app.bsky.feed.post"

Matcher = Callable[[MentionIngested], list[str]]


def jetstream_url(base: str, time_us: int | None, rewind: timedelta) -> str:
    """The subscribe URL: posts only, from the cursor less ``rewind`` (Jetstream replays from there)."""
    params: list[tuple[str, str]] = [("wantedCollections", POST_COLLECTION)]
    if time_us is not None:
        params.append(("cursor", str(max(0, time_us - int(rewind.total_seconds() * 1_000_000)))))
    return f"{base}{'&' if '?' in base else '?'}{urlencode(params)}"


def at_uri(did: str, rkey: str) -> str:
    """The AT URI of a post."""
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def _post_mention(
    *,
    did: str,
    rkey: str,
    record: dict[str, Any],
    handle: str | None,
    engagement: Engagement | None = None,
    watch: str | None = None,
) -> MentionIngested:
    text, _ = clean_text(record.get("text") if isinstance(record.get("text"), str) else "", html_allowed=False)
    langs = record.get("langs")
    lang = langs[0][:2].lower() if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    return MentionIngested(
        id=mention_id_for(SOURCE, at_uri(did, rkey)),
        source=SOURCE,
        watch=watch,
        url=f"https://bsky.app/profile/{handle or did}/post/{rkey}",  # type: ignore[arg-type]
        text=text,
        author=handle or did,
        site="bsky.app",
        lang=lang,
        published_at=parse_time(record.get("createdAt")),
        engagement=engagement or Engagement(),
    )


def event_mention(event: Any, match: Matcher) -> tuple[MentionIngested | None, int | None, str | None]:
    """Map one Jetstream event: (mention if it is a new post matching a watch, its ``time_us``, problem).

    Events that are not post creations (identity, account, deletes, likes) give no mention and no
    problem; a post matching no watch gives none either. ``problem`` names a malformed event.
    """
    if not isinstance(event, dict):
        return None, None, "invalid_event"
    time_us = event.get("time_us") if isinstance(event.get("time_us"), int) else None
    if event.get("kind") != "commit":
        return None, time_us, None
    commit = event.get("commit")
    if not isinstance(commit, dict):
        return None, time_us, "invalid_event"
    if commit.get("operation") != "create" or commit.get("collection") != POST_COLLECTION:
        return None, time_us, None
    did, rkey, record = event.get("did"), commit.get("rkey"), commit.get("record")
    if not isinstance(did, str) or not isinstance(rkey, str) or not isinstance(record, dict):
        return None, time_us, "invalid_event"
    mention = _post_mention(did=did, rkey=rkey, record=record, handle=None)
    watches = match(mention)
    if not watches:
        return None, time_us, None
    if len(watches) == 1:
        mention = mention.model_copy(update={"watch": watches[0]})
    return mention, time_us, None


def post_view_mention(post: Any, watch: str | None) -> MentionIngested | None:
    """Map an ``app.bsky.feed.defs#postView`` from searchPosts; None when malformed."""
    if not isinstance(post, dict):
        return None
    uri, author, record = post.get("uri"), post.get("author"), post.get("record")
    if not isinstance(uri, str) or not isinstance(author, dict) or not isinstance(record, dict):
        return None
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] != POST_COLLECTION:
        return None
    did, _, rkey = parts
    handle = author.get("handle") if isinstance(author.get("handle"), str) else None
    return _post_mention(
        did=did,
        rkey=rkey,
        record=record,
        handle=handle,
        watch=watch,
        engagement=Engagement(
            likes=_int(post.get("likeCount")),
            reposts=_int(post.get("repostCount")),
            replies=_int(post.get("replyCount")),
        ),
    )


def search_query(terms: list[str]) -> str:
    """searchPosts ``q`` (Lucene syntax is recommended): phrases quoted, terms joined by OR."""
    return " OR ".join(f'"{t}"' if " " in t else t for t in terms)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
