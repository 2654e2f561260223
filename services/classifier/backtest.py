"""Backtesting a watch: replay the mentions kept in the stream through the classifier's own code.

:func:`replay_stream` reads the raw mentions stream from ``since`` ago (by the stream's own
timestamps) with an ephemeral consumer, classifies each mention with
:class:`~services.classifier.logic.Classifier` (the configuration given, a fresh story index),
counts the watch's mentions in buckets by ``ingested_at`` exactly as the service does
(:class:`~services.classifier.surges.BucketStats`), then steps
:class:`~services.classifier.surges.WatchSurges` over every bucket from the first to the last, so
the alerts listed are the ones the service would have raised with this configuration (same ids).
:func:`plot_result` draws the volume, the baseline and the alerts to a PNG (matplotlib, Agg backend:
no display needed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from services.classifier.logic import Classifier
from services.classifier.surges import BucketStats, Step, WatchSurges, bucket_start, mention_terms
from veille import bus
from veille.config import VeilleConfig, Watch
from veille.language import detect_language
from veille.models import AlertRaised, MentionClassified, MentionIngested, Sentiment, utcnow
from veille.sentiment import SentimentBackend, make_backend

__all__ = ["BacktestResult", "WatchReplay", "plot_result", "replay_stream"]

Progress = Callable[[int, int], None]


@dataclass
class BacktestResult:
    """What a replay found for one watch: one step per bucket and the alerts raised."""

    watch: str
    bucket: timedelta
    mentions_read: int = 0
    steps: list[Step] = field(default_factory=list)
    alerts: list[AlertRaised] = field(default_factory=list)


class WatchReplay:
    """Buckets one watch's classified mentions and steps its detectors over them, as the service does."""

    def __init__(self, watch: Watch) -> None:
        """Start a replay of ``watch`` with fresh detectors."""
        self.watch = watch
        self.surges = WatchSurges(watch)
        self.buckets: dict[datetime, BucketStats] = {}

    def add(self, classified: MentionClassified, terms: list[str]) -> None:
        """Count one classified mention (ignored unless it matches the watch)."""
        if self.watch.name not in classified.watches:
            return
        key = bucket_start(classified.mention.ingested_at, self.surges.width)
        stats = self.buckets.get(key)
        if stats is None:
            stats = self.buckets[key] = BucketStats()
        stats.add(classified, terms)

    def finish(self, until: datetime | None = None) -> BacktestResult:
        """Step every bucket from the first counted to the last (or to ``until``) and return the result."""
        result = BacktestResult(self.watch.name, self.surges.width)
        if not self.buckets:
            return result
        width = self.surges.width
        bucket = min(self.buckets)
        last = max(self.buckets) if until is None else bucket_start(until, width) - width
        window: list[BucketStats] = []
        while bucket <= last:
            stats = self.buckets.get(bucket, BucketStats())
            window.append(stats)
            step = self.surges.decide(bucket, stats.total, stats.negative)
            result.steps.append(step)
            if step.events():
                result.alerts.extend(self.surges.alerts(step, window[-step.window_buckets() :]))
            del window[: max(0, len(window) - 48)]
            bucket += width
        return result


async def replay_stream(
    js: JetStreamContext,
    config: VeilleConfig,
    watch_name: str,
    since: timedelta,
    *,
    sentiment: SentimentBackend | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> BacktestResult:
    """Replay the mentions the stream kept from ``since`` ago through the classifier and the detector.

    ``progress(done, total)`` is called as mentions are read. Raises ``KeyError`` for an unknown watch.
    """
    watches = {w.name: w for w in config.watches}
    if watch_name not in watches:
        raise KeyError(watch_name)
    backend = sentiment or make_backend()

    def score(text: str, lang: str | None) -> tuple[Sentiment, float]:
        found = backend.analyze(text, lang)
        return found.label, found.score

    classifier = Classifier(config, score, detect_language)
    replay = WatchReplay(watches[watch_name])
    start = (now or utcnow()) - since
    consumer = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        # nats-py sends this field as given: an RFC 3339 string is what the server expects
        opt_start_time=start.isoformat().replace("+00:00", "Z"),  # type: ignore[arg-type]
        ack_policy=AckPolicy.NONE,
        inactive_threshold=60.0,
        filter_subject=f"{bus.PREFIX}.mentions.ingested.>",
    )
    sub = await js.pull_subscribe(consumer.filter_subject or "", stream=bus.MENTIONS.name, config=consumer)
    read = 0
    try:
        info = await sub.consumer_info()
        total = int(info.num_pending or 0)
        if progress is not None:
            progress(0, total)
        while read < total:
            try:
                msgs = await sub.fetch(min(500, total - read), timeout=5)
            except TimeoutError:
                break
            for msg in msgs:
                read += 1
                try:
                    mention = MentionIngested.model_validate_json(msg.data)
                except ValueError:
                    continue  # the service dead-letters these; they count nowhere
                classified = classifier.classify(mention)
                if watch_name in classified.mention.watches:
                    replay.add(classified.mention, mention_terms(classified.body))
            if progress is not None:
                progress(read, total)
    finally:
        await sub.unsubscribe()
    result = replay.finish()
    result.mentions_read = read
    return result


def plot_result(result: BacktestResult, path: Path) -> None:
    """Draw mentions and negative mentions per bucket, the baseline, and firing periods to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def num(ts: datetime) -> float:
        return float(mdates.date2num(ts))  # type: ignore[no-untyped-call]

    times = [num(s.bucket) for s in result.steps]
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    try:
        ax.plot(times, [s.total for s in result.steps], color="#1f77b4", linewidth=0.9, label="mentions")
        ax.plot(times, [s.expected_total for s in result.steps], color="#ff7f0e", linewidth=1.2, label="baseline")
        ax.plot(times, [s.negative for s in result.steps], color="#7f7f7f", linewidth=0.7, label="negative mentions")
        ax.xaxis_date()
        firing: dict[str, float] = {}
        labelled = False
        for alert in result.alerts:
            if alert.status == "firing":
                firing[alert.id] = num(alert.raised_at)
                color = "#d62728" if alert.kind == "volume_spike" else "#9467bd"
                ax.axvline(num(alert.raised_at), color=color, linestyle="--", linewidth=1.0)
            else:
                started = firing.pop(alert.id, num(alert.started_at))
                ax.axvspan(
                    started,
                    num(alert.ends_at or alert.raised_at),
                    color="#d62728",
                    alpha=0.12,
                    label=None if labelled else "alert firing",
                )
                labelled = True
        end = times[-1] if times else None
        for started in firing.values():
            if end is not None:
                ax.axvspan(started, end, color="#d62728", alpha=0.12)
        ax.set_title(f"{result.watch}: mentions per {int(result.bucket.total_seconds() // 60)} min")
        ax.set_ylabel("mentions")
        ax.legend(loc="upper left")
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
