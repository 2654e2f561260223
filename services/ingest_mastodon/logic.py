"""Pure Mastodon logic: hashtags from a query, Status mapping (dedupe on ``uri``), ``min_id`` cursors, SSE."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from veille.ingest.items import MalformedItem, a_type_name, item_mapping, optional_text, type_name
from veille.ingest.sources import parse_time
from veille.ingest.textclean import clean_text
from veille.ingest.urls import host_of, is_http_url
from veille.models import Engagement, MentionIngested, mention_id_for

__all__ = ["SOURCE", "SseEvent", "SseParser", "hashtags_for", "newest_id", "status_mention"]

SOURCE = "mastodon"
_TAG_SEPARATORS = "_\u00b7\u30fb\u200c"
"""Mastodon's ``Tag::HASHTAG_SEPARATORS``: characters a hashtag may hold besides letters, marks and digits."""


def _tag_char(char: str) -> bool:
    """Whether Mastodon keeps ``char`` in a hashtag name.

    Mastodon (app/models/concerns/tag/naming.rb) removes ``HASHTAG_INVALID_CHARS_RE =
    /[^[:alnum:]\u0e47-\u0e4e#{HASHTAG_SEPARATORS}]/``: Ruby's Unicode ``[[:alnum:]]`` is any
    letter, mark or decimal digit, in every script (Cyrillic, Greek, CJK, Devanagari signs ...).
    """
    category = unicodedata.category(char)
    return category[0] in "LM" or category == "Nd" or char in _TAG_SEPARATORS or "\u0e47" <= char <= "\u0e4e"


def hashtags_for(terms: list[str]) -> list[str]:
    """Hashtags to follow for a watch's terms: ``"Acme Corp"`` gives ``acmecorp``, ``acme.com`` gives ``acmecom``.

    Letters of any script are kept (``Газпром`` gives ``газпром``, ``東京電力`` stays whole), as
    Mastodon's ``Tag::HASHTAG_NAME_RE`` accepts them; a name needs one letter (``[[:alpha:]]``), so
    a term of digits only gives no hashtag. NFKC and lower case as Mastodon's ``HashtagNormalizer``.
    """
    out: list[str] = []
    for term in terms:
        folded = unicodedata.normalize("NFKC", term).lower()
        tag = "".join(char for char in folded if _tag_char(char)).strip("\u200c")
        if any(unicodedata.category(char)[0] in "LM" for char in tag) and tag not in out:
            out.append(tag)
    return out


def _id_key(value: str) -> tuple[int, int, str]:
    """Order of status ids: numeric ones (ASCII digits, any length) by value, after any other."""
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0")
        return (1, len(digits), digits)
    return (0, 0, value)


def newest_id(current: str | None, statuses: list[dict[str, Any]]) -> str | None:
    """The largest status id among ``current`` and ``statuses`` (ids are numeric strings)."""
    best = current
    for status in statuses:
        value = status.get("id")
        if isinstance(value, str) and (best is None or _id_key(value) > _id_key(best)):
            best = value
    return best


@item_mapping
def status_mention(status: Any, server: str, watch: str | None, problems: Counter[str]) -> MentionIngested | None:
    """Map a Status entity to a mention; the id comes from its ``uri`` so copies on other servers dedupe.

    A reblog gives None (counted in ``problems``: the original is what matters); a status without
    a ``uri`` or a link, or whose text fields are not strings, raises :class:`MalformedItem`.
    """
    if not isinstance(status, dict):
        raise MalformedItem(f"a status is {a_type_name(status)}, expected an object", kind="wrong_type")
    if status.get("reblog"):
        problems["reblog"] += 1
        return None
    uri = status.get("uri")
    if not isinstance(uri, str) or not uri:
        raise MalformedItem(f"'uri' is missing or not a string ({type_name(uri)})", kind="no_id")
    url = status.get("url")
    link = url if is_http_url(url) else (uri if is_http_url(uri) else None)
    if link is None:
        raise MalformedItem("neither 'url' nor 'uri' is an http(s) URL", kind="no_link")
    content, _ = clean_text(optional_text(status, "content"))
    spoiler, _ = clean_text(optional_text(status, "spoiler_text"))
    text = f"{spoiler}\n{content}".strip() if spoiler else content
    raw_account = status.get("account")
    account: dict[str, Any] = raw_account if isinstance(raw_account, dict) else {}
    acct = account.get("acct") if isinstance(account.get("acct"), str) else None
    if acct and "@" not in acct:
        acct = f"{acct}@{urlsplit(server).hostname}"
    followers = _int(account.get("followers_count"))
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
        author_followers=followers,
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


@dataclass(frozen=True)
class SseEvent:
    """One Server-Sent Event: its type and data; ``too_large`` when it went over the size cap (data dropped)."""

    event: str
    data: str
    too_large: bool = False
    size: int = 0


class SseParser:
    """An incremental Server-Sent Events parser with bounded memory.

    Bytes go in with :meth:`feed`; complete events come out. A line longer than ``max_line``
    bytes, or an event whose lines total more than ``max_event`` bytes, is not buffered: the
    event is still delimited by its blank line but comes out with ``too_large`` set and no data.
    Comment lines (``:thump`` heartbeats) are skipped.
    """

    def __init__(self, *, max_line: int, max_event: int) -> None:
        self.max_line = max_line
        self.max_event = max_event
        self._buffer = bytearray()
        self._skipping_line = False
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._too_large = False
        self._fields = False

    def feed(self, chunk: bytes) -> Iterator[SseEvent]:
        """Add ``chunk`` and yield every event it completes."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                rest = chunk[start:]
                if self._skipping_line:
                    self._size += len(rest)
                elif len(self._buffer) + len(rest) > self.max_line:
                    self._size += len(self._buffer) + len(rest)
                    self._buffer.clear()
                    self._skipping_line = True
                    self._too_large = self._fields = True
                else:
                    self._buffer += rest
                return
            piece = chunk[start:end]
            start = end + 1
            if self._skipping_line:
                self._size += len(piece)
                self._skipping_line = False
                continue
            if len(self._buffer) + len(piece) > self.max_line:
                self._size += len(self._buffer) + len(piece)
                self._buffer.clear()
                self._too_large = self._fields = True
                continue
            self._buffer += piece
            line = bytes(self._buffer).rstrip(b"\r")
            self._buffer.clear()
            event = self._line(line)
            if event is not None:
                yield event

    def _line(self, line: bytes) -> SseEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(b":"):
            return None  # a comment: Mastodon's ":thump" heartbeat
        self._size += len(line) + 1
        self._fields = True
        if self._size > self.max_event:
            self._too_large = True
            self._data.clear()
            return None
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        text = value.decode("utf-8", errors="replace")
        if name == b"event":
            self._event = text
        elif name == b"data" and not self._too_large:
            self._data.append(text)
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._fields:
            return None
        event = SseEvent(self._event or "message", "\n".join(self._data), self._too_large, self._size)
        self._event = ""
        self._data = []
        self._size = 0
        self._too_large = self._fields = False
        return event
