"""Source fetches follow redirects, but never towards a metadata service or from the internet inward.

These use httpx's in-memory MockTransport on purpose: the redirects point at link-local, private and
public addresses that a test must never send a packet to. The transport records every request the
client really made, so "refused" means "never requested".
"""

from __future__ import annotations

import httpx
import pytest

from veille.httpclient import make_http_client
from veille.ingest.http import Fetcher, FetchError

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'


class Body(httpx.AsyncByteStream):
    """A response body streamed as a network one is (the Fetcher reads bodies chunk by chunk)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield self.data


def fetcher_for(redirects: dict[str, str]) -> tuple[Fetcher, list[str]]:
    """A Fetcher whose transport answers 302 for the URLs in ``redirects`` and a feed otherwise."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        target = redirects.get(str(request.url))
        if target is not None:
            return httpx.Response(302, headers={"Location": target})
        return httpx.Response(200, stream=Body(FEED), headers={"Content-Type": "application/rss+xml"})

    client = make_http_client(user_agent="veille-test", transport=httpx.MockTransport(handler))
    return Fetcher(client, timeout=10.0), seen


@pytest.mark.parametrize(
    ("origin", "target"),
    [
        ("http://93.184.216.34/feed", "http://169.254.169.254/latest/meta-data/iam/"),
        ("http://127.0.0.1:8080/feed", "http://169.254.169.254/latest/meta-data/"),
        ("http://93.184.216.34/feed", "http://[fe80::1]/"),
        ("http://93.184.216.34/feed", "http://10.1.2.3:8222/varz"),
        ("http://93.184.216.34/feed", "http://192.168.1.1/admin"),
        ("http://93.184.216.34/feed", "http://localhost:8222/connz"),
        ("http://[2606:2800:220:1:248:1893:25c8:1946]/feed", "http://[::1]:4222/"),
    ],
)
async def test_a_redirect_inward_is_refused_and_never_requested(origin: str, target: str) -> None:
    """A feed redirecting to a metadata service, or from a public address to a private one, is a
    non-retryable redirect_refused error naming both hosts; the target is never requested."""
    fetcher, seen = fetcher_for({origin: target})
    with pytest.raises(FetchError) as caught:
        await fetcher.get(origin)
    assert caught.value.kind == "redirect_refused" and not caught.value.retryable
    assert httpx.URL(target).host in str(caught.value)
    assert seen == [origin]
    await fetcher.client.aclose()


@pytest.mark.parametrize(
    ("origin", "target"),
    [
        ("http://93.184.216.34/feed", "http://93.184.216.35/feeds/main.xml"),  # public to public
        ("http://127.0.0.1:8080/feed", "http://127.0.0.1:8081/feed.xml"),  # a feed on ops' own machine
        ("http://10.0.0.5/feed", "http://10.0.0.6/feed"),  # a feed on ops' own network
    ],
)
async def test_ordinary_redirects_are_still_followed(origin: str, target: str) -> None:
    """Moved feeds keep working: public to public, and within the private network ops configured."""
    fetcher, seen = fetcher_for({origin: target})
    response = await fetcher.get(origin)
    assert response.status == 200 and response.body == FEED
    assert seen == [origin, target]
    await fetcher.client.aclose()


async def test_the_notifier_client_follows_no_redirect_at_all() -> None:
    """The notifier's client (follow_redirects off) has no redirect to guard: a 3xx comes back as is."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"Location": "http://169.254.169.254/"})

    client = make_http_client(user_agent="t", transport=httpx.MockTransport(handler), follow_redirects=False)
    response = await client.post("http://127.0.0.1:9/hook", content=b"{}")
    assert response.status_code == 307 and seen == ["http://127.0.0.1:9/hook"]
    await client.aclose()
