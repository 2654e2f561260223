"""Notifier replicas that share the work: the alerts stream's partitions, each held by one replica.

Why partitions. Every notifier replica used to pull from the one durable consumer ``notifier``: each
batch held alerts of every group, so two replicas wrote the same groups (compare-and-set conflicts,
re-reads of the whole value) and were slower together than one alone. Now the alerts stream stores
``veille.alerts.<watch>`` as ``veille.alerts.<watch>.<p>``, ``p`` = FNV-1a of the watch modulo
:data:`veille.bus.NOTIFIER_PARTITIONS` (16), a subject transform nats-server applies as it stores
each alert (``{{partition(16,1)}}``, so the classifier and every other publisher need not know it;
:func:`veille.bus.alert_partition` computes the same number in Python). Partition ``p`` has its own
durable consumer ``notifier-pNN`` (filter ``veille.alerts.*.p``), and the legacy consumer
``notifier`` (filter ``veille.alerts.*``) keeps the alerts stored before the transform existed: it
is one more partition here, number 16. The watch is the partition key because it is the one label
every alert carries and the default ``group_by`` starts with; a group is recorded (and flushed) by
the replica holding its watch's partition, so each group has one writer, in stream order.

Who holds what. A replica holds partition ``p`` only while it holds the lease ``partition.<p>`` in
the ``veille_notify_leases`` bucket: a value ``{owner, until}`` written by compare-and-set, renewed
every third of :attr:`PartitionLeases.lease`. Each replica also heartbeats ``member.<instance>``.
Every cycle a replica lists the live members (``until`` still ahead), sorts them, and wants the
partitions ``p`` with ``members[p % len(members)] == itself`` (round robin: deterministic, so every
replica computes the same assignment without talking, and 16 partitions split 8/8 between two). It
renews what it holds and wants; it gives up what it holds and no longer wants (a replica joined):
its consumer is stopped first (the batch in hand recorded and acked, the messages it fetched ahead
nakked), then the lease is released, so the newcomer takes it over at once; and it takes what it
wants once the lease is free, its own, or expired. A replica killed -9 stops renewing: after the
lease its member entry and leases have expired, the others want its partitions, take them, and
JetStream redelivers what it held unacked after the consumer's ``ack_wait`` (30 s).

Losing a partition (released, taken over, or a renewal that failed past the lease's end) drops the
in-memory state of its groups (cached values, due times, seen digests); gaining one starts its
consumer and plans every group of the bucket at once, re-reading those of the partition from KV. One
replica alone holds all 17 partitions and behaves exactly as before, batches of up to 500 per
consumer.

What the leases do *not* carry: correctness. Every group write is still a compare-and-set on the
revision last seen, and every notification is still claimed in the notification log before it is
sent (:mod:`services.notifier.nflog`). Two replicas that both believe they hold a partition (a
clock far off, a replica frozen past its lease) are what two replicas on one consumer were before:
slower, never a duplicate notification. A group whose ``group_by`` leaves the watch out spans
partitions; it is written by several replicas (compare-and-set, as before) and flushed by the
holder of the partition of its first alert; its order across watches is each partition's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from services.notifier.model import kv_keys
from veille import bus
from veille.tasks import cancel_and_wait

__all__ = ["LEGACY", "PARTITIONS", "PartitionLeases", "wanted"]

log = structlog.get_logger("notifier")
PARTITIONS = bus.NOTIFIER_PARTITIONS + 1
"""The stream's partitions and the legacy consumer (its index, :data:`LEGACY`)."""
LEGACY = bus.NOTIFIER_PARTITIONS
Hook = Callable[[int], Awaitable[None]]


def wanted(members: list[str], me: str, partitions: int = PARTITIONS) -> set[int]:
    """The partitions ``me`` should hold among the live ``members``: round robin over them sorted."""
    ordered = sorted(set(members) | {me})
    return {p for p in range(partitions) if ordered[p % len(ordered)] == me}


class PartitionLeases:
    """Holds this replica's share of the partitions, calling ``on_gain``/``on_loss`` as it changes."""

    def __init__(
        self,
        kv: Any,
        js: Any,
        instance: str,
        *,
        lease: float,
        on_gain: Hook,
        on_loss: Hook,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.js = js
        self.instance = instance
        self.lease = lease
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.now = now
        self.owned: dict[int, tuple[int, float]] = {}
        """Partition -> (revision of our lease, when it ends by our clock)."""
        self._busy: dict[int, asyncio.Task[None]] = {}
        """Partitions whose consumer is stopping (given up, or lost), not taken again until it has."""
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._member_key = f"member.{bus.safe_token(instance)}"  # a KV key allows no '#' (``notifier#2``)

    def owns(self, partition: int | None) -> bool:
        """Whether this replica holds ``partition`` (None: a group recorded before partitions, the legacy one)."""
        p = LEGACY if partition is None else partition
        return p in self.owned and p not in self._busy

    async def start(self) -> None:
        """Take a share now, then keep it up to date every third of the lease."""
        await self.cycle()
        self._task = asyncio.create_task(self._loop(), name="notifier-partition-leases")

    async def stop(self) -> None:
        """Stop renewing; give every partition up (consumer stopped first) so the others take them at once."""
        await cancel_and_wait([self._task])
        self._task = None
        if self._busy:
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
        held = sorted(self.owned)
        await asyncio.gather(*(self.on_loss(p) for p in held), return_exceptions=True)
        async with self._lock:
            for partition in held:
                await self._free(partition)
            with contextlib.suppress(Exception):
                await self.kv.delete(self._member_key)

    async def _loop(self) -> None:
        """A cycle every third of the lease, counted from the start of the previous one.

        Counted from its start, not its end: a cycle that took long (a consumer slow to start, a
        loaded server's slow answers) does not push the next renewal back by as much.
        """
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.lease / 3
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at = loop.time() + self.lease / 3
            try:
                await self.cycle()
            except Exception as exc:  # NATS away: what we hold runs out on its own (cycle drops it)
                log.warning("notifier.partition_cycle_failed", error=f"{type(exc).__name__}: {exc}")

    def _value(self, until: float) -> bytes:
        return json.dumps({"owner": self.instance, "until": until}).encode()

    async def _members(self) -> list[str]:
        now = self.now()
        alive: list[str] = []
        for key in await kv_keys(self.js, bus.NOTIFY_LEASES.name):
            if not key.startswith("member."):
                continue
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                continue
            try:
                record = json.loads(entry.value or b"{}")
            except ValueError:
                continue
            if float(record.get("until", 0)) > now:
                alive.append(str(record.get("owner", key.removeprefix("member."))))
        return alive

    async def cycle(self) -> None:
        """Heartbeat and renew (KV writes only), then give up and take partitions so as to hold this replica's share.

        Stopping a consumer given up (or lost) runs in the background: a slow stop never delays the
        heartbeat and renewals that keep the other partitions held.
        """
        gained: list[int] = []
        async with self._lock:
            now = self.now()
            try:
                await self.kv.put(self._member_key, self._value(now + self.lease))
                # all at once: one round trip's wait instead of one per partition held, so a loaded server's
                # slow answers do not add up past the lease; a renewal that lands proves nobody took it
                failures = [
                    r
                    for r in await asyncio.gather(*(self._renew(p) for p in list(self.owned)), return_exceptions=True)
                    if isinstance(r, BaseException)
                ]
                if failures:
                    raise failures[0]
            except Exception:
                for partition in [p for p, (_, until) in self.owned.items() if until <= now and p not in self._busy]:
                    self._lost(partition, "no renewal for a whole lease")  # another replica may hold it now
                raise
            want = wanted(await self._members(), self.instance)
            for partition in sorted(set(self.owned) - want - set(self._busy)):
                self._background(partition, self._give_up(partition))
            for partition in sorted(want - set(self.owned) - set(self._busy)):
                if await self._take(partition):
                    gained.append(partition)
        for partition in gained:
            log.info("notifier.partition_gained", partition=partition, instance=self.instance)
            await self.on_gain(partition)

    def _background(self, partition: int, work: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await work
            finally:
                self._busy.pop(partition, None)

        self._busy[partition] = asyncio.create_task(run(), name=f"notifier-partition-{partition}")

    def _lost(self, partition: int, reason: str) -> None:
        """Another replica may hold ``partition`` now: stop consuming it (in the background)."""
        self.owned.pop(partition, None)
        log.warning("notifier.partition_lost", partition=partition, reason=reason)
        self._background(partition, self.on_loss(partition))

    async def _give_up(self, partition: int) -> None:
        """Stop consuming ``partition`` (renewed meanwhile), then free its lease for the replica that wants it."""
        await self.on_loss(partition)
        async with self._lock:
            await self._free(partition)
        log.info("notifier.partition_released", partition=partition)

    async def _free(self, partition: int) -> None:
        held = self.owned.pop(partition, None)
        if held is None:
            return
        with contextlib.suppress(Exception):
            await self.kv.update(f"partition.{partition}", json.dumps({"owner": "", "until": 0}).encode(), last=held[0])

    async def _renew(self, partition: int) -> None:
        revision, _ = self.owned[partition]
        until = self.now() + self.lease
        try:
            revision = await self.kv.update(f"partition.{partition}", self._value(until), last=revision)
        except KeyWrongLastSequenceError:
            if partition in self._busy:  # being given up: it is no longer ours to free
                self.owned.pop(partition, None)
            else:
                self._lost(partition, "another replica took it over")
            return
        self.owned[partition] = (revision, until)

    async def _take(self, partition: int) -> bool:
        key = f"partition.{partition}"
        until = self.now() + self.lease
        try:
            try:
                entry = await self.kv.get(key)
            except KeyNotFoundError:
                revision = await self.kv.create(key, self._value(until))
            else:
                record = json.loads(entry.value or b"{}") if entry.value else {}
                holder = record.get("owner")
                if holder and holder != self.instance and float(record.get("until", 0)) > self.now():
                    return False  # still held: its holder gives it up (or it runs out) before a later cycle
                revision = await self.kv.update(key, self._value(until), last=entry.revision)
        except KeyWrongLastSequenceError:
            return False  # another replica was quicker
        self.owned[partition] = (revision, until)
        return True
