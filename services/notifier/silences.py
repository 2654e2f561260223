"""Silences: matchers plus a time window, kept in the ``veille_silences`` KV bucket.

Every replica and the command line read and write the same bucket, so a silence added with
``veille silence add`` holds for every notifier at once. Expiring a silence sets its end to now;
the entry is kept (the bucket's TTL-free history shows who silenced what and when).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.notifier.model import alert_labels, kv_keys
from veille import bus
from veille.config import Matcher
from veille.models import AlertRaised

__all__ = ["Silence", "SilenceStore", "active_silences", "silenced_by"]


class Silence(BaseModel):
    """Mute alerts whose labels match every matcher, from ``starts_at`` until ``ends_at``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(default_factory=lambda: f"sil_{uuid.uuid4().hex[:20]}")
    matchers: list[str] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    created_by: str = ""
    comment: str = ""
    created_at: datetime

    @field_validator("matchers")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        for text in value:
            Matcher.parse(text)
        return value

    def active(self, now: datetime) -> bool:
        """Whether the silence holds at ``now``."""
        return self.starts_at <= now < self.ends_at

    def state(self, now: datetime) -> str:
        """``active``, ``pending`` or ``expired``."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def matches(self, alert: AlertRaised) -> bool:
        """Whether every matcher matches the alert's labels."""
        labels = alert_labels(alert)
        return all(Matcher.parse(text).matches(labels) for text in self.matchers)

    @classmethod
    def create(
        cls, matchers: list[str], *, now: datetime, duration: timedelta, comment: str = "", created_by: str = ""
    ) -> Silence:
        """A new silence starting now and lasting ``duration``."""
        return cls(
            matchers=matchers,
            starts_at=now,
            ends_at=now + duration,
            comment=comment,
            created_by=created_by,
            created_at=now,
        )


def active_silences(silences: list[Silence], now: datetime) -> list[Silence]:
    """The silences holding at ``now``."""
    return [s for s in silences if s.active(now)]


def silenced_by(alert: AlertRaised, silences: list[Silence], now: datetime) -> Silence | None:
    """The first active silence muting ``alert``, if any."""
    for silence in silences:
        if silence.active(now) and silence.matches(alert):
            return silence
    return None


class SilenceStore:
    """Reads and writes silences in the shared KV bucket."""

    def __init__(self, kv: Any, js: Any) -> None:
        self.kv = kv
        self.js = js

    @classmethod
    async def open(cls, js: JetStreamContext) -> SilenceStore:
        """Open the silences bucket (created by ``ensure_topology``; created here if missing)."""
        try:
            kv = await js.key_value(bus.SILENCES.name)
        except Exception:
            kv = await js.create_key_value(bus.SILENCES.config())
        return cls(kv, js)

    async def put(self, silence: Silence) -> None:
        """Store (or replace) a silence."""
        await self.kv.put(silence.id, silence.model_dump_json().encode())

    async def get(self, silence_id: str) -> Silence | None:
        """The silence with this id, or None."""
        try:
            entry = await self.kv.get(silence_id)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return Silence.model_validate_json(entry.value)

    async def all(self) -> list[Silence]:
        """Every stored silence, oldest first."""
        out = []
        for key in await kv_keys(self.js, bus.SILENCES.name):
            silence = await self.get(key)
            if silence is not None:
                out.append(silence)
        return sorted(out, key=lambda s: s.created_at)

    async def expire(self, silence_id: str, now: datetime) -> Silence | None:
        """End a silence now; return it, or None when there is no such silence."""
        silence = await self.get(silence_id)
        if silence is None:
            return None
        if silence.ends_at > now:
            silence = silence.model_copy(update={"ends_at": max(now, silence.starts_at)})
            await self.put(silence)
        return silence
