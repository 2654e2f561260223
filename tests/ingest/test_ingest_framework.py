"""Unit tests of the ingestor framework's pure parts: backoff, Retry-After, URLs, text, gating."""

from __future__ import annotations

import importlib

import pytest
from ingest_helpers import config_from, settings_for

from services import SERVICES
from veille.ingest.backoff import Backoff, jittered
from veille.ingest.cursors import cursor_key
from veille.ingest.http import parse_retry_after, quota_remaining, quota_reset
from veille.ingest.textclean import clean_text, decode_utf8
from veille.ingest.urls import canonical_url, unwrap_redirect

INGESTORS = sorted(name for name in SERVICES if name.startswith("ingest-"))


def test_backoff_grows_caps_and_never_retries_before_retry_after() -> None:
    """Delays double per failure up to the cap; a Retry-After is a floor even above the cap."""
    backoff = Backoff(base=5, factor=2, maximum=60, jitter=0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 60]
    assert backoff.delay(1, retry_after=120) == 120
    assert backoff.delay(4, retry_after=1) == 40
    assert jittered(100, 0.1, rand=lambda: 0.0) == pytest.approx(90)
    assert jittered(100, 0.1, rand=lambda: 1.0) == pytest.approx(110)


def test_retry_after_and_quota_headers_are_read_in_both_forms() -> None:
    """Retry-After as seconds or HTTP date; quota remaining and reset as seconds or an epoch."""
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Thu, 12 Jun 2025 12:01:00 GMT", now=1749729600.0) == 60
    assert parse_retry_after("soon") is None
    assert quota_remaining({"X-Ratelimit-Remaining": "598.0"}) == 598
    assert quota_reset({"x-ratelimit-reset": "420"}) == 420
    assert quota_reset({"x-rate-limit-reset": "1749729700"}, now=1749729600.0) == 100


def test_canonical_urls_drop_tracking_and_google_redirects_are_unwrapped() -> None:
    """Tracking parameters, fragments, default ports and trailing slashes do not change the id."""
    assert canonical_url("HTTPS://Example.com:443/a/?utm_source=x&b=2&a=1#top") == "https://example.com/a?a=1&b=2"
    wrapped = "https://www.google.com/url?rct=j&sa=t&url=https://news.example/a%3Fb%3D1&ct=ga&usg=x"
    assert unwrap_redirect(wrapped) == "https://news.example/a?b=1"
    assert unwrap_redirect("https://www.google.com/url?url=javascript:alert(1)").startswith("https://www.google.com")


def test_html_and_invalid_utf8_are_cleaned_and_reported() -> None:
    """Tags and scripts are stripped and reported; invalid UTF-8 becomes U+FFFD and is reported."""
    assert clean_text("<p>Hi <b>there</b></p><script>x()</script>") == ("Hi there", True)
    assert clean_text("plain &amp; simple", html_allowed=False) == ("plain & simple", True)
    assert decode_utf8(b"caf\xe9") == ("caf\ufffd", True)


def test_cursor_keys_are_valid_kv_keys_and_distinct() -> None:
    """Keys keep a readable part, only use KV-safe characters, and differ for different targets."""
    one = cursor_key("rss", "feed", "https://a.example/feed?x=1")
    two = cursor_key("rss", "feed", "https://a.example/feed?x=2")
    assert one != two
    assert all(c.isalnum() or c in "._-" for c in one)


@pytest.mark.parametrize("name", INGESTORS)
def test_an_ingestor_without_its_section_reaches_nowhere(name: str) -> None:
    """With no source section in the config, no ingestor has a target or a stream, and veille up skips it."""
    module = importlib.import_module(SERVICES[name])
    config = config_from("watches:\n  - name: acme\n    query: acme\n")
    app = module.create_app(settings_for("nats://127.0.0.1:1"), config=config)
    assert app._poller.targets() == [] and app._streams == []
    assert module.enabled(config) is False
