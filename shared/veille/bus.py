"""The one place that declares subjects, streams, consumers and KV buckets.

Every service imports its subjects from here; ``ensure_topology`` creates (or updates) the
streams and buckets idempotently, so any service, ``veille up`` or a test can call it at start.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    SubjectTransform,
)
from nats.js.errors import APIError, BadRequestError, NotFoundError

__all__ = [
    "ALERTS",
    "ARCHIVE_ALERTS_CONSUMER",
    "ARCHIVE_CONSUMER",
    "BUCKETS",
    "CLASSIFIED",
    "CONSUMERS",
    "DEADLETTER",
    "MENTIONS",
    "NOTIFICATION_DLQ_SUBJECT",
    "NOTIFIER_ALERT_CONSUMERS",
    "NOTIFIER_CONSUMER",
    "NOTIFIER_PARTITIONS",
    "NOTIFIER_REPLAY_CONSUMER",
    "NOTIFY_GROUPS",
    "NOTIFY_LEASES",
    "NOTIFY_LOG",
    "NOTIFY_REPLAY",
    "NOTIFY_SEEN",
    "SILENCES",
    "STREAMS",
    "Bucket",
    "Consumer",
    "Stream",
    "alert_partition",
    "alert_subject",
    "classified_subject",
    "deadletter_subject",
    "ensure_topology",
    "mention_subject",
    "notifier_partition_consumer",
    "notify_replay_subject",
    "safe_token",
]

PREFIX = "veille"
DAY = 86_400.0
MiB = 1024 * 1024
GiB = 1024 * MiB
# Every stream has a size budget (5.1 GiB in all, reserved by nats-server against its
# max_file_store, see deploy/nats/nats.conf), so JetStream never fills the disk: a disk that fills
# leaves a nats-server stream unwritable until the server restarts (docs/operations.md#disk-full).
# The streams the pipeline flows through (mentions, classified, alerts) drop their oldest messages
# when full, long read by then (VeilleConsumerLagGrowing fires well before a backlog nears a
# budget): a busy month must never stop ingestion. The dead-letter and replay streams refuse new
# messages when full instead (nothing there is ever dropped unseen; /readyz says 503, ops purge).
# A server with less room than the budgets (a laptop's small disk) gets budgets halved until they
# fit (``ensure_topology``), and a budget ops lowered by hand is kept.
MIN_BUDGET = 8 * MiB

log = structlog.get_logger("veille.bus")


def safe_token(value: str) -> str:
    """Return ``value`` as one safe NATS subject token (no dots, spaces or wildcards)."""
    out = []
    for ch in value.strip().lower():
        out.append(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_")
    return "".join(out) or "_"


def mention_subject(source: str) -> str:
    """Subject a raw mention from ``source`` is published on."""
    return f"{PREFIX}.mentions.ingested.{safe_token(source)}"


def classified_subject(source: str) -> str:
    """Subject a classified mention from ``source`` is published on."""
    return f"{PREFIX}.mentions.classified.{safe_token(source)}"


def alert_subject(watch: str) -> str:
    """Subject an alert about ``watch`` is published on."""
    return f"{PREFIX}.alerts.{safe_token(watch)}"


NOTIFIER_PARTITIONS = 16
"""Partitions of the alerts stream (by watch) that notifier replicas share (services/notifier/partitions.py).

The stream maps ``veille.alerts.<watch>`` to ``veille.alerts.<watch>.<partition>`` as it stores it
(a JetStream subject transform, ``{{partition(16,1)}}``: FNV-1a of the watch token modulo 16), so
publishers need not know it. Up to 16 replicas share the work; changing the number moves watches to
other partitions (a migration: drain the notifier consumers first)."""


def alert_partition(watch: str) -> int:
    """The partition ``{{partition(N,1)}}`` gives ``alert_subject(watch)`` in nats-server: FNV-1a 32 of it mod N."""
    value = 0x811C9DC5
    for byte in safe_token(watch).encode():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value % NOTIFIER_PARTITIONS


def deadletter_subject(service: str, kind: str = "message") -> str:
    """Subject a dead letter from ``service`` is published on."""
    return f"{PREFIX}.dlq.{safe_token(service)}.{safe_token(kind)}"


def notify_replay_subject(target: str) -> str:
    """Subject a dead-lettered notification for receiver integration ``target`` is replayed on."""
    return f"{PREFIX}.notify.replay.{safe_token(target)}"


NOTIFICATION_DLQ_SUBJECT = deadletter_subject("notifier", "notification")


@dataclass(frozen=True)
class Stream:
    """A JetStream stream: its name, subjects and retention."""

    name: str
    subjects: tuple[str, ...]
    max_age: float
    duplicate_window: float = 3600.0
    description: str = ""
    max_bytes: int = -1
    """Size budget on disk: a full stream drops its oldest messages (``discard`` OLD) or refuses new ones (NEW)."""
    discard: DiscardPolicy = DiscardPolicy.OLD
    transform: tuple[str, str] | None = None
    """A subject transform (source, destination) applied to each message as the stream stores it."""

    def config(self, replicas: int = 1) -> StreamConfig:
        """Return the nats-py stream configuration."""
        transform = SubjectTransform(src=self.transform[0], dest=self.transform[1]) if self.transform else None
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=self.max_age,
            duplicate_window=self.duplicate_window,
            discard=self.discard,
            max_bytes=self.max_bytes,
            num_replicas=replicas,
            subject_transform=transform,
        )


@dataclass(frozen=True)
class Consumer:
    """A durable pull consumer shared by every replica of one service."""

    stream: str
    durable: str
    filter_subject: str
    ack_wait: float = 30.0
    max_deliver: int = 10
    max_ack_pending: int = 2000

    def config(self) -> ConsumerConfig:
        """Return the nats-py consumer configuration."""
        return ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
            filter_subject=self.filter_subject,
        )


@dataclass(frozen=True)
class Bucket:
    """A KV bucket."""

    name: str
    description: str
    history: int = 1
    ttl: float | None = None
    extra: dict[str, str] = field(default_factory=dict)
    direct: bool = False
    """Direct gets (``$JS.API.DIRECT.GET``: the raw value, no JSON/base64 envelope); made so on existing buckets too."""

    def config(self, replicas: int = 1) -> KeyValueConfig:
        """Return the nats-py KV configuration."""
        return KeyValueConfig(
            bucket=self.name,
            description=self.description,
            history=self.history,
            ttl=self.ttl,
            storage=StorageType.FILE,
            replicas=replicas,
            direct=self.direct or None,
        )


MENTIONS = Stream(
    "VEILLE_MENTIONS",
    (f"{PREFIX}.mentions.ingested.>",),
    max_age=30 * DAY,
    description="Raw mentions from the ingestors; Nats-Msg-Id is the stable mention id.",
    max_bytes=2 * GiB,
)
CLASSIFIED = Stream(
    "VEILLE_CLASSIFIED",
    (f"{PREFIX}.mentions.classified.>",),
    max_age=30 * DAY,
    description="Mentions with language, sentiment, matched watches and story id.",
    max_bytes=2 * GiB,
)
ALERTS = Stream(
    "VEILLE_ALERTS",
    (f"{PREFIX}.alerts.>",),
    max_age=90 * DAY,
    duplicate_window=DAY,
    description="Alerts raised by the classifier; Nats-Msg-Id is the deterministic alert id.",
    max_bytes=512 * MiB,
    # Stored as veille.alerts.<watch>.<partition> (NOTIFIER_PARTITIONS); a two-token subject (a
    # dead-letter replay of a stored alert) is kept as is.
    transform=(f"{PREFIX}.alerts.*", f"{PREFIX}.alerts.{{{{wildcard(1)}}}}.{{{{partition({NOTIFIER_PARTITIONS},1)}}}}"),
)
DEADLETTER = Stream(
    "VEILLE_DEADLETTER",
    (f"{PREFIX}.dlq.>",),
    max_age=30 * DAY,
    description="Messages and notifications that could not be processed, with their reason.",
    max_bytes=512 * MiB,
    discard=DiscardPolicy.NEW,
)
NOTIFY_REPLAY = Stream(
    "VEILLE_NOTIFY_REPLAY",
    (f"{PREFIX}.notify.replay.>",),
    max_age=7 * DAY,
    description="Dead-lettered notifications sent back to the notifier by `veille dlq replay`.",
    max_bytes=128 * MiB,
    discard=DiscardPolicy.NEW,
)
STREAMS: tuple[Stream, ...] = (MENTIONS, CLASSIFIED, ALERTS, DEADLETTER, NOTIFY_REPLAY)

CLASSIFIER_CONSUMER = Consumer(MENTIONS.name, "classifier", f"{PREFIX}.mentions.ingested.>")
# Alerts stored before the stream partitioned them (veille.alerts.<watch>, one token): drained by
# whichever replica holds the extra "legacy" partition lease. Every newer alert is on one of the
# NOTIFIER_PARTITIONS consumers below, owned by one replica at a time.
NOTIFIER_CONSUMER = Consumer(ALERTS.name, "notifier", f"{PREFIX}.alerts.*", ack_wait=120.0)


def notifier_partition_consumer(partition: int) -> Consumer:
    """The durable consumer of one partition of the alerts stream (``notifier-p05``: ``veille.alerts.*.5``).

    ``ack_wait`` 30 s: a batch is recorded in well under a second, and what a replica killed -9 held
    unacked comes back to the replica that takes its partition over that much later.
    """
    return Consumer(ALERTS.name, f"notifier-p{partition:02d}", f"{PREFIX}.alerts.*.{partition}", ack_wait=30.0)


NOTIFIER_ALERT_CONSUMERS: tuple[Consumer, ...] = (
    *(notifier_partition_consumer(p) for p in range(NOTIFIER_PARTITIONS)),
    NOTIFIER_CONSUMER,
)
"""Every notifier consumer of the alerts stream: partition p at index p, the legacy consumer last."""
NOTIFIER_REPLAY_CONSUMER = Consumer(
    NOTIFY_REPLAY.name, "notifier-replay", f"{PREFIX}.notify.replay.>", ack_wait=300.0, max_deliver=5
)
# The archive (services/archive) keeps every classified mention and alert in a database. No
# max_deliver limit: while its database is down it holds messages unacked, and JetStream must never
# give up on one (a message the database refuses is dead-lettered by the archive itself).
ARCHIVE_CONSUMER = Consumer(
    CLASSIFIED.name, "archive", f"{PREFIX}.mentions.classified.>", ack_wait=30.0, max_deliver=-1, max_ack_pending=5000
)
ARCHIVE_ALERTS_CONSUMER = Consumer(ALERTS.name, "archive-alerts", f"{PREFIX}.alerts.>", ack_wait=30.0, max_deliver=-1)
CONSUMERS: tuple[Consumer, ...] = (
    CLASSIFIER_CONSUMER,
    *NOTIFIER_ALERT_CONSUMERS,
    NOTIFIER_REPLAY_CONSUMER,
    ARCHIVE_CONSUMER,
    ARCHIVE_ALERTS_CONSUMER,
)

CURSORS = Bucket("veille_cursors", "Ingestor cursors per (source, feed or watch).")
DETECTOR = Bucket("veille_detector", "Spike detector state per watch.")
NOTIFY_LOG = Bucket("veille_notify_log", "Notifications sent per (receiver, group key).", ttl=7 * DAY, direct=True)
SILENCES = Bucket("veille_silences", "Active and expired silences.", history=5)
NOTIFY_GROUPS = Bucket(
    "veille_notify_groups", "Alerts waiting in notification groups per (receiver, group key).", direct=True
)
# Deduplication digests of alerts a group recorded (services/notifier/dispatcher.py): one key per
# group per batch (``<group key>.<chunk id>``), written once and never rewritten, gone after the
# TTL, which covers the notifier consumer's redelivery horizon (ack_wait x max_deliver = 20 min).
NOTIFY_SEEN = Bucket(
    "veille_notify_seen",
    "Digests of the alerts each notification group recorded, kept for redeliveries (TTL).",
    ttl=3 * max(c.ack_wait * c.max_deliver for c in NOTIFIER_ALERT_CONSUMERS),
    direct=True,
)
# Which notifier replica holds which partition of the alerts stream (``partition.<n>``), and the
# replicas alive (``member.<instance>``): values carry their own expiry, renewed every third of it;
# the TTL only clears what replicas long gone left behind.
NOTIFY_LEASES = Bucket(
    "veille_notify_leases", "Notifier replicas alive and the alert partitions each holds.", ttl=DAY, direct=True
)
BUCKETS: tuple[Bucket, ...] = (CURSORS, DETECTOR, NOTIFY_LOG, SILENCES, NOTIFY_GROUPS, NOTIFY_SEEN, NOTIFY_LEASES)


def _differs(current: object, wanted: object) -> bool:
    """Whether a field we set (not None in ``wanted``) has another value in ``current``.

    A stream's ``max_bytes`` matches when it is a budget no larger than the one wanted: one that
    ``ensure_topology`` had to reduce to fit the server, or that ops lowered by hand.
    """
    for name, value in vars(wanted).items():
        if value is None:
            continue
        have = getattr(current, name, None)
        if name == "max_bytes" and isinstance(value, int) and isinstance(have, int) and 0 < have <= value:
            continue
        if have != value:
            return True
    return False


def _no_room(exc: APIError) -> bool:
    """Whether JetStream refused a stream because its budget exceeds the storage the server has left."""
    return exc.err_code == 10047  # "insufficient storage resources available"


async def _ensure_streams(js: JetStreamContext, replicas: int) -> None:
    """Create or update every stream; budgets the server has no room for are all halved until they fit."""
    scale = 1
    while True:
        try:
            for stream in STREAMS:
                config = stream.config(replicas)
                if scale > 1 and (config.max_bytes or -1) > 0:
                    config = dataclasses.replace(config, max_bytes=max(MIN_BUDGET, (config.max_bytes or 0) // scale))
                try:
                    info = await js.stream_info(stream.name)
                except NotFoundError:
                    try:
                        await js.add_stream(config)
                    except BadRequestError:  # another replica created it meanwhile
                        await js.update_stream(config)
                else:
                    if _differs(info.config, config):
                        await js.update_stream(config)
            return
        except APIError as exc:
            if not _no_room(exc) or all(s.max_bytes <= 0 or s.max_bytes // scale <= MIN_BUDGET for s in STREAMS):
                raise
            scale *= 2
            log.warning(
                "bus.stream_budgets_reduced",
                divided_by=scale,
                reason="the server has less storage left than the streams' budgets",
                budgets={s.name: max(MIN_BUDGET, s.max_bytes // scale) for s in STREAMS if s.max_bytes > 0},
            )


async def ensure_topology(js: JetStreamContext, *, replicas: int = 1) -> None:
    """Create or update every stream, consumer and bucket; safe to call from every replica.

    It only reads what already matches, so a service whose NATS user may not change the topology
    (``veille.natsauth``) passes once ``veille topology`` (or any admin connection) created it.
    """
    await _ensure_streams(js, replicas)
    for consumer in CONSUMERS:
        wanted = consumer.config()
        try:
            current = await js.consumer_info(consumer.stream, consumer.durable)
        except NotFoundError:
            await js.add_consumer(consumer.stream, wanted)
        else:
            if _differs(current.config, wanted):
                await js.add_consumer(consumer.stream, wanted)
    for bucket in BUCKETS:
        try:
            await js.key_value(bucket.name)
        except Exception:
            await js.create_key_value(bucket.config(replicas))
            continue
        if bucket.direct:  # a bucket made before direct gets: allow them (an in-place stream update)
            info = await js.stream_info(f"KV_{bucket.name}")
            if not info.config.allow_direct:
                try:
                    await js.update_stream(dataclasses.replace(info.config, allow_direct=True))
                except APIError as exc:  # a service user may not update streams: gets stay indirect
                    log.warning("bus.direct_get_not_enabled", bucket=bucket.name, error=str(exc))
