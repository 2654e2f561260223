"""Spike detection across classifier replicas: per-bucket counters and per-watch state in NATS KV.

Several replicas share the classifier's durable consumer, so each sees only some of a watch's
mentions. They agree through the ``veille_detector`` KV bucket (declared in :mod:`veille.bus`):

``c.<watch>.<bucket epoch seconds>``
    The :class:`~services.classifier.surges.BucketStats` of one watch's bucket (counts, story ids, top
    terms and sources, samples; bounded). Each replica adds what it counted since its last flush as
    a delta with compare-and-set (``kv.update(key, value, last=revision)``, retried on conflict),
    at most every ``flush_interval`` (0.1 s in the service; one write holds the counts of every batch
    consumed meanwhile), so no replica's counts overwrite another's. A replica remembers the
    value and revision it last wrote to a key and writes its next delta on top of them without
    reading the key; only when another replica wrote in between (the write is refused) does it read.
``w.<watch>.state``
    The watch's :class:`~services.classifier.surges.WatchSurges` state (both detectors, the alerts
    firing, the next bucket to step) and an *outbox* of alerts decided but maybe not yet published.

``<watch>`` is the watch name with ``.`` written ``=`` (a character names cannot hold), so keys
are unique per watch.

Stepping. Every ``tick_interval`` each replica looks at each watch: every bucket that ended more
than ``grace`` ago (by the injectable clock) and is not stepped yet is read from its counter key
and fed to the detectors. While the consumer has a backlog (after an outage) the horizon is also
held below the newest ``ingested_at`` this replica has flushed, so buckets are not stepped before
their mentions are consumed (the stream is in ingestion order, give or take the grace). The new
state, with the alerts it decided in its outbox, is written with compare-and-set on the state key's
revision: exactly one replica advances a watch; a replica that loses the race drops its work and
re-reads. The winner then publishes the outbox with deterministic ``Nats-Msg-Id`` (the alert id, or
``<id>:resolved``) and clears it; if it dies in between, whichever replica ticks next publishes the
outbox again and the alerts stream's duplicate window (a day) drops what was already there. So an
alert is neither lost nor raised twice, and a restart continues from the KV state.

Counting and acks (crash semantics). A mention is acked only after the flush holding its counts is
written, so a crash never loses a count. A crash (or an ack that never arrives, or a NATS outage
longer than the consumer's ``ack_wait`` while a flush retries) *between* the flush and the ack makes
JetStream redeliver those mentions and they are counted again: an over-count bounded by the
mentions in flight (at most the consumer's ``max_ack_pending``; in practice the mentions of one
flush interval, or of about a second when a write stalls: the consumer then stops fetching, see
:class:`veille.messaging.BatchConsumer`). A mention whose bucket was already stepped (it arrived
more than ``grace`` late) is not counted; ``veille_spike_late_mentions_total`` counts those. The
first bucket of a watch is the earliest any replica flushes before the watch is first stepped (a
replica flushing an earlier bucket than the one the state was created at moves the start back while
the state is still ``fresh``).

Story ids come from each replica's own :class:`~veille.stories.StoryIndex` (bounded, in memory):
copies of one story handled by different replicas can get different ids (each replica starts the
story from the first copy it sees), so with ``n`` replicas an alert's ``story_count`` may count one
story up to ``n`` times. With one replica (or on a replay) it is exact up to the index's bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.classifier.surges import BucketStats, WatchSurges, bucket_start, detector_settings
from veille import bus
from veille.config import Watch
from veille.metrics import PREFIX
from veille.models import AlertRaised, MentionClassified

__all__ = ["Clock", "DetectionMetrics", "SurgeDetection", "counter_key", "state_key"]

Clock = Callable[[], datetime]
Publisher = Callable[[AlertRaised], Awaitable[None]]

log = structlog.get_logger("classifier")

EXPLAIN_BUCKETS = 48
"""Most buckets read to explain a surge (and kept in KV behind the stepped bucket)."""
MAX_STEPS_PER_TICK = 5000
MAX_LAG = timedelta(days=7)
"""A mention ingested longer ago than this (by the clock) is not counted: see :meth:`SurgeDetection.detector_time`."""
MAX_LEAD = timedelta(days=1)
"""A mention ingested further ahead of the clock than this counts at the clock's time."""
_CAS_ATTEMPTS = 50
FLUSH_AT = 500
"""Mentions counted (matching a watch) since the last flush that make the flusher write at once instead of
at the end of its interval: a backlog's batches are written about one by one, as before, a steady
trickle of small batches together."""
COUNTERS_KEPT = 256
"""Counter keys whose last written value and revision a replica remembers. A bucket holds at most 500
story ids, 40 terms, 20 sources and 8 samples (about 75 KB in memory when full), so this bounds the
memory to about 19 MB in the worst case; a key forgotten is read again on its next flush."""


def _token(watch: str) -> str:
    return watch.replace(".", "=")


def counter_key(watch: str, bucket: datetime) -> str:
    """KV key of the counters of ``watch``'s bucket starting at ``bucket``."""
    return f"c.{_token(watch)}.{int(bucket.timestamp())}"


def state_key(watch: str) -> str:
    """KV key of ``watch``'s detector state."""
    return f"w.{_token(watch)}.state"


class DetectionMetrics:
    """Spike-detection metrics on the service registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register the metrics on ``registry``."""
        self.steps = Counter(
            f"{PREFIX}_spike_detector_steps_total",
            "Buckets stepped through a watch's spike detectors.",
            ["watch"],
            registry=registry,
        )
        self.bucket_mentions = Gauge(
            f"{PREFIX}_watch_bucket_mentions",
            "Mentions of a watch in its last stepped bucket, by series (all, negative).",
            ["watch", "series"],
            registry=registry,
        )
        self.bucket_expected = Gauge(
            f"{PREFIX}_watch_bucket_expected_mentions",
            "Mentions the baseline expected in the watch's last stepped bucket, by series.",
            ["watch", "series"],
            registry=registry,
        )
        self.conflicts = Counter(
            f"{PREFIX}_spike_state_conflicts_total",
            "Compare-and-set conflicts on detector KV keys (another replica wrote first; retried).",
            ["key_kind"],
            registry=registry,
        )
        self.late = Counter(
            f"{PREFIX}_spike_late_mentions_total",
            "Mentions not counted because their bucket had already been stepped.",
            ["watch"],
            registry=registry,
        )
        self.flushes = Counter(
            f"{PREFIX}_spike_counter_flushes_total",
            "Bucket counter deltas written to the detector KV bucket.",
            registry=registry,
        )
        self.implausible = Counter(
            f"{PREFIX}_spike_implausible_times_total",
            "Mentions whose ingested_at was implausible for the detector: too far in the past (not counted "
            "in any bucket) or in the future (counted at the clock's time).",
            ["bound"],
            registry=registry,
        )
        for bound in ("past", "future"):
            self.implausible.labels(bound)


@dataclass
class _Pending:
    stats: dict[tuple[str, datetime], BucketStats]
    waiters: list[asyncio.Future[None]]
    high_water: datetime | None = None
    mentions: int = 0


class SurgeDetection:
    """Counts mentions per watch and bucket into KV, and steps each watch's detectors on ticks."""

    def __init__(
        self,
        kv: KeyValue,
        js: JetStreamContext,
        watches: Iterable[Watch],
        publish: Publisher,
        metrics: DetectionMetrics,
        *,
        clock: Clock,
        grace: timedelta = timedelta(seconds=15),
        flush_interval: float = 0.1,
        consumer: bus.Consumer = bus.CLASSIFIER_CONSUMER,
        max_lag: timedelta = MAX_LAG,
        max_lead: timedelta = MAX_LEAD,
    ) -> None:
        """Build the detection for ``watches``; ``publish`` sends one alert with its deterministic id."""
        self.kv = kv
        self.js = js
        self.watches = {w.name: w for w in watches}
        self.widths = {name: detector_settings(w).bucket for name, w in self.watches.items()}
        self.publish = publish
        self.metrics = metrics
        self.clock = clock
        self.grace = grace
        self.flush_interval = flush_interval
        self.consumer = consumer
        self.max_lag = max_lag
        self.max_lead = max_lead
        self._pending = _Pending({}, [])
        self._wake = asyncio.Event()
        self._now = asyncio.Event()  # flush without waiting out the interval (counts piling up)
        self._hurried = False
        self._unstarted: set[tuple[str, datetime]] = set()  # keys of an interrupted flush, to start watches from
        self._high_water: datetime | None = None
        self._has_state: set[str] = set()
        self._stepped_to: dict[str, datetime] = {}
        self._flush_lock = asyncio.Lock()
        self._counters: dict[str, tuple[int, BucketStats]] = {}  # counter key -> (revision, value) written here

    # ------------------------------------------------------------ counting
    def record(
        self, classified: MentionClassified, terms: list[str], *, wait: bool = True
    ) -> asyncio.Future[None] | None:
        """Count a classified mention in its watches' buckets; return a future done once it is in KV.

        ``wait=False``: no future (None), for a caller that waits on :meth:`written` (or calls :meth:`flush`) itself.
        """
        if not classified.watches:
            return None
        ts = self.detector_time(classified)
        if ts is None:
            return None
        pending = self._pending
        for name in classified.watches:
            width = self.widths.get(name)
            if width is None:
                continue
            key = (name, bucket_start(ts, width))
            stats = pending.stats.get(key)
            if stats is None:
                stats = pending.stats[key] = BucketStats()
            stats.add(classified, terms)
        if pending.high_water is None or ts > pending.high_water:
            pending.high_water = ts
        pending.mentions += 1
        if pending.mentions >= FLUSH_AT:
            self._now.set()
        if not wait:
            self._wake.set()
            return None
        return self.written()

    def written(self) -> asyncio.Future[None]:
        """A future done once everything recorded so far is in KV.

        The flusher writes it about ``flush_interval`` later (later while KV refuses or times out:
        a flush retries until written; a flush interrupted by cancellation leaves what it did not
        write, and the waiters, to the next one).
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.waiters.append(waiter)
        self._wake.set()
        return waiter

    def detector_time(self, classified: MentionClassified) -> datetime | None:
        """The time a mention counts at: its ``ingested_at`` when plausible against the clock.

        More than ``max_lag`` before the clock: None, the mention is not counted (a ten-year-old
        ``ingested_at`` would otherwise start a new watch's detector in 2016, and stepping ten years
        of buckets stalls it for many minutes; any running watch has stepped past it anyway). More
        than ``max_lead`` ahead: the clock's time (a year-9999 bucket would never be stepped and would
        hold the watch there). Both are counted in ``veille_spike_implausible_times_total``.
        """
        ts = classified.mention.ingested_at
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        now = self.clock()
        if ts < now - self.max_lag:
            self.metrics.implausible.labels("past").inc()
            log.warning(
                "classifier.implausible_time",
                mention_id=classified.mention.id,
                ingested_at=ts.isoformat(),
                bound="past",
                action="not counted",
            )
            return None
        if ts > now + self.max_lead:
            self.metrics.implausible.labels("future").inc()
            log.warning(
                "classifier.implausible_time",
                mention_id=classified.mention.id,
                ingested_at=ts.isoformat(),
                bound="future",
                action="counted now",
            )
            return now
        return ts

    async def flush(self) -> None:
        """Write every pending delta to KV (retrying until it is written) and release their waiters."""
        async with self._flush_lock:
            pending, self._pending = self._pending, _Pending({}, [])
            if not pending.stats and not pending.waiters:
                return
            written: set[tuple[str, datetime]] = set()
            try:
                await self._write(pending, written)
            except BaseException:  # cancelled (KV errors are retried): the next flush writes what this one did not
                self._requeue(pending, written)
                raise

    def _requeue(self, pending: _Pending, written: set[tuple[str, datetime]]) -> None:
        """Put back what an interrupted flush did not write, and its waiters, for the next flush."""
        again = self._pending
        self._unstarted.update(pending.stats)  # written or not, the next flush starts their watches' detectors
        for key, delta in pending.stats.items():
            if key not in written:
                found = again.stats.get(key)
                again.stats[key] = delta if found is None else delta.merge(found)
        if pending.high_water is not None and (again.high_water is None or pending.high_water > again.high_water):
            again.high_water = pending.high_water
        again.mentions += pending.mentions
        if again.mentions >= FLUSH_AT:
            self._now.set()
        again.waiters[:0] = [waiter for waiter in pending.waiters if not waiter.done()]
        self._wake.set()

    async def _write(self, pending: _Pending, written: set[tuple[str, datetime]]) -> None:
        """Write ``pending``'s deltas, retrying until written, then release its waiters.

        Each key goes in ``written`` as soon as its write is acknowledged, so an interrupted flush
        puts back only the others (a write interrupted in flight may have landed: counted twice).
        """
        delay = 0.1
        remaining = dict(pending.stats)
        while remaining:
            keys = list(remaining)
            results = await asyncio.gather(
                *(self._add_one(k, remaining[k], written) for k in keys), return_exceptions=True
            )
            failed = {k: remaining[k] for k, r in zip(keys, results, strict=True) if isinstance(r, BaseException)}
            for k, r in zip(keys, results, strict=True):
                if isinstance(r, BaseException):
                    log.warning("classifier.counter_flush_failed", key=counter_key(*k), error=repr(r))
            remaining = failed
            if remaining:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        unstarted = self._unstarted
        await self._start_watches([*pending.stats, *unstarted])
        unstarted.clear()
        if pending.high_water is not None and (self._high_water is None or pending.high_water > self._high_water):
            self._high_water = pending.high_water
        for waiter in pending.waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _add_one(self, key: tuple[str, datetime], delta: BucketStats, written: set[tuple[str, datetime]]) -> None:
        await self._add(key, delta)
        written.add(key)

    async def _add(self, key: tuple[str, datetime], delta: BucketStats) -> None:
        """Add ``delta`` to its counter key with compare-and-set.

        The key's value and revision as this replica last wrote them are remembered
        (:data:`COUNTERS_KEPT` keys), so the next flush of the same bucket writes its merge at once,
        conditional on that revision, without reading the key first. When another replica wrote in
        between (or the key was purged), the write is refused, and the key is read and merged as
        when nothing is remembered: the value written is the same either way.
        """
        watch, bucket = key
        stepped = self._stepped_to.get(watch)
        if stepped is not None and bucket < stepped:
            self.metrics.late.labels(watch).inc(delta.total)
            return
        name = counter_key(watch, bucket)
        known = self._counters.pop(name, None)
        for _ in range(_CAS_ATTEMPTS):
            if known is None:
                try:
                    entry = await self.kv.get(name)
                except (KeyNotFoundError, KeyDeletedError):
                    try:
                        revision = await self.kv.create(name, _dump(delta.to_json()))
                    except KeyWrongLastSequenceError:
                        self.metrics.conflicts.labels("counter").inc()
                        continue
                    self._remember(name, revision, delta)
                    break
                known = entry.revision or 0, BucketStats.from_json(json.loads(entry.value or b"{}"))
            last, stored = known
            merged = stored.merge(delta)
            try:
                revision = await self.kv.update(name, _dump(merged.to_json()), last=last)
            except KeyWrongLastSequenceError:
                self.metrics.conflicts.labels("counter").inc()
                known = None
                continue
            self._remember(name, revision, merged)
            break
        else:
            raise RuntimeError(f"could not update {name} after {_CAS_ATTEMPTS} attempts")
        self.metrics.flushes.inc()

    def _remember(self, name: str, revision: int, stats: BucketStats) -> None:
        """Keep what this replica wrote to counter key ``name`` (the oldest forgotten past :data:`COUNTERS_KEPT`)."""
        counters = self._counters
        counters[name] = (revision, stats)
        if len(counters) > COUNTERS_KEPT:
            del counters[next(iter(counters))]

    async def _start_watches(self, stats: Iterable[tuple[str, datetime]]) -> None:
        """Create the detector state of watches counted for the first time, from their earliest bucket.

        A flush can hold many buckets of one watch (every batch consumed since the last flush): the state must start at
        the earliest of them, not at whichever counter write finished first.
        """
        first: dict[str, datetime] = {}
        for watch, bucket in stats:
            if watch not in self._has_state and (watch not in first or bucket < first[watch]):
                first[watch] = bucket
        for watch, bucket in sorted(first.items()):
            delay = 0.1
            while True:
                try:
                    await self._create_state(watch, bucket)
                    break
                except Exception as exc:
                    log.warning("classifier.watch_state_create_failed", watch=watch, error=repr(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

    async def _create_state(self, watch: str, bucket: datetime) -> None:
        """Start the watch's detectors at ``bucket``, or earlier than another replica started them.

        Replicas flush concurrently, so the replica that creates the state may hold later buckets
        than another one. A state no replica has stepped yet is marked ``fresh``; a replica holding
        an earlier bucket moves its start back (compare-and-set), so the detectors see every count.
        """
        surges = WatchSurges(self.watches[watch])
        surges.next_bucket = bucket
        value = _dump({"surges": surges.to_state(), "outbox": [], "fresh": True})
        key = state_key(watch)
        for _ in range(_CAS_ATTEMPTS):
            try:
                await self.kv.create(key, value)
                log.info("classifier.watch_detection_started", watch=watch, bucket=bucket.isoformat())
                break
            except KeyWrongLastSequenceError:
                pass  # another replica (or an earlier run) started it
            try:
                entry = await self.kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                continue
            data = json.loads(entry.value or b"{}")
            start = data.get("surges", {}).get("next_bucket")
            if not data.get("fresh") or start is None or datetime.fromisoformat(start) <= bucket:
                break
            try:
                await self.kv.update(key, value, last=entry.revision)
                log.info("classifier.watch_detection_started", watch=watch, bucket=bucket.isoformat(), moved_from=start)
                break
            except KeyWrongLastSequenceError:
                self.metrics.conflicts.labels("state").inc()
        self._has_state.add(watch)

    def hurry(self) -> None:
        """From now on, flush as soon as counts are pending (a service stopping: its last batches wait for it)."""
        self._hurried = True
        self._now.set()

    async def run_flusher(self) -> None:
        """Flush pending counts every ``flush_interval`` while there are some; at once past :data:`FLUSH_AT`."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._hurried:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self.flush_interval)
                self._now.clear()
            try:
                await self.flush()
            except Exception as exc:  # pragma: no cover - flush retries itself; belt and braces
                log.error("classifier.flush_failed", error=repr(exc))

    # ------------------------------------------------------------ stepping
    async def horizon(self, now: datetime) -> datetime | None:
        """Return the time before which buckets may be stepped (``None``: not yet, a backlog is pending)."""
        horizon = now - self.grace
        try:
            info = await self.js.consumer_info(self.consumer.stream, self.consumer.durable)
            backlog = info.num_pending or 0
        except NotFoundError:
            backlog = 0
        if backlog > 0:
            if self._high_water is None:
                return None
            horizon = min(horizon, self._high_water - self.grace)
        return horizon

    async def tick(self, now: datetime | None = None) -> list[AlertRaised]:
        """Step every watch up to the horizon and publish the alerts decided; return those alerts."""
        now = now or self.clock()
        horizon = await self.horizon(now)
        if horizon is None:
            return []
        out: list[AlertRaised] = []
        for name in self.watches:
            out.extend(await self._advance(name, horizon))
        return out

    async def run_ticker(self, interval: float) -> None:
        """Call :meth:`tick` every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception as exc:
                log.error("classifier.tick_failed", error=repr(exc))

    async def _load(self, watch: str, bucket: datetime) -> BucketStats:
        try:
            entry = await self.kv.get(counter_key(watch, bucket))
        except (KeyNotFoundError, KeyDeletedError):
            return BucketStats()
        return BucketStats.from_json(json.loads(entry.value or b"{}"))

    async def _advance(self, name: str, horizon: datetime) -> list[AlertRaised]:
        watch = self.watches[name]
        key = state_key(name)
        for _ in range(_CAS_ATTEMPTS):
            try:
                entry = await self.kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                return []
            self._has_state.add(name)
            data = json.loads(entry.value or b"{}")
            outbox = [AlertRaised.model_validate(a) for a in data.get("outbox", [])]
            if outbox:  # a replica decided these and may have died before publishing them
                await self._publish_all(outbox)
                await self._clear_outbox(key, data, entry.revision or 0)
                continue
            surges = self._surges(watch, data)
            if surges.next_bucket is None:
                return []
            width = surges.width
            alerts: list[AlertRaised] = []
            steps = 0
            last: tuple[int, int, float, float] | None = None
            while surges.next_bucket + width <= horizon and steps < MAX_STEPS_PER_TICK:
                bucket = surges.next_bucket
                stats = await self._load(name, bucket)
                step = surges.decide(bucket, stats.total, stats.negative)
                if step.events():
                    n = min(step.window_buckets(), EXPLAIN_BUCKETS)
                    window = [await self._load(name, bucket - k * width) for k in range(n - 1, 0, -1)] + [stats]
                    alerts.extend(surges.alerts(step, window))
                steps += 1
                last = (stats.total, stats.negative, step.expected_total, step.expected_negative)
            if steps == 0:
                self._stepped_to[name] = surges.next_bucket
                return []
            state = {"surges": surges.to_state(), "outbox": [a.model_dump(mode="json") for a in alerts]}
            try:
                revision = await self.kv.update(key, _dump(state), last=entry.revision)
            except KeyWrongLastSequenceError:
                self.metrics.conflicts.labels("state").inc()
                continue  # another replica stepped this watch first: start again from its state
            self._stepped_to[name] = surges.next_bucket
            self.metrics.steps.labels(name).inc(steps)
            if last is not None:
                self.metrics.bucket_mentions.labels(name, "all").set(last[0])
                self.metrics.bucket_mentions.labels(name, "negative").set(last[1])
                self.metrics.bucket_expected.labels(name, "all").set(last[2])
                self.metrics.bucket_expected.labels(name, "negative").set(last[3])
            log.debug("classifier.watch_stepped", watch=name, steps=steps, next_bucket=surges.next_bucket.isoformat())
            if alerts:
                await self._publish_all(alerts)
                await self._clear_outbox(key, state, revision)
            await self._forget(name, surges.next_bucket - steps * width, surges.next_bucket, width)
            return alerts
        raise RuntimeError(f"could not step watch {name} after {_CAS_ATTEMPTS} attempts")

    def _surges(self, watch: Watch, data: dict[str, Any]) -> WatchSurges:
        state = data.get("surges", {})
        try:
            return WatchSurges.from_state(watch, state)
        except (ValueError, KeyError) as exc:  # settings changed in a way the state cannot follow
            surges = WatchSurges(watch)
            nxt = state.get("next_bucket")
            surges.next_bucket = bucket_start(datetime.fromisoformat(nxt), surges.width) if nxt else None
            log.warning("classifier.detector_state_reset", watch=watch.name, reason=str(exc))
            return surges

    async def _publish_all(self, alerts: list[AlertRaised]) -> None:
        for alert in alerts:
            await self.publish(alert)

    async def _clear_outbox(self, key: str, data: dict[str, Any], revision: int) -> None:
        try:
            await self.kv.update(key, _dump({**data, "outbox": []}), last=revision)
        except KeyWrongLastSequenceError:
            self.metrics.conflicts.labels("state").inc()  # someone else published and moved on

    async def _forget(self, watch: str, first: datetime, nxt: datetime, width: timedelta) -> None:
        """Purge counter keys that fell out of the explanation window."""
        bucket = first - EXPLAIN_BUCKETS * width
        limit = nxt - EXPLAIN_BUCKETS * width
        while bucket < limit:
            name = counter_key(watch, bucket)
            self._counters.pop(name, None)
            try:
                await self.kv.purge(name)
            except Exception as exc:  # pragma: no cover - best effort
                log.debug("classifier.counter_purge_failed", error=repr(exc))
            bucket += width


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
