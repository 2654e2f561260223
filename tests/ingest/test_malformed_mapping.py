"""Every source's item mapping on arbitrary JSON: a valid mention, a deliberate skip, or MalformedItem — nothing else.

Items are generated two ways: arbitrary JSON values, and recorded items (from ``payloads/``)
with fields deleted or replaced by arbitrary JSON at any depth (wrong types, nested objects where
strings belong, huge, negative and far-future numbers). The cursor helpers fed the same items
never raise and never move a cursor past now (a far-future time would hide every later item).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_helpers import payload

from services.ingest_bluesky.logic import event_mention, event_time_us, post_view_mention
from services.ingest_gdelt.logic import article_mention, remember
from services.ingest_hackernews.logic import advance_cursor as hn_advance
from services.ingest_hackernews.logic import hit_mention
from services.ingest_mastodon.logic import newest_id, status_mention
from services.ingest_reddit.logic import advance_cursor as reddit_advance
from services.ingest_reddit.logic import is_seen, post_mention
from services.ingest_x.logic import tweet_mention, users_by_id
from veille.ingest.items import MalformedItem
from veille.models import MentionIngested

NOW = datetime(2025, 6, 12, 12, 0, tzinfo=UTC)
LATEST = int(NOW.timestamp()) + 86400
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, -1, 2**31, 2**53, 10**13, 10**16, 10**19, 10**30, 253402300800, -62135596800]),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    numbers,
    st.text(max_size=30),
    st.sampled_from(["", " ", "²", "9999-12-31T23:59:59Z", "99991231T235959Z", "at://x", "http://", "javascript:x"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with some fields, at any depth, deleted or replaced by arbitrary JSON."""
    if isinstance(value, dict) and depth < 4:
        out: dict[str, Any] = {}
        for key, item in value.items():
            action = draw(st.sampled_from(["keep", "keep", "keep", "recurse", "replace", "delete"]))
            if action == "keep":
                out[key] = item
            elif action == "recurse":
                out[key] = draw(mutated(item, depth + 1))
            elif action == "replace":
                out[key] = draw(json_values)
        return out
    if isinstance(value, list) and value and depth < 4:
        return [draw(mutated(v, depth + 1)) if draw(st.booleans()) else v for v in value]
    return draw(json_values) if draw(st.booleans()) else value


def items_like(recorded: list[Any]) -> st.SearchStrategy[Any]:
    """Arbitrary JSON, or a recorded item mutated."""
    return st.one_of(json_values, st.sampled_from(recorded).flatmap(mutated))


def check(mapping: Callable[[], MentionIngested | None]) -> None:
    """The mapping returns None or a mention that survives the bus round trip, or raises MalformedItem."""
    try:
        mention = mapping()
    except MalformedItem as exc:
        assert exc.reason and exc.kind
        return
    if mention is not None:
        assert isinstance(mention, MentionIngested)
        assert MentionIngested.model_validate_json(mention.model_dump_json()).id == mention.id


HN_HITS = json.loads(payload("hn_page0.json"))["hits"] + json.loads(payload("hn_page1.json"))["hits"]
STATUSES = json.loads(payload("mastodon_tag_acme.json"))
EVENTS = [json.loads(line) for line in payload("jetstream_events.jsonl").decode().splitlines() if line.strip()]
POSTS = json.loads(payload("bsky_search_page1.json"))["posts"]
ARTICLES = json.loads(payload("gdelt_artlist.json"))["articles"]
CHILDREN = json.loads(payload("reddit_search_page1.json"))["data"]["children"]
X_PAGE = json.loads(payload("x_recent_page1.json"))
TWEETS = X_PAGE["data"]


@PROPERTY
@given(items_like(HN_HITS))
def test_hacker_news_hits(hit: Any) -> None:
    """A Hacker News hit of any shape maps to a mention or raises MalformedItem."""
    check(lambda: hit_mention(hit, "acme", Counter()))


@PROPERTY
@given(st.lists(items_like(HN_HITS), max_size=4))
def test_hacker_news_cursor(hits: list[Any]) -> None:
    """Any hits move the HN cursor to a Unix time no later than a day from now, or leave it."""
    cursor = hn_advance({}, [h for h in hits if isinstance(h, dict)], latest=LATEST)
    json.dumps(cursor)
    when = cursor.get("created_at_i")
    assert when is None or 0 <= when <= LATEST
    if when is not None:
        datetime.fromtimestamp(when, UTC)


@PROPERTY
@given(items_like(STATUSES))
def test_mastodon_statuses(status: Any) -> None:
    """A Mastodon status of any shape maps to a mention (or a skipped reblog) or raises MalformedItem."""
    check(lambda: status_mention(status, "https://mastodon.example", "acme", Counter()))


@PROPERTY
@given(st.lists(items_like(STATUSES), max_size=4), st.one_of(st.none(), st.text(max_size=20)))
def test_mastodon_cursor(statuses: list[Any], current: str | None) -> None:
    """Any statuses give a ``min_id`` that is a string id or the current one."""
    best = newest_id(current, [s for s in statuses if isinstance(s, dict)])
    assert best is None or isinstance(best, str)


@PROPERTY
@given(items_like(EVENTS))
def test_bluesky_jetstream_events(event: Any) -> None:
    """A Jetstream event of any shape maps to a mention, nothing, or MalformedItem; its cursor time is sane."""
    latest_us = LATEST * 1_000_000
    check(lambda: event_mention(event, lambda m: ["acme"], latest_us))
    time_us = event_time_us(event, latest_us)
    assert time_us is None or 0 <= time_us <= latest_us


@PROPERTY
@given(items_like(POSTS))
def test_bluesky_search_posts(post: Any) -> None:
    """A searchPosts post view of any shape maps to a mention or raises MalformedItem."""
    check(lambda: post_view_mention(post, "acme"))


@PROPERTY
@given(items_like(ARTICLES))
def test_gdelt_articles(article: Any) -> None:
    """A GDELT article of any shape maps to a mention or raises MalformedItem; remembering it never fails."""
    check(lambda: article_mention(article, "acme", Counter()))
    try:
        mention = article_mention(article, "acme", Counter())
    except MalformedItem:
        return
    _, cursor = remember({}, [mention], latest=NOW)
    json.dumps(cursor)
    last = cursor.get("last_seen")
    assert last is None or datetime.fromisoformat(last) <= NOW


@PROPERTY
@given(items_like(CHILDREN))
def test_reddit_children(child: Any) -> None:
    """A Reddit listing child of any shape maps to a mention or raises MalformedItem."""
    check(lambda: post_mention(child, "acme", Counter()))


@PROPERTY
@given(st.lists(items_like(CHILDREN), max_size=4))
def test_reddit_cursor(children: list[Any]) -> None:
    """Any children move the Reddit cursor to a time no later than a day from now; is_seen never raises."""
    cursor = reddit_advance({}, children, latest=LATEST)
    json.dumps(cursor)
    when = cursor.get("created_utc")
    assert when is None or 0 <= when <= LATEST
    for child in children:
        assert is_seen(child, cursor) in (True, False)


@PROPERTY
@given(items_like(TWEETS), st.one_of(st.just(X_PAGE), items_like([X_PAGE])))
def test_x_tweets(tweet: Any, page: Any) -> None:
    """A tweet of any shape, with any ``includes``, maps to a mention or raises MalformedItem."""
    users = users_by_id(page) if isinstance(page, dict) else {}
    check(lambda: tweet_mention(tweet, users, "acme", Counter()))


def test_the_reported_items_are_malformed_not_crashes() -> None:
    """The items of the report (a numeric title, an object as content, a far-future time_us) raise MalformedItem."""
    hit = {**HN_HITS[0], "title": 5}
    status = {**STATUSES[0], "content": {"html": "<p>hi</p>"}}
    event = {**EVENTS[0], "time_us": 10**25}
    mappings: list[Callable[[], MentionIngested | None]] = [
        lambda: hit_mention(hit, "acme", Counter()),
        lambda: status_mention(status, "https://mastodon.example", "acme", Counter()),
        lambda: event_mention(event, lambda m: ["acme"], LATEST * 1_000_000),
    ]
    for mapping in mappings:
        try:
            mapping()
        except MalformedItem as exc:
            assert "title" in exc.reason or "content" in exc.reason or "time_us" in exc.reason
        else:
            raise AssertionError("expected MalformedItem")
