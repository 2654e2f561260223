"""The Reddit and X ingestors against loopback API servers and a real nats-server."""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from ingest_helpers import FIXED_NOW, LoopbackServer, config_from, metric, payload, read_mentions, settings_for
from structlog.testing import capture_logs

from services.ingest_reddit.app import create_app as create_reddit
from services.ingest_x.app import create_app as create_x
from services.ingest_x.logic import x_query
from veille import __version__
from veille.ingest.runner import IngestService
from veille.models import mention_id_for
from veille.natsserver import NatsServerProcess

pytestmark = pytest.mark.integration

WATCH = """
watches:
  - name: acme
    query: '"Acme Corp"'
"""


@pytest.fixture
async def make_app(nats_server: NatsServerProcess) -> AsyncIterator[Callable[..., Any]]:
    """Build connected Reddit or X ingestors; stop them at the end."""
    apps: list[IngestService] = []

    async def factory(create: Callable[..., IngestService], sources: str) -> IngestService:
        app = create(settings_for(nats_server.url), config=config_from(WATCH + sources), clock=lambda: FIXED_NOW)
        apps.append(app)
        await app.connect()
        return app

    yield factory
    for app in apps:
        await app.stop()


def reddit_yaml(server: LoopbackServer, *, credentials: bool = True) -> str:
    """The Reddit section pointing at the loopback server."""
    creds = "    client_id: my-app\n    client_secret: s3cret\n" if credentials else ""
    return f"""
sources:
  reddit:
    base_url: '{server.url}/oauth'
    token_url: '{server.url}/api/v1/access_token'
    user_agent: 'linux:veille-test:0.1 (by /u/veille)'
    min_interval: 0s
{creds}"""


def reddit_routes(server: LoopbackServer, search: Any) -> list[dict[str, str]]:
    """Serve the token endpoint (recording its form) and ``search``."""
    forms: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        forms.append({k: str(v) for k, v in form.items()} | {"auth": request.headers.get("Authorization", "")})
        return web.json_response({"access_token": "tok-1", "token_type": "bearer", "expires_in": 86400, "scope": "*"})

    server.route("/api/v1/access_token", token)
    server.route("/oauth/search", search)
    return forms


async def test_reddit_search_authenticates_pages_and_maps_posts(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Client credentials get a token; search pages by 'after'; posts land with permalink, author, score, comments."""

    async def search(request: web.Request) -> web.StreamResponse:
        name = "reddit_search_page2.json" if request.query.get("after") else "reddit_search_page1.json"
        headers = {"X-Ratelimit-Remaining": "598.0", "X-Ratelimit-Used": "2", "X-Ratelimit-Reset": "420"}
        return web.Response(body=payload(name), content_type="application/json", headers=headers)

    forms = reddit_routes(http_server, search)
    app = await make_app(create_reddit, reddit_yaml(http_server))
    [outcome] = await app.poll_all()
    expected_auth = "Basic " + base64.b64encode(b"my-app:s3cret").decode()
    assert forms == [{"grant_type": "client_credentials", "auth": expected_auth}]
    searches = http_server.requests_to("/oauth/search")
    assert searches[0].headers["Authorization"] == "bearer tok-1"
    assert searches[0].headers["User-Agent"] == "linux:veille-test:0.1 (by /u/veille)"
    assert searches[0].query["q"] == '"Acme Corp"' and searches[0].query["sort"] == "new"
    assert searches[1].query["after"] == "t3_1l9a000"
    assert (outcome.published, outcome.rejected) == (2, 1)
    stored = {msg_id: m for msg_id, m in await read_mentions(nats_server.url)}
    post = stored[mention_id_for("reddit", "t3_1l9b2cc")]
    assert str(post.url) == "https://www.reddit.com/r/sysadmin/comments/1l9b2cc/acme_corp_outage_right_now/"
    assert post.title == "Acme Corp outage right now?" and post.author == "u/pager_duty_pete"
    assert post.text == "Anyone else seeing Acme Corp timeouts since 9am? Our whole & entire pipeline is stuck."
    assert (post.engagement.score, post.engagement.replies) == (245, 88)
    assert post.site == "reddit.com/r/sysadmin"
    assert post.published_at == datetime(2025, 6, 12, 9, 0, tzinfo=UTC)
    link = stored[mention_id_for("reddit", "t3_1l9a111")]
    assert "https://www.lemonde.fr/economie/article/2025/06/12/acme-corp-la-panne.html" in link.text
    assert metric(app.metrics, "veille_ingest_quota_remaining", source="reddit") == 598


async def test_reddit_cursor_survives_a_restart_and_pages_back_through_the_overlap_window(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """After a restart only the post not seen before is published; paging goes on through the two hours
    before the cursor (late-indexed posts) and stops at the first page reaching past them."""
    pages = [
        payload("reddit_search_page1.json"),
        payload("reddit_search_page2.json"),
        payload("reddit_search_newer.json"),  # 10:20, 09:00, 08:00 (after: more)
        payload("reddit_search_page2.json"),  # 04:46: past the window (09:00 less two hours)
    ]

    async def search(request: web.Request) -> web.StreamResponse:
        return web.Response(body=pages.pop(0), content_type="application/json")

    reddit_routes(http_server, search)
    app = await make_app(create_reddit, reddit_yaml(http_server))
    await app.poll_all()
    await app.stop()
    nats_server.stop()
    nats_server.start()
    restarted = await make_app(create_reddit, reddit_yaml(http_server))
    [outcome] = await restarted.poll_all()
    assert (outcome.published, outcome.duplicates) == (1, 0)
    assert len(http_server.requests_to("/oauth/search")) == 4 and pages == []
    assert len(await read_mentions(nats_server.url)) == 3


def reddit_post(name: str, created: float, title: str) -> dict[str, Any]:
    """A listing child (kind t3) as Reddit's /search returns it (www.reddit.com/dev/api#GET_search)."""
    short = name.removeprefix("t3_")
    return {
        "kind": "t3",
        "data": {
            "name": name,
            "id": short,
            "title": title,
            "selftext": "",
            "is_self": True,
            "author": "ops_person",
            "subreddit_name_prefixed": "r/sysadmin",
            "permalink": f"/r/sysadmin/comments/{short}/post/",
            "url": f"https://www.reddit.com/r/sysadmin/comments/{short}/post/",
            "created_utc": created,
            "score": 3,
            "num_comments": 1,
        },
    }


def listing(*children: dict[str, Any]) -> bytes:
    """A Listing of ``children``, newest first, with no further page."""
    data = {"after": None, "before": None, "dist": len(children), "children": list(children)}
    return json.dumps({"kind": "Listing", "data": data}).encode()


async def test_reddit_a_post_indexed_late_is_published_though_older_than_the_cursor(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Reddit's search index lags (flytaly/reddit-post-notifier#46: posts searchable hours later): a post
    created at 08:50 that the 09:00 poll could not see yet is published when the next poll finds it."""
    at_nine = reddit_post("t3_1l9b2cc", 1749718800.0, "Acme Corp outage right now?")
    late = reddit_post("t3_1l9b1ff", 1749718200.0, "Acme Corp status page is lying")
    newer = reddit_post("t3_1l9c333", 1749726000.0, "Acme Corp back up")
    answers = [listing(at_nine), listing(newer, at_nine, late)]

    async def search(request: web.Request) -> web.StreamResponse:
        return web.Response(body=answers.pop(0), content_type="application/json")

    reddit_routes(http_server, search)
    app = await make_app(create_reddit, reddit_yaml(http_server))
    [first] = await app.poll_all()
    [second] = await app.poll_all()
    assert (first.published, second.published, second.duplicates) == (1, 2, 0)
    stored = {msg_id for msg_id, _ in await read_mentions(nats_server.url)}
    assert mention_id_for("reddit", "t3_1l9b1ff") in stored and len(stored) == 3


async def test_reddit_user_agent_follows_reddits_rule_or_says_why_it_cannot(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Reddit requires '<platform>:<app ID>:<version> (by /u/<username>)' (github.com/reddit-archive/reddit/wiki/API,
    'many default User-Agents ... are drastically limited'): made from client_id and username when not set;
    without a username the service says so in veille_source_config_warning."""

    async def search(request: web.Request) -> web.StreamResponse:
        return web.Response(body=listing(), content_type="application/json")

    reddit_routes(http_server, search)
    section = reddit_yaml(http_server).replace("    user_agent: 'linux:veille-test:0.1 (by /u/veille)'\n", "")
    app = await make_app(create_reddit, section + "    username: veille_bot\n")
    await app.poll_all()
    token, search_request = http_server.requests[-2:]
    expected = f"{sys.platform}:veille.my-app:v{__version__} (by /u/veille_bot)"
    assert token.headers["User-Agent"] == expected and search_request.headers["User-Agent"] == expected
    assert metric(app.metrics, "veille_source_config_warning", source="reddit", warning="user_agent") == 0
    anonymous = await make_app(create_reddit, section)
    await anonymous.poll_all()
    assert "(by /u/" not in http_server.requests[-1].headers["User-Agent"]
    assert metric(anonymous.metrics, "veille_source_config_warning", source="reddit", warning="user_agent") == 1


async def test_reddit_and_x_stay_off_without_credentials(
    make_app: Callable[..., Any], http_server: LoopbackServer
) -> None:
    """No client secret or bearer token: no targets, no request, and readiness stays green."""
    reddit = await make_app(create_reddit, reddit_yaml(http_server, credentials=False))
    x = await make_app(create_x, f"\nsources:\n  x:\n    base_url: '{http_server.url}/2'\n")
    assert await reddit.poll_all() == [] and await x.poll_all() == []
    assert http_server.requests == []
    assert "sources" not in reddit.health.problems() and "sources" not in x.health.problems()


def x_yaml(server: LoopbackServer) -> str:
    """The X section pointing at the loopback server."""
    return f"""
sources:
  x:
    base_url: '{server.url}/2'
    bearer_token: AAAA-test-token
    min_interval: 0s
"""


def test_x_query_uses_or_excludes_retweets_and_respects_the_length_limit() -> None:
    """Terms are ORed and quoted as needed, retweets excluded, one language filtered, 512 characters at most."""
    assert (
        x_query(["Acme Corp", "acme.com", "acme"], ["fr"]) == '("Acme Corp" OR "acme.com" OR acme) -is:retweet lang:fr'
    )
    assert len(x_query([f"term{i}" for i in range(200)], [])) <= 512


async def test_x_recent_search_pages_maps_authors_and_resumes_from_since_id(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Tweets land with author, followers and metrics from includes.users; the next poll sends since_id."""

    async def search(request: web.Request) -> web.StreamResponse:
        if "since_id" in request.query:
            name = "x_recent_empty.json"
        elif "next_token" in request.query:
            name = "x_recent_page2.json"
        else:
            name = "x_recent_page1.json"
        headers = {"x-rate-limit-limit": "60", "x-rate-limit-remaining": "57", "x-rate-limit-reset": "1749719700"}
        return web.Response(body=payload(name), content_type="application/json", headers=headers)

    http_server.route("/2/tweets/search/recent", search)
    app = await make_app(create_x, x_yaml(http_server))
    [outcome] = await app.poll_all()
    first = http_server.requests_to("/2/tweets/search/recent")[0]
    assert first.headers["Authorization"] == "Bearer AAAA-test-token"
    assert first.query["query"] == '"Acme Corp" -is:retweet'
    assert first.query["expansions"] == "author_id"
    assert (outcome.published, outcome.rejected) == (2, 1)
    stored = {msg_id: m for msg_id, m in await read_mentions(nats_server.url)}
    tweet = stored[mention_id_for("x", "1933100000000000001")]
    assert str(tweet.url) == "https://x.com/opsweekly/status/1933100000000000001"
    assert tweet.author == "@opsweekly" and tweet.author_followers == 48211
    assert (tweet.engagement.likes, tweet.engagement.reposts, tweet.engagement.replies) == (120, 14, 9)
    assert tweet.text.startswith("Acme Corp down again?! @AcmeSupport & status page")
    assert stored[mention_id_for("x", "1933080000000000003")].lang == "fr"
    assert metric(app.metrics, "veille_ingest_quota_remaining", source="x") == 57

    await app.stop()
    nats_server.stop()
    nats_server.start()
    restarted = await make_app(create_x, x_yaml(http_server))
    [again] = await restarted.poll_all()
    assert http_server.requests_to("/2/tweets/search/recent")[-1].query["since_id"] == "1933100000000000001"
    assert again.published == 0 and len(await read_mentions(nats_server.url)) == 2


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (429, b'{"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}',
         "rate_limited"),
        (401, b'{"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}',
         "unauthorized"),
        (200, b'{"errors": [{"parameters": {"query": ["("]}, "message": "bad query"}], "title": "Invalid Request",'
              b' "detail": "One or more parameters to your request was invalid.", "meta": {}}', "query_rejected"),
        (200, b"\xff\xfe not json", "invalid_json"),
    ],
)  # fmt: skip
async def test_x_failures_are_errors_by_kind(
    make_app: Callable[..., Any],
    http_server: LoopbackServer,
    nats_server: NatsServerProcess,
    status: int,
    body: bytes,
    kind: str,
) -> None:
    """429 (paused until x-rate-limit-reset), 401, an 'errors' answer and a non-JSON body each fail with their kind."""
    reset = int(time.time()) + 600

    async def search(request: web.Request) -> web.StreamResponse:
        headers = {"x-rate-limit-remaining": "0", "x-rate-limit-reset": str(reset)} if status == 429 else {}
        return web.Response(status=status, body=body, headers=headers, content_type="application/json")

    http_server.route("/2/tweets/search/recent", search)
    app = await make_app(create_x, x_yaml(http_server))
    [outcome] = await app.poll_all()
    assert outcome.error is not None and outcome.error.kind == kind
    assert metric(app.metrics, "veille_ingest_errors_total", source="x", kind=kind) == 1
    if status == 429:
        assert app.source.fetcher.limiter.paused_for() > 500  # type: ignore[attr-defined]
    assert await read_mentions(nats_server.url) == []


def x_page(first: int, count: int, next_token: str | None) -> bytes:
    """One recent-search page in X's format: data newest first, includes.users, meta with newest/oldest id.

    docs.x.com/x-api/posts/search/integrate/paginate: posts come in reverse-chronological order across
    pages; meta carries newest_id, oldest_id, result_count and, while more pages match, next_token.
    """
    ids = [str(1933200000000000000 - i) for i in range(first, first + count)]
    data = [
        {
            "id": tid,
            "text": f"Acme Corp outage, report {tid[-3:]}",
            "author_id": "2244994945",
            "created_at": "2025-06-12T10:00:00.000Z",
            "lang": "en",
            "edit_history_tweet_ids": [tid],
            "public_metrics": {"retweet_count": 0, "reply_count": 0, "like_count": 1, "quote_count": 0},
        }
        for tid in ids
    ]
    meta: dict[str, Any] = {"newest_id": ids[0], "oldest_id": ids[-1], "result_count": count}
    if next_token:
        meta["next_token"] = next_token
    users = [{"id": "2244994945", "name": "Ops", "username": "ops", "public_metrics": {"followers_count": 10}}]
    return json.dumps({"data": data, "includes": {"users": users}, "meta": meta}).encode()


async def test_x_a_busy_watch_is_read_to_since_id_across_polls_without_a_gap(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Four pages match but a poll reads three: the fourth is read on the next poll from the saved next_token
    (with the same since_id), and only then does since_id move to the first page's newest_id.

    The backlog shows while it lasts: veille_source_backlog_pending is 1 and the truncation is counted.
    """
    pages = {None: x_page(0, 2, "tok-2"), "tok-2": x_page(2, 2, "tok-3"), "tok-3": x_page(4, 2, "tok-4")}
    pages["tok-4"] = x_page(6, 2, None)

    async def search(request: web.Request) -> web.StreamResponse:
        if "since_id" in request.query:
            return web.Response(body=payload("x_recent_empty.json"), content_type="application/json")
        return web.Response(body=pages[request.query.get("next_token")], content_type="application/json")

    http_server.route("/2/tweets/search/recent", search)
    app = await make_app(create_x, x_yaml(http_server))
    m = app.metrics
    [first] = await app.poll_all()
    assert first.published == 6
    assert metric(m, "veille_source_backlog_pending", source="x", target="acme") == 1
    assert metric(m, "veille_source_backlog_truncated_total", source="x", target="acme") == 1
    [second] = await app.poll_all()
    assert second.published == 2 and len(await read_mentions(nats_server.url)) == 8
    resumed = http_server.requests_to("/2/tweets/search/recent")[3]
    assert resumed.query["next_token"] == "tok-4" and "since_id" not in resumed.query
    assert metric(m, "veille_source_backlog_pending", source="x", target="acme") == 0
    [third] = await app.poll_all()
    last = http_server.requests_to("/2/tweets/search/recent")[-1]
    assert last.query["since_id"] == "1933200000000000000" and "next_token" not in last.query
    assert third.published == 0


# X's answer to a since_id older than its recent search's 7 days: a 400 Invalid Request naming the
# parameter (the error object of docs.x.com/x-api/fundamentals/response-codes-and-errors; the case and
# its "must be a tweet id created after" message as reported in github.com/rooteco/tweetscape/issues/421).
EXPIRED_SINCE_ID = {
    "errors": [
        {
            "parameters": {"since_id": ["1933199999999999990"]},
            "message": "Invalid 'since_id':'1933199999999999990'. 'since_id' must be a tweet id created after "
            "2025-06-13T10:00:00.000Z.",
        }
    ],
    "title": "Invalid Request",
    "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request",
}
OLD_NEWEST = "1933199999999999990"  # the newest id of x_page(10, 2, None), the cursor a week ago


async def test_x_a_since_id_older_than_a_week_restarts_from_what_x_still_has(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """After a week without a poll X refuses the cursor's since_id; the poll starts again from the last 7
    days instead of failing for ever, says so (log and metric), and the next poll uses the new since_id."""
    week_later = False

    async def search(request: web.Request) -> web.StreamResponse:
        if not week_later:
            body = payload("x_recent_empty.json") if "since_id" in request.query else x_page(10, 2, None)
            return web.Response(body=body, content_type="application/json")
        if request.query.get("since_id") == OLD_NEWEST:
            return web.json_response(EXPIRED_SINCE_ID, status=400)
        if "since_id" in request.query:
            return web.Response(body=payload("x_recent_empty.json"), content_type="application/json")
        return web.Response(body=x_page(0, 2, None), content_type="application/json")

    http_server.route("/2/tweets/search/recent", search)
    app = await make_app(create_x, x_yaml(http_server))
    [first] = await app.poll_all()
    assert first.published == 2
    week_later = True
    with capture_logs() as logs:
        [second] = await app.poll_all()
    assert second.error is None and second.published == 2
    assert len(await read_mentions(nats_server.url)) == 4
    assert metric(app.metrics, "veille_source_cursor_expired_total", source="x", target="acme") == 1
    assert any(e["event"] == "ingest.cursor_expired" and e["since_id"] == OLD_NEWEST for e in logs)
    [third] = await app.poll_all()
    assert http_server.requests_to("/2/tweets/search/recent")[-1].query["since_id"] == "1933200000000000000"
    assert third.error is None and third.published == 0


async def test_x_a_400_that_does_not_name_since_id_still_fails_the_poll(
    make_app: Callable[..., Any], http_server: LoopbackServer, nats_server: NatsServerProcess
) -> None:
    """Only the expired cursor is recovered from: another invalid request stays an http_4xx failure."""
    other = dict(EXPIRED_SINCE_ID, errors=[{"parameters": {"query": ["("]}, "message": "bad query"}])

    async def search(request: web.Request) -> web.StreamResponse:
        if "since_id" in request.query:
            return web.json_response(other, status=400)
        return web.Response(body=x_page(10, 2, None), content_type="application/json")

    http_server.route("/2/tweets/search/recent", search)
    app = await make_app(create_x, x_yaml(http_server))
    await app.poll_all()
    [outcome] = await app.poll_all()
    assert outcome.error is not None and outcome.error.kind == "http_4xx"
    assert metric(app.metrics, "veille_source_cursor_expired_total", source="x", target="acme") == 0
