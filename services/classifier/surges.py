"""Surges of mentions per watch, as pure logic: buckets, their bounded statistics, the detectors, alerts.

No broker and no I/O here: the service (:mod:`services.classifier.detection`) keeps these objects in
the ``veille_detector`` KV bucket, and ``veille backtest --watch`` runs the very same code over the
mentions kept in the stream.

Buckets. A mention counts in the bucket of its ``ingested_at`` (carried in the message, so every
replica, a restart and a replay put it in the same bucket), floored to the watch's
``DetectorSettings.bucket`` from the Unix epoch. :class:`BucketStats` holds what a bucket needs to
feed the detectors and to explain a surge, all bounded whatever the volume: the mention and negative
counts (exact), up to :data:`MAX_STORIES` distinct story ids, the :data:`MAX_TERMS` most frequent terms
and :data:`MAX_SOURCES` sources (top-k after every merge, so approximate past the cap), and
:data:`MAX_SAMPLES` sample mentions (and as many negative ones) chosen by a hash of their id, so the
choice does not depend on which replica saw what first. Two stats merge by adding (``merge``), which is
how partial counts from several replicas combine.

Detectors. :class:`WatchSurges` holds two :class:`~veille.spikes.SpikeDetector` per watch, one on all
mentions (``volume_spike``) and one on negative mentions (``negative_spike``), stepped once per bucket
in time order (:meth:`WatchSurges.decide`). On ``fired`` it builds an :class:`~veille.models.AlertRaised`
that explains itself (observed against expected over the window that fired, the statistic and its
threshold, the negative share, top terms and sources, the story count and a few samples with links)
and remembers it; on ``resolved`` it re-issues that alert with ``status="resolved"``. Alert ids are
:func:`~services.classifier.logic.alert_id` of (watch, kind, start of the firing bucket): a replay, a
restart or a second replica computes the same id, and the alerts stream's duplicate window drops it.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any, Literal

from services.classifier.logic import alert_id
from veille.config import SeverityPolicy, Watch
from veille.models import AlertRaised, MentionClassified, SampleMention, Severity
from veille.spikes import Decision, DetectorSettings, SpikeDetector
from veille.text import normalise_for_match

__all__ = [
    "MAX_SAMPLES",
    "MAX_SOURCES",
    "MAX_STORIES",
    "MAX_TERMS",
    "BucketStats",
    "Step",
    "SurgeKind",
    "WatchSurges",
    "bucket_start",
    "detector_settings",
    "mention_terms",
    "surge_severity",
]

SurgeKind = Literal["volume_spike", "negative_spike"]
KINDS: tuple[SurgeKind, ...] = ("volume_spike", "negative_spike")

MAX_STORIES = 500
"""Distinct story ids kept per bucket; past it the story count is a lower bound."""
MAX_TERMS = 40
"""Most frequent terms kept per bucket."""
MAX_SOURCES = 20
"""Most frequent sources (sites) kept per bucket."""
MAX_SAMPLES = 4
"""Sample mentions kept per bucket (and as many negative ones)."""
MAX_TERMS_PER_MENTION = 40
TOP_IN_ALERT = 8
SAMPLES_IN_ALERT = 5
STATE_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have he her his how i if in
    into is it its just me more most my no not now of on or our out over she so some than that the their them
    then there these they this to too up us was we were what when which who will with would you your about
    after all also any back because before being both down even get got here just like many much new only
    other own said same says see should since still such through under until very via way well while why yet
    rt amp http https www com
    au aux avec ce ces cette dans de des du elle elles en est et eux il ils je la le les leur leurs lui ma mais
    me meme mes moi mon ne nos notre nous on ou par pas pour qu que qui sa se ses son sur ta te tes toi ton tu
    un une vos votre vous c d j l m n s t y ete etre fait faire plus tout tous toute toutes tres aussi comme
    donc encore ici sans sont ont avait avoir deja cela ca entre apres avant chez""".split()  # noqa: SIM905
)


def bucket_start(ts: datetime, width: timedelta) -> datetime:
    """Return the start of the bucket of width ``width`` holding ``ts`` (aligned on the Unix epoch, UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    offset = (ts - _EPOCH) // width
    return _EPOCH + offset * width


def detector_settings(watch: Watch) -> DetectorSettings:
    """Return the spike detector settings of ``watch``: the defaults with its ``spike`` overrides."""
    return DetectorSettings(**watch.spike)


def mention_terms(text: str) -> list[str]:
    """Return the distinct content words of a mention (folded, no stop words or numbers), in order."""
    words = normalise_for_match(text)
    if len(words) <= 4 * MAX_TERMS_PER_MENTION:  # a post: filter in one pass, keep the first distinct ones
        stop = _STOPWORDS
        kept = dict.fromkeys(w for w in words if len(w) >= 3 and w not in stop and not w.isdigit())
        return list(kept)[:MAX_TERMS_PER_MENTION]
    seen: dict[str, None] = {}
    for word in words:
        if len(word) < 3 or word in _STOPWORDS or word.isdigit():
            continue
        seen.setdefault(word, None)
        if len(seen) >= MAX_TERMS_PER_MENTION:
            break
    return list(seen)


@functools.lru_cache(maxsize=4096)  # a bucket's samples are ranked again at every compaction
def _sample_key(mention_id: str) -> str:
    return hashlib.blake2b(mention_id.encode(), digest_size=8).hexdigest()


def _top(counts: dict[str, int], k: int) -> dict[str, int]:
    """The ``k`` most frequent keys, by count then key (``heapq.nsmallest(k, items, key=(-count, key))``).

    Done with C-level sorts: the k-th largest count, then the few items at or above it ranked by
    key and by count (stable). A bucket's terms are trimmed often (issue 17: ``nsmallest`` with a
    key function was 60 % of the classifier's counting)."""
    if len(counts) <= k or k <= 0:
        return counts if k > 0 else {}
    floor = sorted(counts.values(), reverse=True)[k - 1]
    kept = [item for item in counts.items() if item[1] >= floor]
    kept.sort(key=itemgetter(0))
    kept.sort(key=itemgetter(1), reverse=True)
    return dict(kept[:k])


def _keep_samples(samples: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    unique = {s["id"]: s for s in samples}
    return sorted(unique.values(), key=lambda s: _sample_key(s["id"]))[:k]


@dataclass
class BucketStats:
    """What one watch's bucket holds: counts, and the bounded inputs of an explanation."""

    total: int = 0
    negative: int = 0
    stories: set[str] = field(default_factory=set)
    stories_overflow: int = 0
    terms: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    negative_samples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, classified: MentionClassified, terms: Iterable[str]) -> None:
        """Count one classified mention with its terms (cheap; bounds are applied at :meth:`compact`)."""
        mention = classified.mention
        self.total += 1
        negative = classified.sentiment == "negative"
        if negative:
            self.negative += 1
        if classified.story_id is not None:
            self.stories.add(classified.story_id)
        for term in terms:
            self.terms[term] = self.terms.get(term, 0) + 1
        site = mention.site or mention.source
        self.sources[site] = self.sources.get(site, 0) + 1
        sample: dict[str, Any] = {"id": mention.id, "source": mention.source, "sentiment": classified.sentiment}
        if mention.url is not None:
            sample["url"] = str(mention.url)
        if mention.title:
            sample["title"] = mention.title
        if mention.text:
            sample["text"] = mention.text[:300]
        if mention.author:
            sample["author"] = mention.author
        if mention.published_at is not None:
            sample["published_at"] = mention.published_at.isoformat()
        self.samples.append(sample)
        if negative:
            self.negative_samples.append(sample)
        if len(self.samples) > 4 * MAX_SAMPLES or len(self.terms) > 8 * MAX_TERMS:
            self.compact()

    def merge(self, other: BucketStats) -> BucketStats:
        """Return the sum of two partial stats of the same bucket (counts add, bounded parts re-trimmed)."""
        out = BucketStats(
            total=self.total + other.total,
            negative=self.negative + other.negative,
            stories=self.stories | other.stories,
            stories_overflow=self.stories_overflow + other.stories_overflow,
            terms=dict(self.terms),
            sources=dict(self.sources),
            samples=self.samples + other.samples,
            negative_samples=self.negative_samples + other.negative_samples,
        )
        for term, n in other.terms.items():
            out.terms[term] = out.terms.get(term, 0) + n
        for source, n in other.sources.items():
            out.sources[source] = out.sources.get(source, 0) + n
        out.compact()
        return out

    def compact(self) -> None:
        """Apply the bounds: top terms and sources, hashed choice of samples, capped story ids."""
        self.terms = _top(self.terms, MAX_TERMS)
        self.sources = _top(self.sources, MAX_SOURCES)
        self.samples = _keep_samples(self.samples, MAX_SAMPLES)
        self.negative_samples = _keep_samples(self.negative_samples, MAX_SAMPLES)
        if len(self.stories) > MAX_STORIES:
            kept = sorted(self.stories)[:MAX_STORIES]
            self.stories_overflow += len(self.stories) - MAX_STORIES
            self.stories = set(kept)

    @property
    def story_count(self) -> int:
        """Distinct stories seen in the bucket (a lower bound past :data:`MAX_STORIES`)."""
        return len(self.stories) + self.stories_overflow

    def to_json(self) -> dict[str, Any]:
        """Return the stats as a JSON-serialisable dict (bounded)."""
        self.compact()
        return {
            "total": self.total,
            "negative": self.negative,
            "stories": sorted(self.stories),
            "stories_overflow": self.stories_overflow,
            "terms": self.terms,
            "sources": self.sources,
            "samples": self.samples,
            "negative_samples": self.negative_samples,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BucketStats:
        """Rebuild stats from :meth:`to_json` output."""
        return cls(
            total=int(data.get("total", 0)),
            negative=int(data.get("negative", 0)),
            stories=set(data.get("stories", ())),
            stories_overflow=int(data.get("stories_overflow", 0)),
            terms={str(k): int(v) for k, v in data.get("terms", {}).items()},
            sources={str(k): int(v) for k, v in data.get("sources", {}).items()},
            samples=list(data.get("samples", ())),
            negative_samples=list(data.get("negative_samples", ())),
        )


def merge_all(stats: Iterable[BucketStats]) -> BucketStats:
    """Return the sum of several buckets' stats."""
    out = BucketStats()
    for item in stats:
        out = out.merge(item)
    return out


@dataclass(frozen=True)
class Step:
    """One bucket stepped through a watch's detectors: what each decided and the baseline before it."""

    bucket: datetime
    total: int
    negative: int
    expected_total: float
    expected_negative: float
    decisions: dict[SurgeKind, Decision]

    def events(self) -> list[tuple[SurgeKind, Decision]]:
        """Return the (kind, decision) pairs that fired or resolved on this bucket."""
        return [(kind, d) for kind, d in self.decisions.items() if d.event is not None]

    def window_buckets(self) -> int:
        """Return how many buckets (ending at this one) explain a surge that fired here."""
        return max((d.scale_buckets for d in self.decisions.values() if d.event == "fired"), default=1)


def surge_severity(policy: SeverityPolicy, kind: SurgeKind, observed: float, expected: float, share: float) -> Severity:
    """Severity of a surge by what is at stake: its size against the expected count, and its negativity.

    Critical when it is large (``critical_ratio`` times the expected count and ``critical_excess``
    mentions above it) and negative (a ``negative_spike``, or a ``volume_spike`` with at least
    ``critical_negative_share`` of negative mentions); otherwise the level set for its kind.
    """
    base: Severity = policy.negative_spike if kind == "negative_spike" else policy.volume_spike
    ratio = policy.critical_ratio
    if ratio is None or base == "critical":
        return base
    large = observed >= ratio * expected and observed - expected >= policy.critical_excess
    negative = kind == "negative_spike" or share >= policy.critical_negative_share
    return "critical" if large and negative else base


class WatchSurges:
    """The two detectors of one watch and the surge alerts they are firing."""

    def __init__(self, watch: Watch, settings: DetectorSettings | None = None) -> None:
        """Create fresh detectors for ``watch`` (its ``spike`` overrides unless ``settings`` is given)."""
        self.watch = watch
        self.settings = settings or detector_settings(watch)
        self.detectors: dict[SurgeKind, SpikeDetector] = {kind: SpikeDetector(self.settings) for kind in KINDS}
        self.firing: dict[str, AlertRaised] = {}
        self.next_bucket: datetime | None = None
        self._query_words = frozenset(normalise_for_match(f"{watch.name} {watch.query}"))

    @property
    def width(self) -> timedelta:
        """Width of a bucket."""
        return self.settings.bucket

    def decide(self, bucket: datetime, total: int, negative: int) -> Step:
        """Step both detectors with the counts of ``bucket`` (the next one in time order)."""
        expected_total = self.detectors["volume_spike"].expected(bucket)
        expected_negative = self.detectors["negative_spike"].expected(bucket)
        decisions: dict[SurgeKind, Decision] = {
            "volume_spike": self.detectors["volume_spike"].update(bucket, total),
            "negative_spike": self.detectors["negative_spike"].update(bucket, negative),
        }
        self.next_bucket = bucket + self.width
        return Step(bucket, total, negative, expected_total, expected_negative, decisions)

    def alerts(self, step: Step, window: Sequence[BucketStats]) -> list[AlertRaised]:
        """Return the alerts of a stepped bucket; ``window`` is the stats of the buckets ending with it.

        A firing alert is explained from the last ``step.window_buckets()`` buckets of ``window``;
        a resolution re-issues the firing alert of the same kind with ``status="resolved"``.
        """
        out: list[AlertRaised] = []
        for kind, decision in step.events():
            if decision.event == "fired":
                alert = self._fired(kind, step, decision, merge_all(window[-decision.scale_buckets :]))
                self.firing[kind] = alert
                out.append(alert)
            elif decision.event == "resolved":
                firing = self.firing.pop(kind, None)
                if firing is not None:
                    out.append(self._resolved(firing, step, decision))
        return out

    def _fired(self, kind: SurgeKind, step: Step, decision: Decision, stats: BucketStats) -> AlertRaised:
        watch = self.watch
        window = decision.scale_buckets * self.width
        end = step.bucket + self.width
        observed, expected = decision.observed, decision.expected
        ratio = observed / expected if expected > 0 else float("inf")
        share = stats.negative / stats.total if stats.total else 0.0
        ranked = sorted(stats.terms.items(), key=lambda kv: (-kv[1], kv[0]))
        terms = [t for t, _ in ranked if t not in self._query_words]
        sources = [s for s, _ in sorted(stats.sources.items(), key=lambda kv: (-kv[1], kv[0]))]
        pool = stats.negative_samples if kind == "negative_spike" and stats.negative_samples else stats.samples
        what = "negative mentions" if kind == "negative_spike" else "mentions"
        if ratio > 100:
            ratio_text = "over 100×"
        elif ratio >= 10:
            ratio_text = f"{ratio:.0f}×"
        else:
            ratio_text = f"{ratio:.1f}×"
        expected_text = _expected_text(expected)
        summary = (
            f"{observed:g} {what} of {watch.name} in {_duration(window)}, expected {expected_text} ({ratio_text}); "
            f"{stats.story_count} {'story' if stats.story_count == 1 else 'stories'}, {share:.0%} negative"
        )
        if terms:
            summary += f"; top terms: {', '.join(terms[:3])}"
        return AlertRaised(
            id=alert_id(watch.name, kind, step.bucket.isoformat()),
            watch=watch.name,
            kind=kind,
            status="firing",
            severity=surge_severity(watch.severity, kind, observed, expected, share),
            summary=summary,
            observed=observed,
            expected=round(expected, 3),
            statistic=round(decision.statistic, 3),
            threshold=round(decision.threshold, 3),
            negative_share=round(share, 3),
            mention_count=stats.total,
            story_count=stats.story_count,
            top_terms=terms[:TOP_IN_ALERT],
            top_sources=sources[:TOP_IN_ALERT],
            samples=[SampleMention.model_validate(s) for s in pool[:SAMPLES_IN_ALERT]],
            started_at=end - window,
            raised_at=end,
            labels={**watch.labels, "watch": watch.name, "kind": kind},
        )

    def _resolved(self, firing: AlertRaised, step: Step, decision: Decision) -> AlertRaised:
        end = step.bucket + self.width
        what = "negative mentions" if firing.kind == "negative_spike" else "mentions"
        lasted = _duration(end - firing.raised_at) if end > firing.raised_at else "0 min"
        summary = f"Resolved after {lasted}: {what} of {self.watch.name} back to normal. Was: {firing.summary}"
        return firing.model_copy(update={"status": "resolved", "summary": summary, "ends_at": end, "raised_at": end})

    # ------------------------------------------------------------------ state
    def to_state(self) -> dict[str, Any]:
        """Return the whole state (detectors, firing alerts, next bucket) as a JSON-serialisable dict."""
        return {
            "version": STATE_VERSION,
            "next_bucket": self.next_bucket.isoformat() if self.next_bucket else None,
            "detectors": {kind: det.to_state() for kind, det in self.detectors.items()},
            "firing": {kind: alert.model_dump(mode="json") for kind, alert in self.firing.items()},
        }

    @classmethod
    def from_state(cls, watch: Watch, state: dict[str, Any]) -> WatchSurges:
        """Rebuild from :meth:`to_state`; raise ``ValueError`` if it does not fit the watch's settings."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported surge state version {state.get('version')!r}")
        out = cls(watch)
        out.next_bucket = datetime.fromisoformat(state["next_bucket"]) if state.get("next_bucket") else None
        out.detectors = {kind: SpikeDetector.from_state(out.settings, state["detectors"][kind]) for kind in KINDS}
        out.firing = {kind: AlertRaised.model_validate(a) for kind, a in state.get("firing", {}).items()}
        return out


def _duration(span: timedelta) -> str:
    """A window as people say it: ``30 s``, ``5 min``, ``90 min``, ``2 h`` (never ``0.0833333 min``)."""
    seconds = span.total_seconds()
    if seconds < 60 or seconds % 60:
        return f"{seconds:g} s"
    minutes = seconds / 60
    if minutes < 60 or minutes % 60:
        return f"{minutes:g} min"
    return f"{minutes / 60:g} h"


def _expected_text(expected: float) -> str:
    """The expected count as people say it: ``37``, ``0.4``, or ``almost none`` (never ``3e-06``)."""
    if expected >= 1:
        return f"{expected:.0f}"
    if expected >= 0.05:
        return f"{expected:.1f}"
    return "almost none"
