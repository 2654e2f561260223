"""Message contracts exchanged on the bus, versioned pydantic models.

Every message carries ``schema_version``. A new optional field is a compatible change; removing or
retyping a field needs a new version and a new subject suffix (see :mod:`veille.bus`).
Events are named in the past tense (``MentionIngested``), after the cosmicpython habit.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

__all__ = [
    "AlertRaised",
    "DeadLettered",
    "Engagement",
    "MentionClassified",
    "MentionIngested",
    "SampleMention",
    "Sentiment",
    "Severity",
    "mention_id_for",
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
    source: str = Field(description="Ingestor that found it: rss, hackernews, bluesky, ...")
    watch: str | None = Field(default=None, description="Watch whose query found it, when the source searched for one.")
    url: AnyHttpUrl | None = Field(default=None, description="Permalink to the mention.")
    title: str | None = None
    text: str = Field(default="", description="Plain text of the mention (HTML stripped).")
    author: str | None = None
    author_followers: int | None = None
    site: str | None = Field(default=None, description="Publisher or host name.")
    lang: str | None = Field(default=None, description="Language the source declares (ISO 639-1).")
    published_at: datetime | None = Field(default=None, description="When the source says it was published.")
    ingested_at: datetime = Field(default_factory=utcnow)
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
    source: str
    url: str | None = None
    title: str | None = None
    text: str = ""
    author: str | None = None
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
    summary: str = Field(description="One line saying why the alert fired.")
    lang: str | None = None
    source: str | None = None
    observed: float | None = Field(default=None, description="Observed value (mentions in the bucket).")
    expected: float | None = Field(default=None, description="Baseline value the detector expected.")
    statistic: float | None = None
    threshold: float | None = None
    negative_share: float | None = None
    mention_count: int = 0
    story_count: int = 0
    top_terms: list[str] = Field(default_factory=list)
    top_sources: list[str] = Field(default_factory=list)
    samples: list[SampleMention] = Field(default_factory=list)
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
