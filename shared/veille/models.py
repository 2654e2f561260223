"""Message contracts exchanged on the bus, versioned pydantic models.

Every message carries ``schema_version``. A new optional field is a compatible change; removing or
retyping a field needs a new version and a new subject suffix (see :mod:`veille.bus`).
Events are named in the past tense (``MentionIngested``), after the cosmicpython habit.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "AlertRaised",
    "DeadLettered",
    "Engagement",
    "MentionClassified",
    "MentionIngested",
    "SampleMention",
    "Sentiment",
    "Severity",
    "bounded_fields",
    "mention_id_for",
    "truncate",
    "utcnow",
]

Sentiment = Literal["negative", "neutral", "positive"]
Severity = Literal["info", "warning", "critical"]


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def mention_id_for(source: str, native_id: str) -> str:
    """Return the stable mention id for a source's native id (or canonical URL).

    The id is short, deterministic and safe as a ``Nats-Msg-Id``: the same item seen twice, by
    the same or another replica, gets the same id, so JetStream drops the second publish.
    """
    digest = hashlib.sha256(f"{source}\x1f{native_id}".encode()).hexdigest()[:32]
    return f"{source}:{digest}"


# Bounds. Text that comes from the outside world is cut here, at the edge, with a visible marker, so a
# mention, a classified mention and an alert always fit in a NATS message, a KV value and a dead letter
# (a 99,000-character title once made alerts of 200 KB and notification groups over 1 MB). The limits
# are far above what a real post reaches; a string over ``str_max_length`` (1,000,000 characters) is
# still refused outright (``invalid_schema``): that is not a post, it is an attack or a bug.
MAX_TITLE = 1_000
MAX_TEXT = 20_000
MAX_URL = 2_048
MAX_NAME = 200
"""Author, site, watch and other short names."""
MAX_SOURCE = 64
MAX_LANG = 16
# Alerts quote mentions as short excerpts, so a notification group of 100 alerts stays well under 1 MB.
MAX_SUMMARY = 500
MAX_SAMPLE_TITLE = 200
MAX_SAMPLE_TEXT = 300
TRUNCATION_MARKER = " [...]"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""Times before this are parser defaults (year 1, 1900), not real publication or ingestion times."""
MAX_AHEAD = timedelta(days=1)
"""Times more than this ahead of the clock are wrong (a bad clock or a year-9999 sentinel)."""

_bounded: Counter[tuple[str, str]] = Counter()
_bounded_lock = threading.Lock()


def _tally(field: str, action: str) -> None:
    with _bounded_lock:
        _bounded[field, action] += 1


def bounded_fields() -> dict[tuple[str, str], int]:
    """How many values this process cut or replaced at the edge, by ``(field, action)``.

    Actions: ``truncated`` (text cut with :data:`TRUNCATION_MARKER`), ``dropped`` (a URL or language
    too long to be one, set to null), ``clamped`` (an implausible time replaced). Exported by every
    service as ``veille_message_fields_bounded_total`` (see :mod:`veille.metrics`).
    """
    with _bounded_lock:
        return dict(_bounded)


def truncate(value: str, limit: int) -> str:
    """``value`` cut to at most ``limit`` characters, ending with :data:`TRUNCATION_MARKER` when cut."""
    if len(value) <= limit:
        return value
    return value[: max(0, limit - len(TRUNCATION_MARKER))] + TRUNCATION_MARKER


def _cut(field: str, limit: int) -> Any:
    def cut(value: str | None) -> str | None:
        if value is None or len(value) <= limit:
            return value
        _tally(field, "truncated")
        return truncate(value, limit)

    return AfterValidator(cut)


def _drop_if_longer(field: str, limit: int) -> Any:
    def drop(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            _tally(field, "dropped")
            return None
        return value

    return BeforeValidator(drop)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_THIS_YEAR = utcnow().year


def _plausible(value: datetime) -> bool:
    # The clock is read only for times from this year on: most times are settled by their year.
    return value >= EARLIEST and (value.year < _THIS_YEAR or value <= utcnow() + MAX_AHEAD)


def _clamp_to_now(field: str) -> Any:
    def clamp(value: datetime) -> datetime:
        value = _aware(value)
        if _plausible(value):
            return value
        _tally(field, "clamped")
        return utcnow()

    return AfterValidator(clamp)


def _none_if_implausible(field: str) -> Any:
    def check(value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = _aware(value)
        if _plausible(value):
            return value
        _tally(field, "dropped")
        return None

    return AfterValidator(check)


def _cut_items(field: str, limit: int, items: int) -> Any:
    def cut(values: list[str]) -> list[str]:
        if len(values) <= items and all(len(v) <= limit for v in values):
            return values
        _tally(field, "truncated")
        return [truncate(v, limit) for v in values[:items]]

    return AfterValidator(cut)


MAX_SAMPLES = 5
"""Most sample mentions an alert carries."""
MAX_TOP = 10
"""Most top terms (and top sources) an alert lists."""
MAX_TERM = 100
"""Longest top term or source an alert lists."""


def _first_samples(values: list[Any]) -> list[Any]:
    if len(values) <= MAX_SAMPLES:
        return values
    _tally("alert.samples", "truncated")
    return values[:MAX_SAMPLES]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, str_max_length=1_000_000)


class Engagement(_Message):
    """Counts of interactions a source reports for a mention (absent when unknown)."""

    likes: int | None = None
    reposts: int | None = None
    replies: int | None = None
    score: int | None = None


class MentionIngested(_Message):
    """A raw mention published by an ingestor, exactly as found at the source."""

    schema_version: Literal[1] = 1
    id: str = Field(description="Stable id, also the Nats-Msg-Id: same item, same id.")
    source: Annotated[str, _cut("mention.source", MAX_SOURCE)] = Field(
        description="Ingestor that found it: rss, hackernews, bluesky, ..."
    )
    watch: Annotated[str | None, _cut("mention.watch", MAX_NAME)] = Field(
        default=None, description="Watch whose query found it, when the source searched for one."
    )
    url: Annotated[AnyHttpUrl | None, _drop_if_longer("mention.url", MAX_URL)] = Field(
        default=None, description=f"Permalink to the mention (dropped when over {MAX_URL} characters)."
    )
    title: Annotated[str | None, _cut("mention.title", MAX_TITLE)] = Field(
        default=None, description=f"Title, cut to {MAX_TITLE} characters."
    )
    text: Annotated[str, _cut("mention.text", MAX_TEXT)] = Field(
        default="", description=f"Plain text of the mention (HTML stripped), cut to {MAX_TEXT} characters."
    )
    author: Annotated[str | None, _cut("mention.author", MAX_NAME)] = None
    author_followers: int | None = None
    site: Annotated[str | None, _cut("mention.site", MAX_NAME)] = Field(
        default=None, description="Publisher or host name."
    )
    lang: Annotated[str | None, _drop_if_longer("mention.lang", MAX_LANG)] = Field(
        default=None, description="Language the source declares (ISO 639-1)."
    )
    published_at: Annotated[datetime | None, _none_if_implausible("mention.published_at")] = Field(
        default=None, description="When the source says it was published (null when implausible)."
    )
    ingested_at: Annotated[datetime, _clamp_to_now("mention.ingested_at")] = Field(
        default_factory=utcnow, description="When it was ingested (the receiver's time when implausible)."
    )
    engagement: Engagement = Field(default_factory=Engagement)


class MentionClassified(_Message):
    """A mention after classification: language, sentiment and the watches it matches."""

    schema_version: Literal[1] = 1
    mention: MentionIngested
    lang: str | None = Field(default=None, description="Detected or declared language (ISO 639-1).")
    sentiment: Sentiment
    sentiment_score: float = Field(ge=-1.0, le=1.0)
    watches: list[str] = Field(default_factory=list, description="Names of the watches that match.")
    story_id: str | None = Field(default=None, description="Near-duplicate cluster id.")
    classified_at: datetime = Field(default_factory=utcnow)


class SampleMention(_Message):
    """A mention quoted in an alert to show why it fired."""

    id: str
    source: Annotated[str, _cut("sample.source", MAX_SOURCE)]
    url: Annotated[str | None, _drop_if_longer("sample.url", MAX_URL)] = None
    title: Annotated[str | None, _cut("sample.title", MAX_SAMPLE_TITLE)] = None
    text: Annotated[str, _cut("sample.text", MAX_SAMPLE_TEXT)] = ""
    author: Annotated[str | None, _cut("sample.author", MAX_NAME)] = None
    sentiment: Sentiment | None = None
    published_at: datetime | None = None


class AlertRaised(_Message):
    """An alert about a watch: a negative mention, a surge, or a surge resolving.

    ``id`` is deterministic (derived from watch, kind and the bucket or mention that caused it), so
    a replay or a restart raises the same id and the notification log drops the repeat.
    """

    schema_version: Literal[1] = 1
    id: str
    watch: str
    kind: Literal["negative_mention", "volume_spike", "negative_spike"]
    status: Literal["firing", "resolved"] = "firing"
    severity: Severity = "warning"
    summary: Annotated[str, _cut("alert.summary", MAX_SUMMARY)] = Field(
        description="One line saying why the alert fired."
    )
    lang: str | None = None
    source: str | None = None
    observed: float | None = Field(default=None, description="Observed value (mentions in the bucket).")
    expected: float | None = Field(default=None, description="Baseline value the detector expected.")
    statistic: float | None = None
    threshold: float | None = None
    negative_share: float | None = None
    mention_count: int = 0
    story_count: int = 0
    top_terms: Annotated[list[str], _cut_items("alert.top_terms", MAX_TERM, MAX_TOP)] = Field(default_factory=list)
    top_sources: Annotated[list[str], _cut_items("alert.top_sources", MAX_TERM, MAX_TOP)] = Field(default_factory=list)
    samples: Annotated[list[SampleMention], AfterValidator(_first_samples)] = Field(default_factory=list)
    started_at: datetime = Field(default_factory=utcnow)
    ends_at: datetime | None = None
    raised_at: datetime = Field(default_factory=utcnow)
    labels: dict[str, str] = Field(default_factory=dict)


class DeadLettered(_Message):
    """A message a service could not process, kept with its reason so nothing is lost."""

    schema_version: Literal[1] = 1
    service: str
    subject: str = Field(description="Subject the message came from.")
    reason: str
    error_kind: str = Field(description="Short machine-readable kind: invalid_json, invalid_schema, ...")
    payload: str = Field(description="Original payload, base64-encoded.")
    headers: dict[str, str] = Field(default_factory=dict)
    attempts: int = 1
    dead_at: datetime = Field(default_factory=utcnow)
    receiver: str | None = Field(default=None, description="For notifications: the receiver that failed.")
    truncated: bool = Field(
        default=False, description="The payload kept is only the first bytes of the original (too big to embed)."
    )
    original_size: int | None = Field(default=None, description="Size of the original payload in bytes.")
    original_sha256: str | None = Field(default=None, description="SHA-256 of the original payload (hex).")
    origin_stream: str | None = Field(default=None, description="Stream the original message still sits in.")
    origin_seq: int | None = Field(default=None, description="Its sequence in that stream.")
