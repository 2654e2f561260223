"""Pure Mastodon logic: hashtags from a query, Status mapping (dedupe on ``uri``), ``min_id`` cursors."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.ingest.urls import host_of, is_http_url
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = ["SOURCE", "hashtags_for", "newest_id", "status_mention"]

SOURCE = "mastodon"
_NON_TAG = re.compile(r"[^0-9A-Za-z_\u00c0-\u024f]+")


def hashtags_for(terms: list[str]) -> list[str]:
    """Hashtags to follow for a watch's terms: ``"Acme Corp"`` gives ``acmecorp``, ``acme.com`` gives ``acmecom``."""
    out: list[str] = []
    for term in terms:
        tag = _NON_TAG.sub("", term).lower()
        if tag and not tag.isdigit() and tag not in out:
            out.append(tag)
    return out


def _id_key(value: str) -> tuple[int, str]:
    return (int(value), value) if value.isdigit() else (-1, value)


def newest_id(current: str | None, statuses: list[dict[str, Any]]) -> str | None:
    """The largest status id among ``current`` and ``statuses`` (ids are numeric strings)."""
    best = current
    for status in statuses:
        value = status.get("id")
        if isinstance(value, str) and (best is None or _id_key(value) > _id_key(best)):
            best = value
    return best


def status_mention(
    status: dict[str, Any], server: str, watch: str | None, problems: Counter[str]
) -> MentionIngested | None:
    """Map a Status entity to a mention; the id comes from its ``uri`` so copies on other servers dedupe."""
    if status.get("reblog"):
        problems["reblog"] += 1
        return None
    uri = status.get("uri")
    if not isinstance(uri, str) or not uri:
        problems["no_id"] += 1
        return None
    link = status.get("url") if is_http_url(status.get("url")) else (uri if is_http_url(uri) else None)
    if link is None:
        problems["no_link"] += 1
        return None
    content, _ = clean_text(status.get("content"))
    spoiler, _ = clean_text(status.get("spoiler_text"))
    text = f"{spoiler}\n{content}".strip() if spoiler else content
    raw_account = status.get("account")
    account: dict[str, Any] = raw_account if isinstance(raw_account, dict) else {}
    acct = account.get("acct") if isinstance(account.get("acct"), str) else None
    if acct and "@" not in acct:
        acct = f"{acct}@{urlsplit(server).hostname}"
    followers = account.get("followers_count")
    published = parse_time(status.get("created_at"))
    if published is None:
        problems["no_date"] += 1
    language = status.get("language")
    return MentionIngested(
        id=mention_id_for(SOURCE, uri),
        source=SOURCE,
        watch=watch,
        url=link,  # type: ignore[arg-type]
        text=text,
        author=acct,
        author_followers=followers if isinstance(followers, int) else None,
        site=host_of(link),
        lang=language[:2].lower() if isinstance(language, str) and len(language) >= 2 else None,
        published_at=published,
        engagement=Engagement(
            likes=_int(status.get("favourites_count")),
            reposts=_int(status.get("reblogs_count")),
            replies=_int(status.get("replies_count")),
        ),
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
