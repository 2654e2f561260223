"""The ingestor framework: targets, polling, publishing, cursors, metrics, health, scheduling.

A source (RSS, Hacker News, ...) implements :class:`PollingSource`: it lists its
:class:`Target` s (one per feed or per watch) and turns one poll of a target, given its cursor,
into a :class:`PollResult`. :class:`IngestService` does the common work once:

- schedules each target on its interval with jitter, and backs off after failures (honouring
  ``Retry-After``);
- loads the cursor from KV, polls, re-checks each candidate against its watch's query, publishes
  each mention with ``Nats-Msg-Id`` = its stable id, dead-letters each malformed item of the poll
  (:mod:`veille.ingest.items`) with its raw payload and reason, and only then saves the new cursor;
- counts fetches, mentions, duplicates, errors by kind, rejected and repaired entries, lag and
  quota, and writes one canonical log line per poll;
- turns ``/readyz`` red, saying which targets fail and why, once *every* target has failed
  ``failing_after`` times in a row; one dead feed among many shows in metrics and logs only.

A source that holds a connection open (Bluesky Jetstream, Mastodon streaming) implements
:class:`StreamingSource` and gets the same publishing, cursors, metrics and health through
:class:`IngestContext`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeGuard, cast

import httpx
import structlog
from faststream.nats import NatsBroker
from nats.js import JetStreamContext

from veille import bus
from veille.health import Health
from veille.ingest.backoff import Backoff, jittered
from veille.ingest.cursors import Cursor, CursorStore, KvCursorStore
from veille.ingest.http import FetchError
from veille.ingest.items import DEAD_LETTER_KIND, RejectedItem
from veille.ingest.matching import Recheck
from veille.ingest.metrics import IngestMetrics
from veille.messaging import DeadLetterSink, make_broker
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested
from veille.settings import ServiceSettings
from veille.tasks import cancel_and_wait

__all__ = [
    "Clock",
    "IngestContext",
    "IngestService",
    "PollOutcome",
    "PollResult",
    "PollingSource",
    "Publisher",
    "StreamingSource",
    "Target",
    "TargetState",
]

log = structlog.get_logger("veille.ingest")

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Target:
    """One thing a source polls: a feed, or a watch's search; it has its own cursor."""

    key: str
    name: str
    interval: float
    watch: str | None = None
    recheck: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class PollResult:
    """What one poll of a target found."""

    mentions: list[MentionIngested]
    cursor: Cursor
    not_modified: bool = False
    newest: datetime | None = None
    rejected: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    """Log the canonical line at debug level (a firehose flush with nothing in it)."""
    malformed: list[RejectedItem] = field(default_factory=list)
    """Items that could not be mapped: dead-lettered with their reason before the cursor is saved."""


@dataclass
class PollOutcome:
    """What the framework did with one poll: published, duplicates, rejected, or the error."""

    target: Target
    outcome: str
    published: int = 0
    duplicates: int = 0
    rejected: int = 0
    error: FetchError | None = None
    next_in: float = 0.0


@dataclass
class TargetState:
    """Health bookkeeping for one target."""

    failures: int = 0
    last_error: str | None = None
    last_kind: str | None = None
    last_success: datetime | None = None


class Publisher(Protocol):
    """Where mentions go."""

    async def publish(self, mention: MentionIngested) -> bool:
        """Publish ``mention``; return False when the stream already had its id."""


class JetStreamPublisher:
    """Publishes mentions on their source's subject with ``Nats-Msg-Id`` = the mention id."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def publish(self, mention: MentionIngested) -> bool:
        """Publish and wait for the stream's ack; False when it was a duplicate."""
        ack = await self.js.publish(
            bus.mention_subject(mention.source),
            mention.model_dump_json().encode(),
            headers={"Nats-Msg-Id": mention.id},
            timeout=10.0,
        )
        return not bool(getattr(ack, "duplicate", False))


class PollingSource(Protocol):
    """A source polled on a schedule."""

    name: str

    def targets(self) -> list[Target]:
        """The feeds or watches to poll."""

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """Poll ``target`` from ``cursor``; raise :class:`FetchError` on failure."""


class StreamingSource(Protocol):
    """A source that holds a connection open and pushes mentions through the context."""

    name: str

    async def run(self, ctx: IngestContext) -> None:
        """Run until cancelled, reconnecting as needed."""


class IngestContext:
    """What a source gets from the framework: publishing with re-check, cursors, metrics, health."""

    def __init__(self, service: IngestService) -> None:
        self._service = service

    @property
    def metrics(self) -> IngestMetrics:
        """The ingest metrics."""
        return self._service.ingest_metrics

    @property
    def clock(self) -> Clock:
        """The service's clock."""
        return self._service.clock

    async def load_cursor(self, key: str) -> Cursor:
        """The cursor saved under ``key``."""
        return await self._service.cursors.load(key)

    async def save_cursor(self, key: str, cursor: Cursor) -> None:
        """Save a cursor (after the mentions it covers are published)."""
        await self._service.cursors.save(key, cursor)

    async def deliver(self, target: Target, result: PollResult) -> PollOutcome:
        """Publish a batch and save its cursor, as after a poll."""
        return await self._service.deliver(target, result, started=time.perf_counter())

    def succeeded(self, target: Target) -> None:
        """Record that ``target`` works (a connection is up, a batch went through)."""
        self._service.record_success(target)

    def failed(self, target: Target, error: FetchError) -> int:
        """Record a failure of ``target``; return the number of failures in a row."""
        return self._service.record_failure(target, error)


class IngestService:
    """A running ingestor: one source, its targets, the bus, cursors, metrics and health."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        source: PollingSource | StreamingSource,
        *,
        streams: tuple[StreamingSource, ...] = (),
        metrics: ServiceMetrics | None = None,
        clock: Clock | None = None,
        recheck: Recheck | None = None,
        http_client: httpx.AsyncClient | None = None,
        owns_http_client: bool = False,
        failing_after: int = 3,
        backoff: Backoff | None = None,
        jitter: float = 0.1,
        ingest_metrics: IngestMetrics | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.source = source
        self._poller: PollingSource | None = None
        self._streams: list[StreamingSource] = list(streams)
        if _is_polling(source):
            self._poller = source
        else:
            self._streams.insert(0, cast(StreamingSource, source))
        self.metrics = metrics or ServiceMetrics(name)
        self.ingest_metrics = ingest_metrics or IngestMetrics(self.metrics)
        self.health = Health()
        self.clock: Clock = clock or _utcnow
        self.recheck = recheck
        self.http_client = http_client
        self.owns_http_client = owns_http_client
        self.failing_after = failing_after
        self.backoff = backoff or Backoff()
        self.jitter = jitter
        self.broker: NatsBroker = make_broker(settings, name, self.metrics)
        self.cursors: CursorStore = _Unconnected()
        self.publisher: Publisher = _Unconnected()
        self.dead_letters = DeadLetterSink(name, self.metrics)
        self.states: dict[str, TargetState] = {}
        self._targets: dict[str, Target] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._connected = False
        self.health.add("nats", self._nats_problem)
        self.health.add("sources", self._sources_problem)

    # ------------------------------------------------------------------ lifecycle

    async def connect(self) -> None:
        """Connect to NATS, declare the topology, open the cursors bucket."""
        if self._connected:
            return
        await self.broker.connect()
        self.metrics.nats_connected.labels(self.name).set(1)
        js = self.broker.connection.jetstream()
        await bus.ensure_topology(js, replicas=self.settings.stream_replicas)
        self.cursors = await KvCursorStore.open(js)
        self.publisher = JetStreamPublisher(js)
        self.dead_letters.bind(self.broker.connection)
        self._connected = True

    async def start(self) -> None:
        """Connect and start polling (or streaming) in the background."""
        await self.connect()
        if self._poller is not None:
            for target in self._poller.targets():
                self._targets[target.key] = target
                self.states.setdefault(target.key, TargetState())
                self._tasks.append(asyncio.create_task(self._schedule(target), name=f"{self.name}:{target.name}"))
        for stream in self._streams:
            self._tasks.append(asyncio.create_task(self._stream(stream), name=f"{self.name}:{stream.name}"))
        log.info("ingest.started", source=self.source.name, tasks=len(self._tasks))

    async def stop(self) -> None:
        """Stop polling, close the HTTP client if ours, disconnect."""
        # a streaming source publishes what it holds when cancelled (Bluesky): time for that before a second cancel
        await cancel_and_wait(self._tasks, grace=5.0, timeout=20.0)
        self._tasks.clear()
        if self.http_client is not None and self.owns_http_client:
            await self.http_client.aclose()
        if self._connected:
            await self.broker.stop()
            self._connected = False

    # ------------------------------------------------------------------ one unit of work

    async def poll_all(self) -> list[PollOutcome]:
        """Poll every target once, one after the other (used by tests and ``--once`` runs)."""
        assert self._poller is not None, "poll_all() is for polling sources"
        outcomes = []
        for target in self._poller.targets():
            self._targets[target.key] = target
            outcomes.append(await self.poll(target))
        return outcomes

    async def poll(self, target: Target) -> PollOutcome:
        """Poll one target: cursor, fetch, publish, save cursor, metrics, log line. Never raises."""
        assert self._poller is not None, "poll() is for polling sources"
        self._targets.setdefault(target.key, target)
        self.states.setdefault(target.key, TargetState())
        started = time.perf_counter()
        source = self.source.name
        m = self.ingest_metrics
        try:
            cursor = await self.cursors.load(target.key)
            result = await self._poller.poll(target, cursor)
        except FetchError as exc:
            return self._failed(target, exc, started)
        except Exception as exc:  # a bug or an unexpected payload: counted and logged, never fatal
            log.exception("ingest.poll_crashed", source=source, target=target.name)
            return self._failed(target, FetchError("internal", f"{type(exc).__name__}: {exc}"), started)
        try:
            outcome = await self.deliver(target, result, started=started)
        except Exception as exc:
            message = f"could not publish or save the cursor: {type(exc).__name__}: {exc}"
            return self._failed(target, FetchError("publish", message), started)
        outcome.next_in = jittered(target.interval, self.jitter)
        m.fetch_seconds.labels(source).observe(time.perf_counter() - started)
        return outcome

    async def deliver(self, target: Target, result: PollResult, *, started: float) -> PollOutcome:
        """Re-check, publish each mention, save the cursor, count and log; raise if the bus fails."""
        source = self.source.name
        m = self.ingest_metrics
        rejected = Counter(result.rejected)
        published = duplicates = 0
        for mention in result.mentions:
            watch = mention.watch or target.watch
            if target.recheck and watch and self.recheck is not None and not self.recheck(watch, mention):
                rejected["not_matching"] += 1
                log.debug(
                    "ingest.entry_rejected",
                    source=source,
                    target=target.name,
                    reason="not_matching",
                    mention_id=mention.id,
                    url=str(mention.url) if mention.url else None,
                )
                continue
            if await self.publisher.publish(mention):
                published += 1
            else:
                duplicates += 1
        for item in result.malformed:
            await self._dead_letter(target, item)
            rejected[item.kind] += 1
        await self.cursors.save(target.key, result.cursor)
        for reason, count in rejected.items():
            m.entries_rejected.labels(source, reason).inc(count)
        for problem, count in result.repaired.items():
            m.entries_repaired.labels(source, problem).inc(count)
        if published:
            m.mentions.labels(source).inc(published)
        if duplicates:
            m.duplicates.labels(source).inc(duplicates)
        outcome_label = "not_modified" if result.not_modified else "ok"
        m.fetches.labels(source, outcome_label).inc()
        newest = result.newest
        if newest is None and isinstance(result.cursor.get("newest"), str):
            with contextlib.suppress(ValueError):
                newest = datetime.fromisoformat(result.cursor["newest"])
        if newest is not None:
            m.lag.labels(source, target.name).set(max(0.0, (self.clock() - newest).total_seconds()))
        self.record_success(target)
        emit = log.debug if result.quiet and not (published or duplicates or rejected) else log.info
        emit(
            "ingest.fetch_completed",
            source=source,
            target=target.name,
            watch=target.watch,
            outcome=outcome_label,
            entries=len(result.mentions),
            published=published,
            duplicates=duplicates,
            rejected=dict(rejected) or None,
            repaired=dict(result.repaired) or None,
            elapsed_ms=round((time.perf_counter() - started) * 1000, 1),
            **result.details,
        )
        return PollOutcome(target, outcome_label, published, duplicates, sum(rejected.values()))

    async def _dead_letter(self, target: Target, item: RejectedItem) -> None:
        """Keep a malformed item in the dead-letter stream (raises if the stream cannot take it)."""
        source = self.source.name
        await self.dead_letters.send(
            subject=bus.mention_subject(source),
            payload=item.payload(),
            headers={"Nats-Msg-Id": item.item_id(source), "Veille-Target": target.name},
            kind=DEAD_LETTER_KIND,
            reason=f"{source} item from {target.name!r} is malformed ({item.kind}): {item.reason}",
        )

    def _failed(self, target: Target, error: FetchError, started: float) -> PollOutcome:
        failures = self.record_failure(target, error)
        delay = self.backoff.delay(failures, retry_after=error.retry_after)
        if not error.retryable:
            delay = max(delay, target.interval)
        self.ingest_metrics.fetch_seconds.labels(self.source.name).observe(time.perf_counter() - started)
        log.warning(
            "ingest.fetch_failed",
            source=self.source.name,
            target=target.name,
            watch=target.watch,
            kind=error.kind,
            error=error.message,
            status=error.status,
            retry_after=error.retry_after,
            failures=failures,
            next_poll_in=round(delay, 1),
        )
        return PollOutcome(target, "error", error=error, next_in=delay)

    def record_success(self, target: Target) -> None:
        """Mark ``target`` healthy."""
        state = self.states.setdefault(target.key, TargetState())
        self._targets.setdefault(target.key, target)
        state.failures = 0
        state.last_error = state.last_kind = None
        state.last_success = self.clock()
        m = self.ingest_metrics
        m.consecutive_failures.labels(self.source.name, target.name).set(0)
        m.last_success.labels(self.source.name, target.name).set(state.last_success.timestamp())

    def record_failure(self, target: Target, error: FetchError) -> int:
        """Count a failure of ``target``; return the failures in a row."""
        state = self.states.setdefault(target.key, TargetState())
        self._targets.setdefault(target.key, target)
        state.failures += 1
        state.last_error = error.message
        state.last_kind = error.kind
        m = self.ingest_metrics
        m.errors.labels(self.source.name, error.kind).inc()
        m.fetches.labels(self.source.name, "error").inc()
        m.consecutive_failures.labels(self.source.name, target.name).set(state.failures)
        return state.failures

    # ------------------------------------------------------------------ scheduling

    async def _schedule(self, target: Target) -> None:
        """Poll ``target`` forever: interval with jitter, backoff after failures."""
        await asyncio.sleep(random.random() * self.jitter * target.interval)
        while True:
            outcome = await self.poll(target)
            await asyncio.sleep(outcome.next_in)

    async def _stream(self, stream: StreamingSource) -> None:
        ctx = IngestContext(self)
        while True:
            try:
                await stream.run(ctx)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ingest.stream_crashed", source=stream.name)
            await asyncio.sleep(self.backoff.base)

    # ------------------------------------------------------------------ health

    def _nats_problem(self) -> str | None:
        try:
            connection = self.broker.connection
        except Exception:
            connection = None
        if connection is None or not connection.is_connected:
            return "not connected to NATS"
        return None

    def _sources_problem(self) -> str | None:
        """Unready only when every target is failing: the service can no longer ingest anything.

        One dead upstream among several is not the service's problem: it shows in
        ``veille_ingest_consecutive_failures`` and the ``ingest.fetch_failed`` log lines.
        """
        failing = []
        for key, state in self.states.items():
            if state.failures >= self.failing_after:
                target = self._targets.get(key)
                label = target.name if target else key
                failing.append(
                    f"{self.source.name} {label!r} failed {state.failures} times in a row "
                    f"({state.last_kind}: {state.last_error})"
                )
        if len(failing) < len(self.states):
            return None
        return "; ".join(failing) or None


class _Unconnected:
    """Placeholder until :meth:`IngestService.connect` runs."""

    async def load(self, key: str) -> Cursor:
        raise RuntimeError("IngestService.connect() first")

    async def save(self, key: str, cursor: Cursor) -> None:
        raise RuntimeError("IngestService.connect() first")

    async def publish(self, mention: MentionIngested) -> bool:
        raise RuntimeError("IngestService.connect() first")


def _is_polling(source: PollingSource | StreamingSource) -> TypeGuard[PollingSource]:
    return hasattr(source, "poll") and hasattr(source, "targets")
