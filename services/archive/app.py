"""Composition root of the archive: classified mentions and alerts from JetStream into a database.

Two durable pull consumers (``bus.ARCHIVE_CONSUMER`` on the classified mentions,
``bus.ARCHIVE_ALERTS_CONSUMER`` on the alerts), each read in batches of up to
``archive.batch_size`` messages. A batch is written in one transaction (:mod:`services.archive.store`,
idempotent) and its messages are acked only once that transaction committed: a crash at any point
leaves unacked messages that JetStream redelivers, and their second write changes nothing. Each
consumer is a bounded pipeline: while a batch is written (a task, the database's work in its driver's
thread or server), the next is fetched, decoded and validated, and fills up to the batch size; on
PostgreSQL up to ``archive.writers`` mention batches (2 by default) are written side by side, each its own
transaction on its own connection (SQLite, and the alerts' consumer: one at a time). So a backlog drains
in full batches and the decode costs no wall time beside the writes; at most ``writers + 1`` batches are
in hand, and each batch's acks follow its own commit.

The database down (connection refused, server restarting, SQLite locked past its busy timeout):
the batch in hand is held, unacked, and kept from redelivery (``+WPI`` progress acks), and so is the
next one already collected; ``/readyz`` says 503 with the reason; nothing more is fetched; the write
is retried with a growing delay (up to 5 s), or sooner (``retry_delay``, 0.5 s, at the soonest) once another
write has succeeded. ``/readyz`` says ready again only when no batch waits for the database any more, so one
failing writer beside one that succeeds keeps it at 503 instead of flipping at each write. When it commits,
the held batch is acked and the backlog drains at full speed. The consumers have no ``max_deliver`` limit:
an outage never makes JetStream give up on a message.

Bad input never stops the archive: a payload that is not a message at all is dead-lettered (kind,
reason, metric) and acked; strings the database would refuse (NUL, lone surrogates) or that are too
long are cleaned or cut, stored, and counted in ``veille_archive_fields_cleaned_total``; a row the
database itself refuses (the database up and answering) is retried alone and dead-lettered with the
database's reason, the rest of its batch is stored.

The read-only HTTP JSON API (:mod:`services.archive.api`: search, aggregations, alerts) listens on
its own port from the start, on a read engine of its own (``VEILLE_ARCHIVE_API_*``; no token: loopback only).

Retention runs at start and every ``retention_interval``: monthly partitions dropped on
PostgreSQL (and the coming months' created), batched deletes on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import structlog
from faststream.nats import NatsBroker
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel

from services.archive.api import ApiSettings, ArchiveApi
from services.archive.clean import decode
from services.archive.db import database_url, describe_url, make_engine, migrate
from services.archive.store import ArchiveStore, WriteResult, is_connection_error, is_write_conflict
from veille import bus
from veille.config import VeilleConfig, load_config
from veille.consumerlag import ConsumerLagMonitor
from veille.health import Health
from veille.jetstream import PullFetcher
from veille.messaging import DeadLetterSink, ack_batch, dead_letter_retry_delay, make_broker
from veille.metrics import PREFIX, ServiceMetrics
from veille.models import AlertRaised, MentionClassified
from veille.settings import ServiceSettings
from veille.spikes import DetectorSettings
from veille.tasks import cancel_and_wait

__all__ = ["ArchiveApp", "create_app"]

NAME = "archive"
MAX_PAYLOAD = 1024 * 1024
WRITER_POLL = 0.01
"""Seconds the collector waits for more messages before looking again whether the writer is free."""
WOKEN_RETRY_FLOOR = 1.0
"""Seconds a failed write waits at least before it is tried again because another one succeeded."""
log = structlog.get_logger("archive")

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class _Lane(Generic[M]):
    """One consumer: where it reads, what it decodes, what it makes of a message as soon as it is decoded
    (``prepare``: a mention's database row), how a batch of those is written."""

    kind: str
    consumer: bus.Consumer
    model: type[M]
    prepare: Callable[[M, datetime], Any]
    write: Callable[[Sequence[Any]], Awaitable[WriteResult]]
    writers: int = 1
    """Batches written at once (each its own transaction and connection)."""


def _same(message: Any, _now: datetime) -> Any:
    return message


def _reap(writing: list[asyncio.Task[None]]) -> None:
    """Take the finished writes off ``writing``; a failed one's exception is raised (the lane's failure)."""
    for task in [task for task in writing if task.done()]:
        writing.remove(task)
        task.result()


class ArchiveApp:
    """The running archive."""

    name = NAME

    def __init__(
        self,
        settings: ServiceSettings,
        config: VeilleConfig,
        *,
        metrics: ServiceMetrics | None = None,
        batch_size: int | None = None,
        retention_interval: float = 3600.0,
        retry_delay: float = 0.5,
        max_retry_delay: float = 5.0,
        fetch_timeout: float = 1.0,
        api: ApiSettings | None = None,
    ) -> None:
        """Build the archive; nothing connects before :meth:`start`."""
        self.settings = settings
        self.config = config
        self.batch_size = batch_size or config.archive.batch_size
        self.retention_interval = retention_interval
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.fetch_timeout = fetch_timeout
        self.url = database_url(settings, config.archive)
        self.engine = make_engine(self.url)
        self.store = ArchiveStore(self.engine, retention=config.archive.retention)
        self.writers = config.archive.writers if self.store.postgres else 1  # SQLite: one writer at a time
        self.api_settings = api or ApiSettings()
        self.reader = make_engine(self.url, write=False)
        token = self.api_settings.archive_api_token
        self.api = ArchiveApi(
            self.reader,
            token=token.get_secret_value() if token else None,
            detector_settings=self._detector_settings,
            not_ready=lambda: self._problem if self._problem and self._problem.startswith("opening") else None,
        )
        self.metrics = metrics or ServiceMetrics(NAME)
        self.health = Health()
        registry = self.metrics.registry
        self.written = Counter(
            f"{PREFIX}_archive_rows_total",
            "Messages the archive committed, by kind (mentions, alerts) and outcome: written (new or "
            "reclassified), unchanged (already archived: a redelivery or replay), expired (older than the retention).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.cleaned = Counter(
            f"{PREFIX}_archive_fields_cleaned_total",
            "Values the archive cleaned before storing them, by field and action "
            "(nul_removed, surrogate_replaced, truncated, invalid_utf8_replaced).",
            ["field", "action"],
            registry=registry,
        )
        self.database_up = Gauge(
            f"{PREFIX}_archive_database_up",
            "1 while the archive's database takes writes, 0 otherwise.",
            registry=registry,
        )
        self.database_errors = Counter(
            f"{PREFIX}_archive_database_errors_total",
            "Failed writes, by kind: unavailable (the database cannot be reached), refused (it refused the data) "
            "or conflict (PostgreSQL ended the batch's transaction as a deadlock; the batch was written again).",
            ["kind"],
            registry=registry,
        )
        self.store.on_conflict = self.database_errors.labels("conflict").inc
        self.held = Gauge(
            f"{PREFIX}_archive_held_messages",
            "Messages held unacked while the database is unavailable.",
            registry=registry,
        )
        self.commit_seconds = Histogram(
            f"{PREFIX}_archive_commit_seconds",
            "Time to write and commit one batch, by kind.",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.retention_deleted = Counter(
            f"{PREFIX}_archive_retention_deleted_total",
            "What retention removed, by what: mentions, mention_watches, mention_keys, alerts (rows) or partitions.",
            ["what"],
            registry=registry,
        )
        self.database_up.set(0)
        self.sink = DeadLetterSink(NAME, self.metrics)
        self.broker: NatsBroker = make_broker(settings, NAME, self.metrics)
        self.lanes: tuple[_Lane[Any], ...] = (
            _Lane(
                "mentions",
                bus.ARCHIVE_CONSUMER,
                MentionClassified,
                self.store.mention_row,
                self.store.write_mention_rows,
                self.writers,
            ),
            _Lane("alerts", bus.ARCHIVE_ALERTS_CONSUMER, AlertRaised, _same, self.store.write_alerts),  # one writer
        )
        self.lag = ConsumerLagMonitor(NAME, registry, [lane.consumer for lane in self.lanes])
        self._problem: str | None = "opening the database (migrating the schema)"
        self._held_for_database: set[object] = set()
        """The commits whose batch waits for the database: not ready until none is left."""
        self._database_back = asyncio.Event()
        """Set, then replaced, by each write that succeeds: wakes the commits waiting for the database."""
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.health.add("nats", self._nats_problem)
        self.health.add("database", lambda: self._problem)

    def _detector_settings(self, watch: str) -> DetectorSettings | None:
        for candidate in self.config.watches:
            if candidate.name == watch:
                try:
                    return DetectorSettings(**candidate.spike)
                except ValueError:
                    return None
        return None

    def _nats_problem(self) -> str | None:
        try:
            connection = self.broker.connection
        except Exception:
            connection = None
        if connection is None or not connection.is_connected:
            return "not connected to NATS"
        return None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Serve the API, connect to NATS, then open the database and consume in the background."""
        if self.api.port is None:
            host, port = self.api_settings.archive_api_host, self.api_settings.archive_api_port
            try:
                await self.api.start(host, port)
            except OSError as exc:  # the archive still archives; the log says why there is no API
                log.error(
                    "archive.api_unavailable",
                    error=exc.strerror or str(exc),
                    port=port,
                    fix="free the port or set VEILLE_ARCHIVE_API_PORT",
                )
        await self.broker.connect()
        self.metrics.nats_connected.labels(NAME).set(1)
        js = self.broker.connection.jetstream()
        await bus.ensure_topology(js, replicas=self.settings.stream_replicas)
        self.sink.bind(self.broker.connection)
        self.lag.start(js)
        self._stopping.clear()
        self._tasks.append(asyncio.create_task(self._run(), name="archive"))

    async def stop(self) -> None:
        """Stop fetching, finish (or nak) the batches in hand, close the database and NATS."""
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.lag.stop()
        try:
            with contextlib.suppress(Exception):
                await self.broker.connection.flush(timeout=5)
            await self.broker.stop()
        finally:
            await self.api.stop()
            self.api.port = None
            await self.engine.dispose()
            await self.reader.dispose()

    async def _run(self) -> None:
        if not await self._open():
            return
        retention = asyncio.create_task(self._retention_loop(), name="archive-retention")
        try:
            await asyncio.gather(*(self._consume(lane) for lane in self.lanes))
        finally:
            await cancel_and_wait([retention])

    async def _open(self) -> bool:
        """Migrate and prepare the database, retrying until it answers; False when stopped first."""
        delay = self.retry_delay
        while not self._stopping.is_set():
            try:
                await migrate(self.engine)
                await self.store.prepare()
            except Exception as exc:
                self._down(exc, "opening the database")
                await self._pause(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            self._up()
            log.info("archive.database_open", database=describe_url(self.url), batch_size=self.batch_size)
            return True
        return False

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _down(self, exc: BaseException, doing: str, held: object | None = None) -> None:
        """The database failed ``doing``; ``held``: the commit that now waits for it."""
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        if self._problem is None or self._problem.startswith("opening"):
            log.error("archive.database_unavailable", doing=doing, error=reason, database=describe_url(self.url))
        self._problem = f"database unavailable ({doing}): {reason}"
        self.database_up.set(0)
        if held is not None:
            self._held_for_database.add(held)

    def _up(self, held: object | None = None) -> None:
        """A write succeeded (``held``: the commit that made it, no longer waiting).

        The commits still waiting are woken to try again now. Ready again only once none is left: with two
        writers, or the two lanes, one failing and the other succeeding, the archive stays not ready (its
        held batches say why) instead of going back and forth at each write. Also called when the database
        refused a batch's data: it answered, so that batch no longer waits for it.

        While not ready, a lane fetches no new batch beside one being written (see :meth:`_collect`): a batch
        held for the database also pauses its lane's other writer until it is written.
        """
        self._held_for_database.discard(held)
        back, self._database_back = self._database_back, asyncio.Event()
        back.set()
        if self._held_for_database:
            return
        if self._problem is not None and not self._problem.startswith("opening"):
            log.info("archive.database_available", database=describe_url(self.url))
        self._problem = None
        self.database_up.set(1)

    async def _hold(self, seconds: float, back: asyncio.Event) -> None:
        """Wait ``seconds`` before a failed write is tried again, or less once another write has succeeded since
        it was started (``back``: :attr:`_database_back` read before it).

        Woken that way it still waits at least ``retry_delay`` (0.5 s by default), or :data:`WOKEN_RETRY_FLOOR`
        if that is shorter: a batch whose own connection keeps failing is retried at most that often, however
        often the others commit.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        await self._pause(min(seconds, self.retry_delay, WOKEN_RETRY_FLOOR))
        rest = seconds - (loop.time() - started)
        if rest <= 0 or self._stopping.is_set() or back.is_set():
            return
        waits = {asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(back.wait())}
        try:
            await asyncio.wait(waits, timeout=rest, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    # ---------------------------------------------------------------- consuming

    async def _consume(self, lane: _Lane[Any]) -> None:
        """Fetch, decode and write one lane's batches, the next one collected while the last ones commit.

        A bounded pipeline: at most ``lane.writers`` batches are being written (tasks, each its own
        transaction on its own connection) while the next is fetched and decoded; a write starts only
        once a writer is free, and a batch's messages are acked only after its own commit. So at most
        ``writers + 1`` batches are in hand and nothing is acked uncommitted. Batches may commit out of
        stream order; the store makes that harmless (idempotent upserts, a later classification wins).
        """
        fetcher = PullFetcher(lane.consumer.stream, lane.consumer.durable, expires=self.fetch_timeout)
        await fetcher.start(self.broker.connection)
        writing: list[asyncio.Task[None]] = []
        try:
            while not self._stopping.is_set():
                batch = await self._collect(lane, fetcher, writing)
                _reap(writing)
                if writing and (len(writing) >= lane.writers or self._problem is not None):
                    # every writer busy, or the database down (a write retried): this batch waits its turn
                    await self._wait_written(lane, writing, batch)
                if batch and self._stopping.is_set() and self._problem is not None:
                    await self._release(batch)  # stopping with the database down: another replica takes it
                elif batch:
                    writing.append(asyncio.create_task(self._commit(lane, batch), name=f"archive-{lane.kind}-write"))
        finally:
            try:
                ended = await asyncio.gather(*writing, return_exceptions=True)
                failed = [outcome for outcome in ended if isinstance(outcome, BaseException)]
                for extra in failed[1:]:  # the first is raised: the lane's failure; the others said here
                    log.error("archive.write_failed", kind=lane.kind, error=f"{type(extra).__name__}: {extra}"[:300])
                if failed:
                    raise failed[0]
            finally:
                await fetcher.stop()  # even when a write failed: the read-ahead goes back to JetStream now

    async def _collect(
        self, lane: _Lane[Any], fetcher: PullFetcher, writing: Sequence[asyncio.Task[None]]
    ) -> list[tuple[Msg, Any]]:
        """The next batch, decoded: up to ``batch_size`` valid messages (what is no message dead-lettered).

        It waits up to ``fetch_timeout`` for a first message. Then, while every writer is busy, it takes
        what arrives (decoding it meanwhile: the decode overlaps the database's work) until the batch is
        full; once a writer is free it adds only what is already delivered and returns, so a quiet
        stream's mention is written at once. The database down: it stops at what it has (no more
        messages are taken from JetStream while the writes are retried).
        """
        batch: list[tuple[Msg, Any]] = []
        try:
            while len(batch) < self.batch_size and not self._stopping.is_set():
                running = sum(not task.done() for task in writing)
                if running and self._problem is not None:
                    break
                busy = running >= lane.writers
                if busy:
                    timeout = WRITER_POLL
                elif batch:
                    timeout = 0.0  # what is already delivered, no wait
                else:
                    timeout = self.fetch_timeout
                try:
                    msgs = await fetcher.fetch(self.batch_size - len(batch), timeout)
                except TimeoutError:
                    if busy:
                        continue
                    break
                except Exception as exc:
                    log.warning("archive.fetch_failed", kind=lane.kind, error=str(exc) or type(exc).__name__)
                    await self._pause(self.retry_delay)
                    break
                await self._decode(lane, msgs, batch)
        finally:
            self._count_cleaned()
        return batch

    async def _decode(self, lane: _Lane[Any], msgs: Sequence[Msg], into: list[tuple[Msg, Any]]) -> None:
        """Append the valid messages of ``msgs`` to ``into``, each with what the lane prepared of its model (a
        mention's row: built here, while the previous batch is being written, not on the write's path);
        dead-letter the others."""
        model, cleaner, prepare = lane.model, self.store.cleaner, lane.prepare
        now = self.store.clock()  # one archived_at for the messages that came together
        for msg in msgs:
            data = msg.data
            if len(data) > MAX_PAYLOAD:
                await self._dead_letter(
                    lane, msg, "too_large", f"payload is {len(data)} bytes, over the {MAX_PAYLOAD}-byte limit"
                )
                continue
            decoded = decode(model, data, cleaner)
            if isinstance(decoded, tuple):
                await self._dead_letter(lane, msg, *decoded)
                continue
            try:
                into.append((msg, prepare(decoded, now)))
            except Exception as exc:  # a valid message the archive cannot make a row of: a bug, said so, not a crash
                log.error("archive.prepare_failed", kind=lane.kind, error=f"{type(exc).__name__}: {exc}"[:300])
                await self._dead_letter(
                    lane, msg, "unstorable", f"cannot be archived: {type(exc).__name__}: {exc}"[:2000]
                )

    async def _wait_written(
        self, lane: _Lane[Any], writing: list[asyncio.Task[None]], waiting: list[tuple[Msg, Any]]
    ) -> None:
        """Wait until one of the batches being written (``writing``) is done, and take it off the list;
        meanwhile keep the next one (``waiting``) from redelivery.

        While the database is down the writes are retried for as long as it takes: the waiting batch
        gets the same progress acks (``+WPI``) as the ones being retried, and counts as held."""
        progress_every = max(1.0, lane.consumer.ack_wait / 3)
        held = 0
        try:
            while True:
                done, _ = await asyncio.wait(writing, timeout=progress_every, return_when=asyncio.FIRST_COMPLETED)
                if done:
                    _reap(writing)
                    return
                if waiting:
                    if not held and self._problem is not None:
                        held = len(waiting)
                        self.held.inc(held)
                    await asyncio.gather(*(msg.in_progress() for msg, _ in waiting), return_exceptions=True)
        finally:
            if held:
                self.held.dec(held)

    async def _commit(self, lane: _Lane[Any], batch: list[tuple[Msg, Any]]) -> None:
        """Write ``batch`` and ack it; hold it while the database is unavailable; isolate refused rows."""
        held_by = object()  # this commit, while its batch waits for the database
        try:
            await self._commit_held(lane, batch, held_by)
        finally:
            self._held_for_database.discard(held_by)

    async def _commit_held(self, lane: _Lane[Any], batch: list[tuple[Msg, Any]], held_by: object) -> None:
        delay = self.retry_delay
        progress_every = max(1.0, lane.consumer.ack_wait / 3)
        last_progress = time.monotonic()
        while True:
            started = time.perf_counter()
            back = self._database_back  # set by any write that succeeds from now on
            try:
                result = await lane.write([prepared for _, prepared in batch])
            except Exception as exc:
                if self._stopping.is_set():
                    await self._release(batch)
                    return
                conflict = is_write_conflict(exc)  # deadlocked again and again (the store counted it): later
                if conflict or is_connection_error(exc) or not await self._reachable():
                    held = 0
                    if conflict:
                        log.warning("archive.write_conflict", kind=lane.kind, size=len(batch), again_in=delay)
                    else:
                        self.database_errors.labels("unavailable").inc()
                        self._down(exc, f"writing {lane.kind}", held_by)
                        held = len(batch)
                    self.held.inc(held)
                    try:
                        if time.monotonic() - last_progress >= progress_every:
                            await asyncio.gather(*(msg.in_progress() for msg, _ in batch), return_exceptions=True)
                            last_progress = time.monotonic()
                        await (self._pause(delay) if conflict else self._hold(delay, back))
                    finally:
                        self.held.dec(held)
                    delay = min(delay * 2, self.max_retry_delay)
                    continue
                self.database_errors.labels("refused").inc()
                self._up(held_by)  # the database answered: this batch no longer waits for it
                if len(batch) > 1:
                    log.warning(
                        "archive.batch_refused",
                        kind=lane.kind,
                        size=len(batch),
                        error=str(exc)[:300],
                        then="one by one",
                    )
                    for item in batch:
                        await self._commit(lane, [item])
                    return
                await self._dead_letter(lane, batch[0][0], "database_refused", f"the database refused it: {exc}"[:2000])
                return
            self._up(held_by)
            self.commit_seconds.labels(lane.kind).observe(time.perf_counter() - started)
            await ack_batch(  # one write for the batch's acks
                self.broker.connection,
                [msg for msg, _ in batch],
                NAME,
                self.metrics.messages.labels(NAME, lane.consumer.stream, "ack_failed"),
            )
            for outcome in ("written", "unchanged", "expired"):
                count = getattr(result, outcome)
                if count:
                    self.written.labels(lane.kind, outcome).inc(count)
            self.metrics.messages.labels(NAME, lane.consumer.stream, "ok").inc(len(batch))
            self._count_cleaned()  # what the row building cleaned
            return

    async def _reachable(self) -> bool:
        try:
            await asyncio.wait_for(self.store.ping(), 10)
        except Exception:
            return False
        return True

    async def _release(self, batch: list[tuple[Msg, Any]]) -> None:
        """Give unwritten messages back to JetStream at once (stopping): another replica takes them."""
        for msg, _ in batch:
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _dead_letter(self, lane: _Lane[Any], msg: Msg, kind: str, reason: str) -> None:
        headers = dict(msg.headers or {})
        try:
            attempts = int(msg.metadata.num_delivered or 1)
            origin: str | None = f"{msg.metadata.stream or lane.consumer.stream}#{msg.metadata.sequence.stream}"
        except Exception:
            attempts, origin = 1, None
        try:
            await self.sink.send(
                subject=msg.subject,
                payload=msg.data,
                headers=headers,
                kind=kind,
                reason=reason,
                attempts=attempts,
                origin=origin,
            )
        except Exception as exc:
            log.error("archive.dead_letter_failed", error=str(exc) or type(exc).__name__)
            await msg.nak(delay=dead_letter_retry_delay(attempts))
            return
        await msg.ack()
        self.metrics.messages.labels(NAME, lane.consumer.stream, "dead_lettered").inc()

    def _count_cleaned(self) -> None:
        for (field, action), count in self.store.cleaner.take().items():
            self.cleaned.labels(field, action).inc(count)

    # ---------------------------------------------------------------- retention

    async def _retention_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                gone = await self.store.enforce_retention()
                await self.store.prepare()
            except Exception as exc:
                log.warning("archive.retention_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            else:
                for what, count in gone.items():
                    if count:
                        self.retention_deleted.labels(what).inc(count)
                if any(gone.values()):
                    log.info("archive.retention_done", **{k: v for k, v in gone.items() if v})
            await self._pause(self.retention_interval)


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    metrics: ServiceMetrics | None = None,
    **options: Any,
) -> ArchiveApp:
    """Build the archive from settings (and the options a test passes: batch size, retry delays ...)."""
    return ArchiveApp(settings, config or load_config(settings.config), metrics=metrics, **options)
