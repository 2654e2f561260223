"""Silences: matchers plus a time window, kept in the ``veille_silences`` KV bucket.

Every replica and the command line read and write the same bucket, so a silence added with
``veille silence add`` holds for every notifier at once. Expiring a silence sets its end to now;
the entry is kept (the bucket's TTL-free history shows who silenced what and when).

A notifier does not read the bucket per batch: :meth:`SilenceStore.watch` keeps the silences in memory
from a KV watch (one ordered push consumer: every key's last value at start, then each put, expiry and
delete as it is stored). A silence added holds once its put reaches the notifier (milliseconds, as
Alertmanager's silences reach its peers by gossip); whether a silence holds is decided against the
notifier's clock when a group is planned, so one that ends stops holding at its end without any
message. Memory stays bounded: silences that ended are dropped, and at most :data:`MAX_HELD_SILENCES`
are held. When the watch fails, and after the connection to NATS reconnected (the server may have lost
the watch's consumer, and nats-py does not tell), the notifier reads the bucket per plan again until a
new watch has delivered every key; a watch quiet for :data:`WATCH_REFRESH` seconds is started afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime, timedelta
from typing import Any

import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.notifier.model import Clock, alert_labels, kv_keys
from veille import bus
from veille.config import Matcher
from veille.models import AlertRaised
from veille.tasks import cancel_and_wait

__all__ = ["MAX_HELD_SILENCES", "Silence", "SilenceStore", "active_silences", "silenced_by"]

log = structlog.get_logger("notifier")
MAX_HELD_SILENCES = 10_000
"""Silences (active or pending) a notifier holds in memory; past it, a new one is not held (logged)."""
WATCH_REFRESH = 60.0
"""Seconds without any change after which the watch is started afresh (a complete snapshot again): a watch
that died unnoticed is replaced. After a reconnect the bucket is read per plan until a new watch is up."""


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
        self._held: dict[str, Silence] | None = None
        """The silences from the watch (None: no watch up to date, read the bucket)."""
        self._clock: Clock | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._refresh = WATCH_REFRESH
        self._watched_from = -1
        """The connection's reconnect count when the watch started."""

    def _reconnects(self) -> int:
        """How many times the NATS connection reconnected (after one, the server may have lost the watch)."""
        connection = getattr(self.js, "_nc", None)
        stats = getattr(connection, "stats", None)
        return int(stats.get("reconnects", 0)) if isinstance(stats, dict) else 0

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

    # ------------------------------------------------------------------ held in memory (the notifier)

    async def watch(self, clock: Clock, *, timeout: float = 10.0, refresh: float = WATCH_REFRESH) -> None:
        """Hold the silences in memory from a KV watch; return once every stored one is held (or ``timeout``).

        Until then, and whenever the watch fails, :meth:`held` reads the bucket instead.
        """
        self._clock = clock
        self._refresh = refresh
        self._watch_task = asyncio.create_task(self._watch_loop(), name="notifier-silences-watch")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop_watch(self) -> None:
        """Stop the watch (the silences are read from the bucket again)."""
        await cancel_and_wait([self._watch_task])
        self._watch_task = None
        self._held = None

    async def held(self) -> list[Silence]:
        """The silences that hold now or later, oldest first: from memory when watched, else read from the bucket."""
        if self._held is None or self._clock is None or self._reconnects() != self._watched_from:
            return await self.all()  # no watch up to date (a reconnect may have lost it: nats-py does not tell)
        now = self._clock()
        ended = [key for key, silence in self._held.items() if silence.ends_at <= now]
        for key in ended:  # memory: an ended silence never holds again (unless put again: the watch brings it)
            del self._held[key]
        return sorted(self._held.values(), key=lambda s: s.created_at)

    async def _watch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            watcher: Any = None
            try:
                watched_from = self._reconnects()
                watcher = await self.kv.watchall()
                snapshot: dict[str, Silence] = {}
                while True:  # every key's last value, then None
                    entry = await watcher.updates(timeout=30.0)
                    if entry is None:
                        break
                    self._apply(snapshot, entry)
                self._held, self._watched_from = snapshot, watched_from  # (meanwhile, the previous watch's)
                self._ready.set()
                quiet_since = loop.time()
                while True:
                    try:
                        entry = await watcher.updates(timeout=1.0)
                    except nats.errors.TimeoutError:
                        if self._reconnects() != watched_from or loop.time() - quiet_since > self._refresh:
                            break  # reconnected (the server may have lost the watch) or quiet a while: afresh
                        continue
                    quiet_since = loop.time()
                    if entry is None:
                        continue
                    if not isinstance(entry, KeyValue.Entry):
                        raise RuntimeError("silences watch stopped")
                    self._apply(self._held, entry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._held = None
                log.warning("notifier.silences_watch_failed", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)
            finally:
                if watcher is not None:
                    with contextlib.suppress(Exception):
                        await watcher.stop()

    def _apply(self, held: dict[str, Silence], entry: Any) -> None:
        """One watch update: a put replaces the silence, a delete or purge (or an unreadable value) drops it."""
        key = str(entry.key)
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            held.pop(key, None)
            return
        try:
            silence = Silence.model_validate_json(entry.value)
        except ValidationError as exc:
            held.pop(key, None)
            log.warning("notifier.silence_unreadable", key=key, error=str(exc).splitlines()[0])
            return
        assert self._clock is not None
        if silence.ends_at <= self._clock():
            held.pop(key, None)  # ended (expired): it never holds again
            return
        if key not in held and len(held) >= MAX_HELD_SILENCES:
            now = self._clock()
            for ended in [k for k, s in held.items() if s.ends_at <= now]:
                del held[ended]
            if len(held) >= MAX_HELD_SILENCES:
                log.warning("notifier.silences_over_limit", silence_id=silence.id, held=len(held))
                return
        held[key] = silence
