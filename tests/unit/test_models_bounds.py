"""Property-based tests of the bounds the message contracts apply at the edge: text cut, times plausible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veille.models import (
    EARLIEST,
    MAX_AHEAD,
    MAX_NAME,
    MAX_SAMPLE_TEXT,
    MAX_SAMPLE_TITLE,
    MAX_SAMPLES,
    MAX_SUMMARY,
    MAX_TERM,
    MAX_TEXT,
    MAX_TITLE,
    MAX_TOP,
    TRUNCATION_MARKER,
    AlertRaised,
    MentionIngested,
    SampleMention,
    bounded_fields,
    utcnow,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHARS = st.characters(blacklist_categories=("Cs",))
# Short strings, and long ones built by repeating a short one (cheap to generate, up to 100,000 chars).
LONG = st.builds(lambda s, n: (s or "x") * n, st.text(CHARS, min_size=1, max_size=20), st.integers(1, 5000))
ANY_TEXT = st.text(CHARS, max_size=50) | LONG
WHEN = st.datetimes(timezones=st.just(UTC))


def _check_cut(original: str, value: str, limit: int) -> None:
    if len(original) <= limit:
        assert value == original
    else:
        assert len(value) == limit and value.endswith(TRUNCATION_MARKER)
        assert original.startswith(value.removesuffix(TRUNCATION_MARKER))


@SETTINGS
@given(title=ANY_TEXT, text=ANY_TEXT, author=ANY_TEXT, site=ANY_TEXT, source=ANY_TEXT)
def test_mention_text_fields_are_cut_to_their_bounds_with_a_marker(
    title: str, text: str, author: str, site: str, source: str
) -> None:
    """Title, text, author, site and source are kept whole under their bound and cut with a marker over it."""
    mention = MentionIngested(id="rss:1", source=source, title=title, text=text, author=author, site=site)
    assert mention.title is not None and mention.author is not None and mention.site is not None
    _check_cut(title, mention.title, MAX_TITLE)
    _check_cut(text, mention.text, MAX_TEXT)
    _check_cut(author, mention.author, MAX_NAME)
    _check_cut(site, mention.site, MAX_NAME)
    assert len(mention.source) <= 64
    again = MentionIngested.model_validate_json(mention.model_dump_json())
    assert again == mention, "bounding is idempotent"


@SETTINGS
@given(path=st.text(st.sampled_from("abcxyz019-_"), min_size=1, max_size=4000))
def test_a_url_over_the_bound_is_dropped_not_cut(path: str) -> None:
    """A URL over 2,048 characters becomes null (a cut URL would point elsewhere); a shorter one is kept."""
    url = f"https://news.example/{path}"
    mention = MentionIngested(id="rss:1", source="rss", url=url)  # type: ignore[arg-type]
    if len(url) > 2048:
        assert mention.url is None
    else:
        assert str(mention.url) == url


@SETTINGS
@given(published=st.none() | WHEN, ingested=WHEN)
def test_times_are_always_plausible(published: datetime | None, ingested: datetime) -> None:
    """Any published_at or ingested_at, year 1 to 9999, comes out null or between 1970 and a day ahead."""
    before = bounded_fields().get(("mention.ingested_at", "clamped"), 0)
    mention = MentionIngested(id="rss:1", source="rss", published_at=published, ingested_at=ingested)
    ceiling = utcnow() + MAX_AHEAD
    assert EARLIEST <= mention.ingested_at <= ceiling
    if EARLIEST <= ingested <= ceiling - timedelta(seconds=1):
        assert mention.ingested_at == ingested
    elif not EARLIEST <= ingested <= ceiling:
        assert bounded_fields()[("mention.ingested_at", "clamped")] > before
    if mention.published_at is not None:
        assert EARLIEST <= mention.published_at <= ceiling


SAMPLES = st.builds(
    SampleMention,
    id=st.text(CHARS, max_size=40),
    source=ANY_TEXT,
    url=st.none() | st.text(st.sampled_from("abc/:."), max_size=3000),
    title=st.none() | ANY_TEXT,
    text=ANY_TEXT,
    author=st.none() | ANY_TEXT,
)


@SETTINGS
@given(summary=ANY_TEXT, samples=st.lists(SAMPLES, max_size=25), terms=st.lists(ANY_TEXT, max_size=30))
def test_an_alert_quotes_short_excerpts_and_stays_small(
    summary: str, samples: list[SampleMention], terms: list[str]
) -> None:
    """Whatever mentions an alert quotes, its summary and samples are excerpts, so 100 alerts fit in one message."""
    alert = AlertRaised(
        id="alert-1", watch="acme", kind="volume_spike", summary=summary, samples=samples, top_terms=terms
    )
    assert len(alert.summary) <= MAX_SUMMARY
    assert len(alert.samples) <= MAX_SAMPLES and len(alert.top_terms) <= MAX_TOP
    assert all(len(t) <= MAX_TERM for t in alert.top_terms)
    for sample in alert.samples:
        assert len(sample.title or "") <= MAX_SAMPLE_TITLE and len(sample.text) <= MAX_SAMPLE_TEXT
        assert len(sample.url or "") <= 2048 and len(sample.author or "") <= MAX_NAME
    # Characters, not bytes: at most 6 bytes each in JSON (a \\uXXXX escape).
    per_sample = 6 * (64 + MAX_SAMPLE_TITLE + MAX_SAMPLE_TEXT + MAX_NAME + 40) + 2048 + 300
    bound = 6 * (MAX_SUMMARY + MAX_TOP * MAX_TERM) + MAX_SAMPLES * per_sample + 2000
    assert len(alert.model_dump_json().encode()) <= bound
