"""Property-based tests of the message contracts: JSON round trips, and bad bytes only ever fail validation."""

from __future__ import annotations

import contextlib
from datetime import UTC

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from veille.models import (
    AlertRaised,
    DeadLettered,
    Engagement,
    MentionClassified,
    MentionIngested,
    SampleMention,
    mention_id_for,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON text cannot hold lone surrogates, so neither can a message that came off the bus.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
OPT_TEXT = st.none() | TEXT
WHEN = st.datetimes(timezones=st.just(UTC))
COUNT = st.none() | st.integers(min_value=-(2**53), max_value=2**53)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
URL = st.none() | st.sampled_from(["https://news.example/a?b=1#c", "http://127.0.0.1:8080/x", "https://exämple.fr/é"])

MENTIONS = st.builds(
    MentionIngested,
    id=TEXT,
    source=TEXT,
    watch=OPT_TEXT,
    url=URL,
    title=OPT_TEXT,
    text=TEXT,
    author=OPT_TEXT,
    author_followers=COUNT,
    site=OPT_TEXT,
    lang=OPT_TEXT,
    published_at=st.none() | WHEN,
    ingested_at=WHEN,
    engagement=st.builds(Engagement, likes=COUNT, reposts=COUNT, replies=COUNT, score=COUNT),
)
SENTIMENT = st.sampled_from(["negative", "neutral", "positive"])
CLASSIFIED = st.builds(
    MentionClassified,
    mention=MENTIONS,
    lang=OPT_TEXT,
    sentiment=SENTIMENT,
    sentiment_score=st.floats(min_value=-1.0, max_value=1.0),
    watches=st.lists(TEXT, max_size=4),
    story_id=OPT_TEXT,
    classified_at=WHEN,
)
SAMPLES = st.builds(
    SampleMention, id=TEXT, source=TEXT, url=OPT_TEXT, title=OPT_TEXT, text=TEXT, sentiment=st.none() | SENTIMENT
)
ALERTS = st.builds(
    AlertRaised,
    id=TEXT,
    watch=TEXT,
    kind=st.sampled_from(["negative_mention", "volume_spike", "negative_spike"]),
    status=st.sampled_from(["firing", "resolved"]),
    severity=st.sampled_from(["info", "warning", "critical"]),
    summary=TEXT,
    observed=st.none() | FINITE,
    expected=st.none() | FINITE,
    statistic=st.none() | FINITE,
    mention_count=st.integers(min_value=0, max_value=2**40),
    top_terms=st.lists(TEXT, max_size=3),
    samples=st.lists(SAMPLES, max_size=3),
    started_at=WHEN,
    ends_at=st.none() | WHEN,
    raised_at=WHEN,
    labels=st.dictionaries(TEXT, TEXT, max_size=3),
)
LETTERS = st.builds(
    DeadLettered,
    service=TEXT,
    subject=TEXT,
    reason=TEXT,
    error_kind=TEXT,
    payload=TEXT,
    headers=st.dictionaries(TEXT, TEXT, max_size=3),
    attempts=st.integers(min_value=0, max_value=100),
    dead_at=WHEN,
    receiver=OPT_TEXT,
)


@SETTINGS
@given(st.one_of(MENTIONS, CLASSIFIED, ALERTS, LETTERS))
def test_every_message_survives_a_json_round_trip(message: object) -> None:
    """Any valid message serialised to JSON and read back is equal to itself (what the bus carries)."""
    cls = type(message)
    data = message.model_dump_json()  # type: ignore[attr-defined]
    again = cls.model_validate_json(data)  # type: ignore[attr-defined]
    assert again == message
    assert again.model_dump_json() == data


@SETTINGS
@given(st.binary(max_size=300) | TEXT.map(str.encode))
def test_any_bytes_either_validate_or_raise_validation_error(payload: bytes) -> None:
    """Arbitrary bytes as a message either validate or raise pydantic's ValidationError, never another error."""
    for cls in (MentionIngested, MentionClassified, AlertRaised, DeadLettered):
        with contextlib.suppress(ValidationError):
            cls.model_validate_json(payload)


@SETTINGS
@given(TEXT, TEXT, TEXT)
def test_mention_ids_are_stable_and_distinct(source: str, native: str, other: str) -> None:
    """The same (source, native id) gives the same mention id; a different native id gives another."""
    assert mention_id_for(source, native) == mention_id_for(source, native)
    if other != native:
        assert mention_id_for(source, native) != mention_id_for(source, other)
    assert mention_id_for(source, native).startswith(f"{source}:")
