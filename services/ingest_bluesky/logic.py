"""Pure Bluesky logic: Jetstream events and searchPosts views to mentions, local matching, cursors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

from veille.ingest.items import MalformedItem, a_type_name, item_mapping, optional_text, type_name
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = [
    "POST_COLLECTION",
    "SOURCE",
    "Matcher",
    "event_mention",
    "event_time_us",
    "jetstream_url",
    "post_view_mention",
    "search_query",
]

SOURCE = "bluesky"
POST_COLLECTION = "app.bsky.feed.post"
MAX_TIME_US = 253402300799 * 1_000_000
"""The last microsecond of the year 9999: no ``time_us`` past it is a time."""

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
    text, _ = clean_text(optional_text(record, "text"), html_allowed=False)
    langs = record.get("langs")
    lang = langs[0][:2].lower() if isinstance(langs, list) and langs and isinstance(langs[0], str) else None
    if not did.strip() or not rkey.strip():
        raise MalformedItem("the post's DID or record key is empty", kind="no_id")
    profile, post = quote(handle or did, safe=":@"), quote(rkey, safe="")
    return MentionIngested(
        id=mention_id_for(SOURCE, at_uri(did, rkey)),
        source=SOURCE,
        watch=watch,
        url=f"https://bsky.app/profile/{profile}/post/{post}",  # type: ignore[arg-type]
        text=text,
        author=handle or did,
        site="bsky.app",
        lang=lang,
        published_at=parse_time(record.get("createdAt")),
        engagement=engagement or Engagement(),
    )


def event_time_us(event: Any, latest_us: int = MAX_TIME_US) -> int | None:
    """The event's ``time_us`` if it is a time from 1970 to ``latest_us``, else None (it never moves the cursor)."""
    value = event.get("time_us") if isinstance(event, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= min(latest_us, MAX_TIME_US):
        return value
    return None


@item_mapping
def event_mention(event: Any, match: Matcher, latest_us: int = MAX_TIME_US) -> MentionIngested | None:
    """Map one Jetstream event to a mention if it is a new post matching a watch.

    Events that are not post creations (identity, account, deletes, likes) give None; a post
    matching no watch gives None too. An event that is not an object, whose ``time_us`` is not a
    time up to ``latest_us`` (now plus a day, say), or a post creation without a DID, record key
    or record raises :class:`MalformedItem`.
    """
    if not isinstance(event, dict):
        raise MalformedItem(f"an event is {a_type_name(event)}, expected an object", kind="invalid_event")
    if "time_us" in event and event_time_us(event, latest_us) is None:
        value = event["time_us"]
        shown = str(value)[:40] if isinstance(value, int | float) and not isinstance(value, bool) else type_name(value)
        raise MalformedItem(f"'time_us' ({shown}) is not a time between 1970 and now", kind="invalid_event")
    if event.get("kind") != "commit":
        return None
    commit = event.get("commit")
    if not isinstance(commit, dict):
        raise MalformedItem(f"a commit event's 'commit' is {a_type_name(commit)}", kind="invalid_event")
    if commit.get("operation") != "create" or commit.get("collection") != POST_COLLECTION:
        return None
    did, rkey, record = event.get("did"), commit.get("rkey"), commit.get("record")
    if not isinstance(did, str) or not isinstance(rkey, str) or not isinstance(record, dict):
        raise MalformedItem(
            f"a post creation needs a string 'did' and 'rkey' and an object 'record' (got {type_name(did)}, "
            f"{type_name(rkey)}, {type_name(record)})",
            kind="invalid_event",
        )
    mention = _post_mention(did=did, rkey=rkey, record=record, handle=None)
    watches = match(mention)
    if not watches:
        return None
    if len(watches) == 1:
        mention = mention.model_copy(update={"watch": watches[0]})
    return mention


@item_mapping
def post_view_mention(post: Any, watch: str | None) -> MentionIngested:
    """Map an ``app.bsky.feed.defs#postView`` from searchPosts; raise :class:`MalformedItem` when malformed."""
    if not isinstance(post, dict):
        raise MalformedItem(f"a post is {a_type_name(post)}, expected an object", kind="invalid")
    uri, author, record = post.get("uri"), post.get("author"), post.get("record")
    if not isinstance(uri, str) or not isinstance(author, dict) or not isinstance(record, dict):
        raise MalformedItem(
            f"a post needs a string 'uri' and objects 'author' and 'record' (got {type_name(uri)}, "
            f"{type_name(author)}, {type_name(record)})",
            kind="invalid",
        )
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] != POST_COLLECTION:
        raise MalformedItem(f"'uri' {uri[:200]!r} is not the AT URI of a post", kind="invalid")
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
    """searchPosts ``q``: phrases quoted, terms side by side.

    Every term must match (``OR`` is read as one more word: bluesky-social/atproto#3751), so the
    search asks for one term at a time; several terms here mean all of them.
    """
    return " ".join(f'"{t}"' if " " in t else t for t in terms)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
