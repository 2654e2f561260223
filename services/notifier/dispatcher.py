"""The dispatcher: records alerts in their groups and flushes due groups to their integrations.

It does I/O (KV, integrations) but no broker work: the subscriber calls :meth:`Dispatcher.record`,
a ticker and the subscriber call :meth:`Dispatcher.flush_due`. Every group is flushed in its own
task, so one slow or failing receiver never delays another; within one replica a group has at most
one flush in flight, and across replicas the notification log's claim decides who sends.
See :mod:`services.notifier.grouping` for durability and :mod:`services.notifier.nflog` for the
delivery guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from services.notifier.delivery import DeliveryError, Integration, RetryPolicy
from services.notifier.grouping import (
    DEDUP_WINDOW,
    SEEN_SLICE,
    add_alerts,
    build_notification,
    digests_of,
    finalize,
    is_due,
    new_group,
    next_look,
    plan,
    without_digests,
)
from services.notifier.integrations.alertmanager import posting_route
from services.notifier.metrics import NotifierMetrics
from services.notifier.model import (
    Clock,
    GroupState,
    Notification,
    Target,
    alert_labels_key,
    group_key_hash,
    kv_keys,
)
from services.notifier.nflog import ClaimLost, ClaimResult, NotificationLog
from services.notifier.routing import group_key_for, match_routes
from services.notifier.silences import Silence, SilenceStore
from veille import bus
from veille.config import Receiver, VeilleConfig
from veille.messaging import DeadLetterSink
from veille.metrics import bounded_label
from veille.models import AlertRaised

__all__ = ["Dispatcher", "Sleep", "targets_of"]

log = structlog.get_logger("notifier")
Sleep = Callable[[float], Awaitable[None]]
_CAS_TRIES = 20
_DIGEST_CHARS = 16
SPILL_AT = 1000
"""Digests (16 bytes each) a group's value carries before they move to the seen bucket."""
MAX_CACHED_GROUPS = 1000
"""Group states a replica keeps parsed in memory (up to ~100 KB each), least recently used dropped first."""
MAX_SEEN_KEPT = 200_000
"""Digests a replica keeps in memory per group (the last hour's; past this, the oldest are dropped)."""
MAX_FLUSHES = 32
"""Groups planned (KV reads and writes, claims) at once; the others wait their turn, in order.

Unbounded, a backlog of thousands of due groups (each alert its own group, say) started thousands of
flushes together: thousands of KV requests queued on one connection timed out, and the event loop's
ready queue grew so long that the partition leases' renewals waited behind it past the lease."""
SENDS_PER_TARGET = 8
"""Requests in flight to one integration target at once (its time-out runs only once a request is sent).

Fewer than the HTTP client's kept-alive connections (25 of 50), so deliveries reuse connections instead
of opening (and closing) one each; a receiver is never flooded by one replica."""
MAX_ROUTE_MEMO = 10_000
"""Sets of alert labels whose routes and group keys are remembered (emptied when full)."""
MAX_QUEUED_FLUSHES = 2000
"""Due groups waiting for a flush past which :meth:`Dispatcher.backpressure` holds the next batch back."""


_Destination = tuple[str | None, Target, Any, str, dict[str, str]]
"""A group an alert's labels lead to: key (None: one per alert), target, route, group key and labels."""


@dataclasses.dataclass
class _GroupWork:
    """One group's share of a batch: where it goes and its alerts in stream order."""

    target: Target
    route: Any
    group_key: str
    group_labels: dict[str, str]
    partition: int
    alerts: list[AlertRaised] = dataclasses.field(default_factory=list)


def targets_of(receiver: Receiver) -> list[Target]:
    """Every integration of a receiver, each its own target."""
    out: list[Target] = []
    out += [Target(receiver.name, "email", i) for i in range(len(receiver.email))]
    out += [Target(receiver.name, "webhook", i) for i in range(len(receiver.webhook))]
    out += [Target(receiver.name, "slack", i) for i in range(len(receiver.slack))]
    out += [Target(receiver.name, "teams", i) for i in range(len(receiver.teams))]
    out += [Target(receiver.name, "alertmanager", i) for i in range(len(receiver.alertmanager))]
    return out


class Dispatcher:
    """Routes, groups, silences and delivers alerts for one notifier replica."""

    def __init__(
        self,
        *,
        config: VeilleConfig,
        integrations: dict[str, Integration],
        js: Any,
        groups: Any,
        nflog: NotificationLog,
        silences: SilenceStore,
        sink: DeadLetterSink,
        metrics: NotifierMetrics,
        clock: Clock,
        sleep: Sleep,
        policy: RetryPolicy,
        lease: timedelta,
        seen: Any = None,
        owns: Callable[[int | None], bool] | None = None,
    ) -> None:
        self.config = config
        self.owns: Callable[[int | None], bool] = owns or (lambda _partition: True)
        """Whether this replica holds a partition (services/notifier/partitions.py): it flushes only its groups."""
        self.receivers = {r.name: r for r in config.receivers}
        self.integrations = integrations
        self.js = js
        self.groups = groups
        self.nflog = nflog
        self.silences = silences
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.sleep = sleep
        self.policy = policy
        self.lease = lease
        self.seen_kv = seen
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._routes_memo: dict[tuple[Any, ...], list[_Destination]] = {}
        self._record_locks: dict[int | None, asyncio.Lock] = {}
        """One per consumer (partition of the alerts stream): its batches are recorded one at a time, in order."""
        self._background: set[asyncio.Task[None]] = set()
        self._cache: dict[str, tuple[GroupState, int]] = {}
        """Each group as this replica last wrote or read it, with its revision (a stale one fails its CAS)."""
        self._seen: dict[str, dict[str, int]] = {}
        """Per group, digests of ``<id>:<status>`` moved to the seen bucket -> start of their slice."""
        self._written: dict[str, int] = {}
        """Per group, the last revision this replica wrote."""
        self._stale: set[str] = set()
        """Groups whose compare-and-set failed, not read since: not created blind, nor listed as holding no digests."""
        self._due: dict[str, datetime] = {}
        """Per group this replica knows of, when it next needs planning (:func:`grouping.next_look`)."""
        self._partition_of: dict[str, int | None] = {}
        """Per group this replica read or wrote, its partition (a rescan skips the groups of partitions not held)."""
        self._pinned: set[str] = set()
        """Groups known here whose alerts share one watch (``watch`` or ``alert`` among their group labels): one
        partition, so this replica, holding it, is their only writer and its due times for them are exact."""
        self._flushes = asyncio.Semaphore(MAX_FLUSHES)
        self._waiting = 0
        self._room = asyncio.Event()
        self._room.set()
        """Flushes started and waiting for their turn (:meth:`backpressure`)."""
        self._sends: dict[str, asyncio.Semaphore] = {}
        self._absent: set[str] = set()
        """Groups this batch found no seen digests for (one listing per target and batch): no KV read first."""

    # ------------------------------------------------------------------ recording

    async def record(self, alert: AlertRaised) -> list[str]:
        """Record one alert (see :meth:`record_batch`)."""
        return await self.record_batch([alert])

    async def record_batch(self, alerts: list[AlertRaised], lane: int | None = None) -> list[str]:
        """Put ``alerts`` (in stream order) in the groups their routes lead to; return the keys due now.

        Each group touched is written once for the whole batch (a compare-and-set on the revision
        this replica last saw), its alerts applied in stream order; the groups are written
        concurrently. The batches of one ``lane`` (the partition consumer they came from) are recorded
        one at a time (a lock), so a batch that failed and is retried alert by alert keeps stream order
        too; the lanes run side by side (a group their alerts share, ``group_by: [kind]`` say, is kept
        right by its compare-and-set; the partitions have no order between them). Only a group that is
        due (``group_wait`` zero, say) needs flushing at once; the others wait for the tick.
        """
        lock = self._record_locks.get(lane)
        if lock is None:
            lock = self._record_locks[lane] = asyncio.Lock()
        async with lock:
            now = self.clock()
            work: dict[str, _GroupWork] = {}
            for alert in alerts:
                for key, target, effective, group_key, group_labels in self._destinations(alert):
                    item = work.get(key)
                    if item is None:
                        item = work[key] = _GroupWork(
                            target, effective, group_key, dict(group_labels), bus.alert_partition(alert.watch)
                        )
                    item.alerts.append(alert)
            if not work:
                return []
            await self._list_seen([key for key in work if key not in self._seen])
            due = await asyncio.gather(*(self._record_group(key, item, now) for key, item in work.items()))
            return [key for key, is_due_now in zip(work, due, strict=True) if is_due_now]

    def _destinations(self, alert: AlertRaised) -> list[tuple[str, Target, Any, str, dict[str, str]]]:
        """Every group ``alert`` goes to: (key, target, route with its timings, group key, group labels).

        The routes and group keys depend on the alert's labels only (but for ``group_by: ["..."]``, one
        group per alert): they are worked out once per set of labels and remembered (the configuration
        does not change in a running dispatcher), which was an eighth of the notifier's time per alert.
        """
        memo_key = alert_labels_key(alert)
        found = self._routes_memo.get(memo_key)
        if found is None:
            found = []
            for route in match_routes(self.config.route, alert):
                receiver = self.receivers.get(route.receiver)
                if receiver is None:
                    continue
                for target in targets_of(receiver):
                    effective = route
                    if target.kind == "email" and receiver.email[target.index].digest is not None:
                        digest = receiver.email[target.index].digest
                        assert digest is not None
                        effective = dataclasses.replace(route, group_wait=digest, group_interval=digest)
                    elif target.kind == "alertmanager":  # at once, then every resend_interval (renews endsAt)
                        effective = posting_route(route, receiver.alertmanager[target.index])
                    if "..." in effective.group_by:  # one group per alert: its key is the alert's own
                        found.append((None, target, effective, "", {}))
                        continue
                    group_key, group_labels = group_key_for(effective, alert)
                    key = f"{target.id}.{group_key_hash(group_key)}"
                    found.append((key, target, effective, group_key, group_labels))
            if len(self._routes_memo) >= MAX_ROUTE_MEMO:
                self._routes_memo.clear()
            self._routes_memo[memo_key] = found
        out: list[tuple[str, Target, Any, str, dict[str, str]]] = []
        for memo_group, target, effective, group_key, group_labels in found:
            if memo_group is None:
                group_key, group_labels = group_key_for(effective, alert)
                memo_group = f"{target.id}.{group_key_hash(group_key)}"
            out.append((memo_group, target, effective, group_key, group_labels))
        return out

    async def _record_group(self, key: str, work: _GroupWork, now: datetime) -> bool:
        """Apply one group's alerts of a batch in one compare-and-set; return whether the group is due."""
        absent = key in self._absent and key not in self._cache and key not in self._stale
        self._absent.discard(key)
        for _ in range(_CAS_TRIES):
            if absent:  # first seen in this batch: try to create it (fails, and is read, if it exists)
                state, revision = None, None
            else:
                state, revision = await self._load(key)
            seen = await self._seen_for(key)
            base = state or new_group(work.target, work.route, work.group_key, work.group_labels)
            new: GroupState | None
            new, outcomes = add_alerts(base, work.alerts, now, seen)
            if new.partition is None:
                new.partition = work.partition
            if state is None and not new.alerts and not new.truncated and not new.recent:
                new = None  # nothing to keep (a resolution of an alert never told, say)
            if new is not None and new != state:
                try:
                    new = await self._write(key, state, revision, new)
                except KeyWrongLastSequenceError:
                    self._refused(key, revision)
                    absent = False
                    continue
            for outcome, count in Counter(outcomes).items():  # one increment per outcome and batch, not per alert
                if outcome in ("grouped", "truncated", "deduplicated"):
                    self.metrics.suppressed.labels(outcome).inc(count)
            log.debug("notifier.alerts_recorded", group=key, alerts=len(work.alerts), outcomes=outcomes[:20])
            return new is not None and is_due(new, now)
        raise RuntimeError(f"group {key} changed {_CAS_TRIES} times under us")

    async def _update(self, key: str, change: Callable[[GroupState | None], tuple[GroupState | None, str]]) -> str:
        """Compare-and-set loop on one group's state."""
        for _ in range(_CAS_TRIES):
            state, revision = await self._load(key)
            new, outcome = change(state)
            if new is None or new == state:
                return outcome
            try:
                await self._write(key, state, revision, new)
            except KeyWrongLastSequenceError:
                self._refused(key, revision)
                continue
            return outcome
        raise RuntimeError(f"group {key} changed {_CAS_TRIES} times under us")

    async def _get(self, key: str) -> tuple[GroupState | None, int | None]:
        """The group as stored in KV now (and remembered as this replica's latest view of it)."""
        try:
            entry = await self.groups.get(key)
        except KeyNotFoundError:
            self._cache.pop(key, None)
            return None, None
        if not entry.value:
            self._cache.pop(key, None)
            return None, None
        cached = self._cache.get(key)
        if cached is not None and cached[1] == entry.revision:
            return cached  # the value this replica wrote or read last: no need to parse it again
        self._stale.discard(key)
        if self._written.get(key) != entry.revision:
            # not this replica's write: another replica's may have moved digests to the seen bucket, so they
            # are read again before the next batch (before, only after a refused write; found in review)
            self._seen.pop(key, None)
        state = GroupState.model_validate_json(entry.value)
        self._remember_state(key, state, entry.revision)
        return state, entry.revision

    async def _load(self, key: str) -> tuple[GroupState | None, int | None]:
        """The group as this replica last wrote or read it (read from KV the first time)."""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        return await self._get(key)

    def _remember_state(self, key: str, state: GroupState, revision: int) -> None:
        if not self.owns(state.partition):
            # a write that finished after the partition was lost (a delivery's final write, a plan in
            # flight): its owner now writes the group, so this replica's copy would be stale when the
            # partition comes back, and planning from it could put off that owner's alerts for hours
            self._drop(key)
            return
        cached = self._cache.pop(key, None)
        if cached is not None and cached[1] > revision:
            self._cache[key] = cached
            return  # a newer write of ours already landed
        self._cache[key] = (state, revision)  # last used at the end: the first ones are the least recent
        self._partition_of[key] = state.partition
        if "watch" in state.group_labels or "alert" in state.group_labels:  # ("alert": group_by ["..."])
            self._pinned.add(key)
        while len(self._cache) > MAX_CACHED_GROUPS:
            del self._cache[next(iter(self._cache))]  # read again from KV when next needed
        self._due[key] = next_look(state, self.clock())

    def _refused(self, key: str, revision: int | None) -> None:
        """A compare-and-set over ``revision`` was refused: start the next try from a newer view, or read again.

        When this replica has itself written a newer revision of the group meanwhile, most often its own flush
        finalising a notification while a batch was being applied, the retry starts from what it wrote without
        a read (before, the group was read from KV and its whole value parsed again). Should yet another write
        have landed, the retry's compare-and-set is refused too, and the group is read then. A newer view this
        replica only read (another replica's write) is not enough: that write may have moved digests to the
        seen bucket, and only :meth:`_invalidate` has them read again (found in review: an alert redelivered
        after such a move was notified twice).
        """
        cached = self._cache.get(key)
        if cached is not None and self._written.get(key) == cached[1] and (revision is None or cached[1] > revision):
            return
        self._invalidate(key)

    def _invalidate(self, key: str) -> None:
        """Forget this replica's view of a group whose compare-and-set failed: it is read again.

        Its seen digests are read again too, unless the write that beat us was this replica's own
        (a flush racing a batch): ``_get`` then finds the revision it remembers having written.
        """
        self._cache.pop(key, None)
        self._stale.add(key)

    async def _write(self, key: str, old: GroupState | None, revision: int | None, new: GroupState) -> GroupState:
        """Compare-and-set ``new`` over ``revision``; return the state as written.

        The digests ``old`` kept in ``recent`` (alerts that left the group or were only counted)
        move to the ``veille_notify_seen`` bucket first, one key written once, once there are
        :data:`SPILL_AT` of them or the oldest is :data:`SEEN_SLICE` old, so the group's value carries
        at most about :data:`SPILL_AT` plus one batch of digests. Written before the state that drops
        them: a crash between the two leaves them in both places, never in neither.
        """
        moved: list[tuple[int, str]] = []
        if old is not None and self.seen_kv is not None:
            # counted before they are listed: most writes move none, and listing a thousand digests per batch
            # written was a tenth of the recording's CPU
            held = [(start, len(packed)) for start, packed in old.recent if packed]
            count = sum(size for _, size in held) // _DIGEST_CHARS
            if count and (count >= SPILL_AT or held[0][0] <= (self.clock() - SEEN_SLICE).timestamp()):
                moved = digests_of(old)  # else few and recent: they ride along in the value (one round trip fewer)
        if moved:
            await self._spill(key, moved)
            new = without_digests(new, {d for _, d in moved})
        if revision is None:
            written = await self.groups.create(key, new.dump())
        else:
            written = await self.groups.update(key, new.dump(), last=revision)
        self._written[key] = written
        self._remember_state(key, new, written)
        return new

    async def _spill(self, key: str, digests: list[tuple[int, str]]) -> None:
        by_start: dict[int, list[str]] = {}
        for start, value in digests:
            by_start.setdefault(start, []).append(value)
        body = "\n".join(f"{start} {''.join(values)}" for start, values in sorted(by_start.items()))
        assert self.seen_kv is not None
        await self.seen_kv.put(f"{key}.{uuid.uuid4().hex[:16]}", body.encode())
        known = self._seen.get(key)
        if known is not None:
            for start, value in digests:
                known[value] = start
            self._prune_seen(key)

    async def _list_seen(self, keys: list[str]) -> None:
        """Load the seen digests of the groups new to this replica in a batch with one listing per target.

        Each alert its own group (``group_by: ["..."]``), a batch holds hundreds of new groups; asking the
        seen bucket about each cost one round trip per alert. One listing of the target's keys answers
        for all of them: a group with none is remembered as having none (:attr:`_seen` empty), and one
        not found in :data:`_cache` is created without being read first (:meth:`_record_group`).
        """
        if not keys or self.seen_kv is None:
            return
        prefix = f"$KV.{bus.NOTIFY_SEEN.name}."
        by_target: dict[str, list[str]] = {}
        for key in keys:
            by_target.setdefault(key.rsplit(".", 1)[0], []).append(key)
        for target, group_keys in by_target.items():
            info = await self.js.stream_info(f"KV_{bus.NOTIFY_SEEN.name}", subjects_filter=f"{prefix}{target}.>")
            holding = {subject.removeprefix(prefix).rsplit(".", 1)[0] for subject in info.state.subjects or {}}
            for key in group_keys:
                if key in holding or key in self._cache or key in self._stale or key in self._inflight:
                    continue  # read by _seen_for, as before (a flush of it may be spilling digests)
                self._seen[key] = {}
                self._absent.add(key)

    async def _seen_for(self, key: str) -> dict[str, int]:
        """Digests of alerts this group recorded that live in the seen bucket (loaded once per group)."""
        known = self._seen.get(key)
        if known is not None:
            return known
        known = {}
        if self.seen_kv is not None:
            prefix = f"$KV.{bus.NOTIFY_SEEN.name}."
            info = await self.js.stream_info(f"KV_{bus.NOTIFY_SEEN.name}", subjects_filter=f"{prefix}{key}.*")
            for subject in sorted(info.state.subjects or {}):
                try:
                    entry = await self.seen_kv.get(subject.removeprefix(prefix))
                except KeyNotFoundError:
                    continue
                for line in (entry.value or b"").decode().splitlines():
                    start, _, packed = line.partition(" ")
                    for i in range(0, len(packed), _DIGEST_CHARS):
                        known[packed[i : i + _DIGEST_CHARS]] = int(start)
            known = dict(sorted(known.items(), key=lambda item: item[1]))
        self._seen[key] = known
        self._prune_seen(key)
        return known

    def _prune_seen(self, key: str) -> None:
        """Drop digests past the dedup window, and the oldest over :data:`MAX_SEEN_KEPT` (memory stays bounded)."""
        known = self._seen.get(key)
        if not known:
            return
        oldest = (self.clock() - DEDUP_WINDOW - SEEN_SLICE).timestamp()
        excess = len(known) - MAX_SEEN_KEPT
        for value, start in list(known.items()):
            if start > oldest and excess <= 0:
                break
            del known[value]
            excess -= 1

    # ------------------------------------------------------------------ flushing

    async def group_keys(self) -> list[str]:
        """Keys of every group held in KV."""
        keys = await kv_keys(self.js, bus.NOTIFY_GROUPS.name)
        self.metrics.pending_groups.set(len(keys))
        return keys

    def due_keys(self) -> list[str]:
        """Groups this replica knows of whose next look (send, repeat or clean-up) has come: no KV read."""
        now = self.clock()
        for key in [k for k in self._seen if k not in self._cache]:
            self._prune_seen(key)
            if not self._seen[key]:
                del self._seen[key]
        return [key for key, at in self._due.items() if at <= now]

    async def flush_due(
        self,
        keys: list[str] | None = None,
        *,
        wait: bool = False,
        rescan: bool = False,
        silences: Awaitable[list[Silence]] | None = None,
    ) -> None:
        """Plan every group (or ``keys``) now and start the due notifications, each in its own task.

        ``silences``: the silences read already (while the batch that made ``keys`` due was recorded).

        ``rescan`` (the ticker's periodic read of the bucket): skip the groups of one watch this replica
        knows and whose time has not come; they are planned when it comes (:meth:`due_keys`).
        """
        if keys is None:
            keys = await self.group_keys()
            for gone in set(self._due) - set(keys):
                self._pinned.discard(gone)
                self._due.pop(gone, None)
                self._cache.pop(gone, None)
                self._written.pop(gone, None)
                self._stale.discard(gone)
            present = set(keys)
            for gone in [k for k in self._partition_of if k not in present]:
                del self._partition_of[gone]
            keys = [k for k in keys if k not in self._partition_of or self.owns(self._partition_of[k])]
            # a group of one watch this replica already knows is planned when its own time comes (due_keys):
            # re-reading each of them every rescan cost one KV read and a plan per group, and with each alert
            # its own group an hour's thousands of groups (kept for deduplication) were read every 10 s
            if rescan:
                now = self.clock()
                keys = [k for k in keys if k not in self._pinned or k not in self._due or self._due[k] <= now]
        if not keys:
            return
        active = await (silences if silences is not None else self.silences.held())
        started: list[asyncio.Task[None]] = []
        for key in keys:
            running = self._inflight.get(key)
            if running is not None and not running.done():
                if wait:
                    started.append(running)
                continue
            task = asyncio.create_task(self._flush_group(key, active), name=f"flush:{key}")
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._forget, key))
            started.append(task)
        if wait and started:
            await asyncio.gather(*started, return_exceptions=True)

    def flush_soon(self, keys: list[str] | None, silences: Awaitable[list[Silence]] | None = None) -> None:
        """:meth:`flush_due` for ``keys`` in the background (waited for by :meth:`drain`)."""
        task = asyncio.create_task(self.flush_due(keys, silences=silences), name="flush-soon")
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("notifier.scan_failed", error=f"{type(exc).__name__}: {exc}")

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("notifier.flush_failed", group=key, error=f"{type(exc).__name__}: {exc}")

    async def backpressure(self, limit: float = 10.0) -> None:
        """Wait (at most ``limit`` seconds) while more than :data:`MAX_QUEUED_FLUSHES` groups wait to be planned.

        The consumer calls it before recording a batch: a backlog then waits in the stream, not as
        thousands of tasks here. Deliveries retrying (a receiver down) do not count: they hold no turn.
        """
        if self._waiting > MAX_QUEUED_FLUSHES:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), limit)

    async def drain(self) -> None:
        """Wait for the flushes in flight (used when stopping)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        tasks = [t for t in self._inflight.values() if not t.done()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def flushes(self) -> list[asyncio.Task[None]]:
        """The flush tasks still running (those :meth:`drain` waits for)."""
        return [task for task in (*self._background, *self._inflight.values()) if not task.done()]

    def forget_partition(self, partition: int | None) -> None:
        """Drop what this replica keeps of the groups of ``partition`` (no longer held): read again if regained.

        None: the groups recorded before partitions (the legacy partition's).
        """
        for key, part in self._partition_of.items():
            if part == partition:
                self._drop(key)

    def _drop(self, key: str) -> None:
        self._pinned.discard(key)
        self._due.pop(key, None)
        self._cache.pop(key, None)
        self._written.pop(key, None)
        self._stale.discard(key)
        self._seen.pop(key, None)

    async def _flush_group(self, key: str, silences: list[Silence]) -> None:
        """Plan one group and send what is due: at most :data:`MAX_FLUSHES` groups planned at once."""
        self._waiting += 1
        if self._waiting > MAX_QUEUED_FLUSHES:
            self._room.clear()
        try:
            await self._flushes.acquire()
        finally:
            self._waiting -= 1
            if self._waiting <= MAX_QUEUED_FLUSHES:
                self._room.set()
        try:
            claimed = await self._plan_group(key, silences)
        finally:
            self._flushes.release()
        if claimed is None:
            return
        result, integration = claimed
        if await self.deliver(result, integration) is not None:
            async with self._flushes:
                await self._finalize(key, result.claim.notification)

    async def _plan_group(self, key: str, silences: list[Silence]) -> tuple[ClaimResult, Integration] | None:
        """Read, plan and write one group; return the notification claimed for sending, if any.

        A group of one watch whose last write was this replica's is planned from memory: holding its
        partition, this replica is its only writer (a stale view would fail its compare-and-set, and a
        notification already sent is found done in the log). Any other group is read from KV first.
        """
        cached = self._cache.get(key)
        state: GroupState | None
        revision: int | None
        if cached is not None and key in self._pinned and self._written.get(key) == cached[1]:
            state, revision = cached
        else:
            state, revision = await self._get(key)
        if state is None or revision is None:
            self._due.pop(key, None)
            return None
        if not self.owns(state.partition):
            self._drop(key)  # another replica holds its partition and flushes it
            return None
        receiver = self.receivers.get(state.receiver)
        integration = self.integrations.get(state.target)
        if receiver is None or integration is None:
            await self._delete(key, revision)
            log.info("notifier.group_dropped", group=key, reason="receiver no longer configured")
            return None
        now = self.clock()
        decision = plan(state, now, send_resolved=receiver.send_resolved, silences=silences, quiet=receiver.quiet_hours)
        if decision.state is None:
            await self._delete(key, revision)
            return None
        if decision.changed:
            try:
                decision.state = await self._write(key, state, revision, decision.state)
            except KeyWrongLastSequenceError:
                self._refused(key, revision)
                return None  # another replica or a new alert changed it: plan again next tick
            if decision.silenced or decision.silenced_truncated:
                self.metrics.suppressed.labels("silenced").inc(len(decision.silenced) + decision.silenced_truncated)
                log.info(
                    "notifier.alerts_silenced", group=key, alerts=decision.silenced, counted=decision.silenced_truncated
                )
            if decision.quiet_deferred:
                self.metrics.suppressed.labels("quiet_hours").inc()
                log.info("notifier.notification_deferred", group=key, until=str(decision.due_at))
        if decision.send is None:
            return None
        notification = build_notification(decision.state, decision.send, now)
        result = await self.nflog.claim(notification, now, self.lease)
        if result.outcome == "taken":
            log.debug("notifier.claim_taken", group=key, owner=result.claim.owner)
            return None
        if result.outcome == "done":
            self.metrics.suppressed.labels("deduplicated").inc()
            await self._finalize(key, result.claim.notification)
            return None
        return result, integration

    async def _delete(self, key: str, revision: int) -> None:
        self._pinned.discard(key)
        self._due.pop(key, None)
        self._cache.pop(key, None)
        self._written.pop(key, None)
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self.groups.delete(key, last=revision)

    async def _finalize(self, key: str, notification: Notification) -> None:
        now = self.clock()
        receiver = self.receivers.get(notification.receiver)
        send_resolved = receiver.send_resolved if receiver is not None else None

        def change(state: GroupState | None) -> tuple[GroupState | None, str]:
            if state is None:
                return None, "gone"
            return finalize(state, notification, now, send_resolved=send_resolved), "finalized"

        await self._update(key, change)

    # ------------------------------------------------------------------ delivery

    async def deliver(self, result: ClaimResult, integration: Integration) -> str | None:
        """Send a claimed notification with retries; return ``sent``, ``dead_lettered`` or None if lost."""
        notification = result.claim.notification
        labels = (bounded_label(notification.receiver, self.receivers), notification.integration)
        started = time.perf_counter()
        attempt = result.claim.attempts
        try:
            while True:
                attempt += 1
                try:
                    # at most SENDS_PER_TARGET requests in flight per target; the claim is renewed once a
                    # turn has come (the wait may be long), not right after it was won (its lease is fresh)
                    async with self._sends.setdefault(notification.target, asyncio.Semaphore(SENDS_PER_TARGET)):
                        if attempt > 1 or result.claim.lease_until - self.clock() < self.lease / 2:
                            await self.nflog.renew(result, self.clock(), self.lease, attempts=attempt)
                        await integration.send(notification)
                except DeliveryError as exc:
                    error = exc
                except ClaimLost:
                    raise
                except Exception as exc:  # a bug or a template error: trying again will not help
                    error = DeliveryError(f"{type(exc).__name__}: {exc}", retryable=False)
                else:
                    await self.nflog.mark(result, "sent", self.clock())
                    elapsed = time.perf_counter() - started
                    self.metrics.notifications.labels(*labels, "sent").inc()
                    self.metrics.latency.labels(*labels).observe(elapsed)
                    log.info(
                        "notifier.notification_sent",
                        notification_id=notification.id,
                        target=notification.target,
                        status=notification.status,
                        alerts=len(notification.alerts),
                        truncated=notification.truncated,
                        attempts=attempt,
                        replay=notification.replay,
                        takeover=result.takeover,
                        seconds=round(elapsed, 3),
                    )
                    return "sent"
                self.metrics.delivery_errors.labels(*labels, error.kind).inc()
                if error.retryable and attempt < self.policy.max_attempts:
                    delay = self.policy.delay(attempt, error.retry_after)
                    self.metrics.retries.labels(*labels).inc()
                    log.debug(
                        f"notifier.{notification.integration}_failed",
                        notification_id=notification.id,
                        attempt=attempt,
                        error=error.reason,
                        retry_in=round(delay, 3),
                    )
                    await self.nflog.renew(
                        result, self.clock(), self.lease + timedelta(seconds=delay), attempts=attempt
                    )
                    await self.sleep(delay)
                    continue
                await self._dead_letter(notification, error, attempt)
                await self.nflog.mark(result, "dead_lettered", self.clock(), error=error.reason)
                self.metrics.notifications.labels(*labels, "dead_lettered").inc()
                self.metrics.dead_letters.labels(*labels).inc()
                log.warning(
                    "notifier.notification_dead_lettered",
                    notification_id=notification.id,
                    target=notification.target,
                    status=notification.status,
                    alerts=len(notification.alerts),
                    truncated=notification.truncated,
                    attempts=attempt,
                    retryable=error.retryable,
                    http_status=error.status,
                    error=error.reason,
                )
                return "dead_lettered"
        except ClaimLost:
            log.warning("notifier.claim_lost", notification_id=notification.id, target=notification.target)
            return None

    async def _dead_letter(self, notification: Notification, error: DeliveryError, attempts: int) -> None:
        payload = notification.model_dump_json().encode()
        reason = f"{'gave up' if error.retryable else 'not retryable'} after {attempts} attempt(s): {error.reason}"
        await self.sink.send(
            subject=bus.notify_replay_subject(notification.target),
            payload=payload,
            headers={"Nats-Msg-Id": f"{notification.id}.r{notification.replay}"},
            kind="notification",
            reason=reason,
            attempts=attempts,
            receiver=notification.target,
        )

    async def replay(self, notification: Notification, sequence: int) -> str:
        """Deliver a notification sent back by ``veille dlq replay`` (outside grouping); return the outcome."""
        notification = notification.model_copy(update={"replay": sequence})
        integration = self.integrations.get(notification.target)
        if integration is None:
            error = DeliveryError(f"receiver {notification.target!r} is no longer configured", retryable=False)
            await self._dead_letter(notification, error, 0)
            return "dead_lettered"
        result = await self.nflog.claim(notification, self.clock(), self.lease)
        if result.outcome == "done":
            return "deduplicated"
        if result.outcome == "taken":
            raise RuntimeError(f"notification {notification.id} is being replayed by {result.claim.owner}")
        outcome = await self.deliver(result, integration)
        return outcome or "lost"
