"""Per-bucket statistics merge like counters and stay bounded whatever the volume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.classifier.surges import MAX_SAMPLES, MAX_TERMS, BucketStats, bucket_start
from veille.models import MentionClassified, MentionIngested


def classified(i: int, *, negative: bool = False, story: str | None = None) -> MentionClassified:
    """A classified mention number ``i``."""
    mention = MentionIngested(id=f"rss:{i}", source="rss", url=f"https://x.example/{i}", text=f"post {i}")
    return MentionClassified(
        mention=mention,
        sentiment="negative" if negative else "neutral",
        sentiment_score=-0.8 if negative else 0.0,
        watches=["acme"],
        story_id=story or f"story:{i}",
    )


def test_partial_stats_merge_to_the_same_result_in_any_order() -> None:
    """Counts split between two replicas merge exactly, and the samples kept do not depend on who saw what."""
    whole, left, right = BucketStats(), BucketStats(), BucketStats()
    for i in range(300):
        item = classified(i, negative=i % 3 == 0, story=f"story:{i % 40}")
        terms = [f"t{i % 90}", "common"]
        whole.add(item, terms)
        (left if i % 2 else right).add(item, terms)
    a, b = left.merge(right).to_json(), right.merge(left).to_json()
    assert a == b
    assert a["total"] == 300 and a["negative"] == 100
    assert a["samples"] == whole.to_json()["samples"]
    assert len(a["samples"]) == MAX_SAMPLES and len(a["terms"]) == MAX_TERMS
    assert a["terms"]["common"] == 300
    assert BucketStats.from_json(a).story_count == 40


def test_buckets_are_aligned_on_the_epoch_in_utc() -> None:
    """A timestamp falls in the bucket that starts at the epoch-aligned multiple of the width before it."""
    ts = datetime(2026, 3, 2, 10, 7, 31, tzinfo=UTC)
    assert bucket_start(ts, timedelta(minutes=5)) == datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    assert bucket_start(ts.replace(tzinfo=None), timedelta(hours=1)) == datetime(2026, 3, 2, 10, tzinfo=UTC)
