"""The notification log: one KV entry per notification, claimed before it is sent.

Key: ``<target>.<group key hash>.<seq>`` in the ``veille_notify_log`` bucket (``target`` is the
receiver's integration, ``seq`` the group's notification counter); the value holds the full
notification, its alert-set hash, its state and a lease.

- **claim**: a KV *create* (compare-and-set on "no such key"). Of two replicas planning the same
  flush, exactly one creates the entry and sends; the other sees the claim and stands back.
  Keying by sequence rather than by the alert set means two replicas that read slightly different
  group states still collide on one key, so they cannot both send.
- **lease**: the owner renews ``lease_until`` (compare-and-set on the revision it holds) before
  each attempt and before each backoff sleep. If the owner dies, the lease runs out and the next
  replica to plan the group *takes over* the claim and sends the stored notification — the same
  bytes and the same ``webhook-id``.
- **mark**: after the receiver accepted (or the last attempt failed and the notification went to
  the dead-letter stream) the entry becomes ``sent`` (or ``dead_lettered``); any later claim of the
  key finds it done and only finalises the group.

The guarantee is at least once on the wire and exactly once in every case but one: the owner dies
after the receiver accepted and before the ``sent`` mark lands. Then the notification is sent again
after the lease, with the same ``webhook-id``, so receivers that keep recent ids (as Standard
Webhooks recommends) drop it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from pydantic import BaseModel, ConfigDict

from services.notifier.model import Notification, group_key_hash, set_hash

__all__ = ["Claim", "ClaimLost", "ClaimResult", "NotificationLog", "log_key"]

ClaimState = Literal["claimed", "sent", "dead_lettered"]


class Claim(BaseModel):
    """The stored record of one notification."""

    model_config = ConfigDict(extra="ignore")

    notification: Notification
    alerts_hash: str
    state: ClaimState
    owner: str
    lease_until: datetime
    attempts: int = 0
    updated_at: datetime
    error: str | None = None


class ClaimLost(Exception):
    """Another replica took the claim over (our lease had run out)."""


@dataclass
class ClaimResult:
    """The answer to a claim: ``won`` (send ``claim.notification``), ``taken`` or ``done``."""

    outcome: Literal["won", "taken", "done"]
    claim: Claim
    key: str
    revision: int = 0
    takeover: bool = False


def log_key(notification: Notification) -> str:
    """The log key of a notification (replays get their own suffix)."""
    key = f"{notification.target}.{group_key_hash(notification.group_key)}.{notification.seq}"
    return f"{key}.r{notification.replay}" if notification.replay else key


class NotificationLog:
    """Claims, renews and marks notifications in the KV bucket."""

    def __init__(self, kv: Any, owner: str) -> None:
        self.kv = kv
        self.owner = owner

    async def claim(self, notification: Notification, now: datetime, lease: timedelta) -> ClaimResult:
        """Try to become the one replica sending ``notification``."""
        key = log_key(notification)
        claim = Claim(
            notification=notification,
            alerts_hash=set_hash(notification.alerts),
            state="claimed",
            owner=self.owner,
            lease_until=now + lease,
            updated_at=now,
        )
        try:
            revision = await self.kv.create(key, claim.model_dump_json().encode())
            return ClaimResult("won", claim, key, revision)
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return ClaimResult("taken", claim, key)  # deleted meanwhile: look again next tick
        existing = Claim.model_validate_json(entry.value)
        if existing.state != "claimed":
            return ClaimResult("done", existing, key, entry.revision)
        if existing.lease_until > now:
            return ClaimResult("taken", existing, key, entry.revision)
        taken = existing.model_copy(update={"owner": self.owner, "lease_until": now + lease, "updated_at": now})
        try:
            revision = await self.kv.update(key, taken.model_dump_json().encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            return ClaimResult("taken", existing, key, entry.revision)
        return ClaimResult("won", taken, key, revision, takeover=True)

    async def renew(self, result: ClaimResult, now: datetime, lease: timedelta, *, attempts: int) -> None:
        """Extend our lease; raise :class:`ClaimLost` if another replica took the claim."""
        claim = result.claim.model_copy(update={"lease_until": now + lease, "updated_at": now, "attempts": attempts})
        try:
            result.revision = await self.kv.update(result.key, claim.model_dump_json().encode(), last=result.revision)
        except KeyWrongLastSequenceError as exc:
            raise ClaimLost(result.key) from exc
        result.claim = claim

    async def mark(self, result: ClaimResult, state: ClaimState, now: datetime, *, error: str | None = None) -> None:
        """Record the final state; raise :class:`ClaimLost` if another replica took the claim."""
        claim = result.claim.model_copy(update={"state": state, "updated_at": now, "error": error})
        try:
            result.revision = await self.kv.update(result.key, claim.model_dump_json().encode(), last=result.revision)
        except KeyWrongLastSequenceError as exc:
            raise ClaimLost(result.key) from exc
        result.claim = claim
