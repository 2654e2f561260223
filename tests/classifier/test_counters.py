"""Spike counters in KV: what a replica remembers of its own writes never loses or doubles a count."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from nats.js import JetStreamContext

from services.classifier.detection import SurgeDetection, counter_key
from services.classifier.surges import bucket_start
from tests.classifier.conftest import Apps, at
from veille import bus
from veille.models import MentionClassified, MentionIngested

BUCKET = at(30)
WIDTH = timedelta(seconds=60)  # the bucket of the watch in tests.classifier.conftest.CONFIG
NAME = counter_key("acme", bucket_start(BUCKET, WIDTH))


def _mention(n: int, *, negative: bool = False) -> MentionClassified:
    mention = MentionIngested(
        id=f"rss:{n}", source="rss", site=f"site{n % 3}.example", text=f"Acme news {n}", ingested_at=BUCKET
    )
    return MentionClassified(
        mention=mention,
        lang="en",
        sentiment="negative" if negative else "neutral",
        sentiment_score=-0.5 if negative else 0.0,
        watches=["acme"],
        story_id=f"s{n}",
    )


def _detection(app: Any) -> SurgeDetection:
    assert app.detection is not None
    return app.detection  # type: ignore[no-any-return]


async def _count(detection: SurgeDetection, first: int, n: int, *, negative: bool = False) -> None:
    for i in range(first, first + n):
        detection.record(_mention(i, negative=negative), ["news"], wait=False)
    await detection.flush()


async def _stored(js: JetStreamContext) -> dict[str, Any]:
    kv = await js.key_value(bus.DETECTOR.name)
    entry = await kv.get(NAME)
    return json.loads(entry.value or b"{}")  # type: ignore[no-any-return]


def _reads(detection: SurgeDetection) -> list[str]:
    """Record the keys ``detection`` reads from KV from now on."""
    seen: list[str] = []
    get = detection.kv.get

    async def counted(key: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(key)
        return await get(key, *args, **kwargs)

    detection.kv.get = counted  # type: ignore[method-assign]
    return seen


async def test_a_replica_alone_on_a_bucket_writes_each_flush_without_reading_it_back(
    apps: Apps, js: JetStreamContext
) -> None:
    """Five flushes of one bucket: one read at most (none after the first write), every count kept."""
    app = await apps.start()
    detection = _detection(app)
    apps.clock.now = BUCKET
    reads = _reads(detection)
    for k in range(5):
        await _count(detection, 10 * k, 7, negative=k == 2)
    assert reads.count(NAME) <= 1
    stored = await _stored(js)
    assert stored["total"] == 35
    assert stored["negative"] == 7
    assert stored["terms"] == {"news": 35}
    assert len(stored["stories"]) == 35


async def test_two_replicas_flushing_one_bucket_in_turns_lose_no_count(apps: Apps, js: JetStreamContext) -> None:
    """Each replica's remembered revision goes stale when the other writes: the refused write is re-read and merged."""
    one, two = await apps.start(), await apps.start()
    apps.clock.now = BUCKET
    first, second = _detection(one), _detection(two)
    reads = _reads(first)
    for k in range(6):
        await _count(first if k % 2 == 0 else second, 100 * k, 5)
    await _count(first, 1000, 3)  # the second replica wrote last: refused, read, merged
    await _count(first, 2000, 3)  # its own write was the last: written at once
    stored = await _stored(js)
    assert stored["total"] == 36
    assert len(stored["stories"]) == 36
    assert reads.count(NAME) == 4  # its first write (no key yet), then once after each of the other's writes
    conflicts = one.detection_metrics.conflicts.labels("counter")._value.get()
    assert conflicts == 3


async def test_a_bucket_purged_between_flushes_is_written_again_from_the_next_delta(
    apps: Apps, js: JetStreamContext
) -> None:
    """A purged counter key (its bucket left the explanation window) is created anew, not merged with what was."""
    app = await apps.start()
    apps.clock.now = BUCKET
    detection = _detection(app)
    await _count(detection, 0, 4)
    kv = await js.key_value(bus.DETECTOR.name)
    await kv.purge(NAME)
    await _count(detection, 100, 2)
    stored = await _stored(js)
    assert stored["total"] == 2
