"""An online, causal spike detector for one series of counts per time bucket (one per watch).

The model, in words:

* **Baseline.** The expected count of a bucket is ``level x daily(time of day) x weekly(day of week)``.
  ``level`` is the de-seasonalised rate; ``daily`` is a profile of multiplicative factors by time of
  day (linearly interpolated between slots) and ``weekly`` one factor per day of the week, both
  learned online with half-lives expressed in time, so the detector learns the daily and weekly
  rhythm of each watch whatever its bucket size. All three are *ratio estimators*, as a Poisson
  model makes them (``sum(observed) / sum(baseline)`` over what they saw, with forgetting), each
  bucket weighted by its negative-binomial information ``1 / (1 + alpha mu)``; a factor starts from a
  prior of a few expected mentions at 1 (``PROFILE_PRIOR``, ``WEEKLY_PRIOR``, set from how large such
  rhythms usually are), which the data outweighs and then forgets. A mean of ratios
  ``count / baseline`` instead lets one mention on a quiet night, while a young watch's level is still
  near zero, set a huge factor: a three-day-old watch once expected 164 negative mentions in a
  night's 5-minute bucket, and missed its crisis.
* **Robust learning.** Each count is clipped to ``expected +/- clip_sigma`` standard deviations
  (rounded up to a whole count, so a quiet watch's single mentions are learned as such) before it
  teaches the baseline, and while an alert is firing the baseline does not learn from counts above
  it at all (for up to ``adapt_after``, after which a lasting new level is accepted). A surge therefore
  never poisons the baseline that the next surge is compared with.
* **An uncertain baseline.** The relative variance of the expected count as an estimate (``1 / W``
  for each factor resting on ``W`` expected mentions) is added to the over-dispersion in the
  statistic, which is then the Gamma-Poisson predictive: a young or quiet watch needs a clearer
  surge, a busy one is unaffected. The over-dispersion is learned net of it.
* **Counts, not z-scores.** Counts are treated as negative-binomial: variance ``mu + alpha mu^2``, with
  the over-dispersion ``alpha`` learned online for each aggregation scale. It is learned with a much
  more lenient clip (``dispersion_clip_sigma``) than the baseline, on purpose: how bursty a watch
  usually is (a busy brand gets a ten-fold burst every other day, a quiet one never does) sets how
  surprising a burst must be to alert. The statistic is the signed root of the negative-binomial
  deviance of the observed count against the expected one (with a continuity correction), close to
  a standard normal deviate in the upper tail even for zero-heavy series with an expected count far
  below one. It is computed on sums over a few scales (``scales``, 2 h, 6 h and 24 h by default): a
  sum reacts at once to a sudden burst and accumulates a slower, sustained rise (a day-long rise that
  the short sums' dispersion hides shows on the 24 h sum). With ``familywise``, a scale ``k`` times
  longer than the shortest is tested ``k`` times less often, so it fires at the normal quantile of a
  ``k`` times larger tail (3.0, 2.65, 2.14 by default): the same false-alarm rate a day on every
  scale. The scale furthest above its own threshold decides.
* **Warm-up.** For ``warmup`` the detector only learns, and learns every count unclipped (a new
  watch's level is not known yet, so clipping would only slow it down); the over-dispersion starts
  learning half-way through, once the baseline means something, and what it learned by the end of
  the warm-up (more the young baseline's error than the watch's burstiness) is kept as worth one
  window of each scale. Days of the warm-up do not teach the day-of-week factors.
* **Alerts.** A surge fires when the statistic reaches its scale's threshold *and* the observed count
  exceeds the expected one by at least ``min_excess`` mentions and ``min_ratio`` times. It fires once:
  while firing there is no new alert. It resolves when the statistic on every scale up to the one
  that fired has stayed below ``resolve_threshold`` (scaled like the thresholds) for
  ``resolve_after``. A new surge can fire ``refire_after`` after the resolution, and a scale only
  once its window holds no bucket of the previous alert (the 24 h sum does not report again a
  surge that was already reported).

* **Contextual novelty** (``daily_novelty``, after CAD OSE's idea that only a context not seen
  before is anomalous). Robust learning has a blind spot: a burst that comes back at the same hour
  every day (a nightly job, a daily programme) is clipped and frozen out of the baseline as a surge,
  so it is never learned as rhythm and alerts every day (NAB's ``ec2_cpu_utilization_24ae8d``: 13
  alerts in 14 days, all between 03:00 and 03:40). On a scale shorter than a day, a surge whose same
  hours yesterday (within half a window either way) were *themselves* a surge fires only if it also
  reaches the threshold against yesterday's observed sum. Only yesterday's surges count: a first
  version that compared every surge with yesterday's sum cut slow drifts, whose yesterday was already
  high without being a surge, and lost on both checks (look 15: cross-validated 64.0, nab/other
  52.4). It costs one more day of history (the state's ``recent_x``/``recent_mu`` hold a day and a
  half-window more: about 12.5 kB of JSON instead of 9.7 for a 5-minute watch) and is computed only
  when a surge is about to fire.

* **Measurements** (``counts=False``, only for ``veille backtest --series`` on a series that is not
  counts: negative or fractional values). The same machinery on an additive baseline
  (``level + daily + weekly``); the statistic is the residual sum of each scale over its own learned
  spread (variance of that sum, learned with the same clips and half-life as the over-dispersion), in
  absolute value, so drops and level shifts alert as well as rises; a scale may fire only once its
  spread has been learned over ten of its windows (severity: warning from 1.5, critical from 3 times
  the threshold, since a ratio means nothing for values of any sign), and the warm-up lasts at least two days (the
  first teaches the level, the second the time-of-day profile around it, for an additive wave that
  can be large against the noise); missing buckets are unknown (skipped), not zero.
  The classifier only ever feeds counts.

Everything is a few float operations per bucket (no history beyond a day and the longest sub-day
scale's half-window), and the whole state is a small JSON-serialisable dict
(:meth:`SpikeDetector.to_state`, format version 3: the contextual novelty's ``skipped_n`` and its
longer history were added without a new format number, so that a classifier of the previous release,
which ignores keys it does not know and keeps the history it needs, reads the state this one writes:
a rolling upgrade or a rollback keeps every watch's learned baseline and its open alerts).

Why this design, and what the evidence says (``bench/nab_eval.py``, docs/benchmarks.md):

* Mention counts are over-dispersed counts with daily and weekly cycles, quiet nights (zeros) and
  bursts; a negative-binomial deviance against a seasonal, robustly learned baseline is the textbook
  model for them and needs no transform or per-watch scale. The alternatives the issue names (ARTime's
  adaptive resonance, CAD OSE's contexts) learn a growing set of patterns or categories per series,
  which does not fit a bounded per-watch state in a KV bucket without extra pruning rules.
* Settings chosen on data are set by nested leave-one-file-out over the five dev realTweets series
  (``fire_threshold`` x ``dispersion_clip_sigma``, 10 settings; each file scored with the setting
  chosen on the other four): the folds chose 3.0 and 6 in three of five folds, the defaults here.
  Cross-validated estimate 82.5 (standard profile), plain dev figure 83.6 (in-sample), before the
  young-watch fix (ratio estimators, priors, baseline uncertainty); after it, measured once and not
  tuned, 75.0 cross-validated and nab/other 56.9 (the folds tied 2.5 with 3.0, and the tie rule
  written in ``bench/nab_eval.py`` before that look, lower value first, made 2.5 the protocol's
  choice while the code kept 3.0: a discrepancy). With contextual novelty and the backtest's grid
  rule (look 16, the last of 16 looks at the dev scores): 76.4 cross-validated (the folds choose
  3.0 and dispersion clip 6 four times out of five, no tie: the defaults here, which are now the
  protocol's choice), plain dev 82.2, nab/other 59.1 (scored with the protocol's choice). Both
  dev figures are *upper* bounds: the rest of the structure (scales, ``min_ratio``, ``min_excess``, half-lives,
  clips) was fixed on these same five files before this protocol existed, and on five unseen
  realTweets series the earlier defaults scored 45.1 (issue 12), below an EWMA baseline's 63.4.
* ``dispersion_half_life`` is 14 days, not 3, for a reason: how bursty a brand is, is a trait over
  weeks (two weekly cycles), so a few busy days should not mask the next surge nor a few quiet days
  make an ordinary bump alarming. A diagnostic on the dev windows agreed (the windows that the
  3-day yardstick caught by a hair are caught with a wider margin, fewer false alarms), and so
  did both checks (cross-validated 82.0 -> 82.5, nab/other 47.4 -> 48.7).
* Tried and not kept: a 30-minute scale (cross-validated 67.2), a robust 3-sigma dispersion clip
  (more false alarms on the burstiest series: unlabelled 3-6x bursts fire), and accepting a lasting
  level at once after ``adapt_after`` (dev unchanged, nab/other 44.0 instead of 46.5: that choice
  used nab/other, which is therefore not entirely independent); a first contextual-novelty gate that
  compared every surge with yesterday's sum (look 15: it cut slow drifts; cross-validated 64.0,
  nab/other 52.4), narrowed to yesterday's surges only with both figures in view.
* Known weakness: on measurements, a daily burst whose hour wanders still alerts now and then, as a
  drop on a day it comes late or on the 6-hour scale (yesterday's same hours were not a surge on
  that side or scale): ``ec2_cpu_utilization_24ae8d`` went from 13 alerts to 8, not to 1.
* nab/other (48 files of other kinds) is scored with the same defaults, fitted only to each file's
  format (bucket = sampling period; counts, or measurements when values are negative, fractional
  or less variable than event counts, or rows off the bucket's grid): 59.1 standard (56.9 before
  contextual novelty, 54.2 before the young-watch fix), against 12.3 before (9 files refused) and
  72.1 for ARTime. The goals of issue 12 (>= 82 on unseen realTweets, >= 60 on nab/other) are
  therefore *not* shown to be met.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from statistics import NormalDist
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from veille.durations import Duration
from veille.models import Severity

__all__ = ["BEHAVIOUR_REVISION", "STATE_VERSION", "Decision", "DetectorSettings", "SpikeDetector", "nb_signed_deviance"]

STATE_VERSION = 3
"""The state's format. Additions that a reader of the same number can ignore keep the number (``skipped_n``
came in without one: a state without it loads as "no skipped bucket known"); only a change that such a
reader would misread takes a new one (it would reset every watch of an older replica)."""
BEHAVIOUR_REVISION = 4
"""Bumped whenever the same settings and counts can give different expectations or alerts (4: the
contextual novelty): stored replays of the detector (the archive's ``volume_baselines``) name it, so a
new release never resumes a replay the old code made."""

PROFILE_PRIOR = 4.0
"""Prior weight of a time-of-day factor, in expected mentions, at the flat profile (factor 1).

Empirical Bayes in round numbers: a factor estimated from ``c`` expected mentions has a Poisson
relative variance of ``1/c``; a day/night rhythm of x3 from trough to peak puts hourly factors within
about 0.5-1.5, a prior spread of 0.5, i.e. a prior variance of 0.25 = ``1/4``: the slot's own estimate
outweighs the flat profile once it rests on four mentions' worth of evidence. The prior is forgotten
with the data (it only holds a young watch back), and its weight is what makes a young or quiet
watch's baseline uncertain (:meth:`SpikeDetector._uncertainty`).
"""

WEEKLY_PRIOR = 11.0
"""Prior weight of a day-of-week factor, in expected mentions, at 1: weekday effects (a weekend dip of
a third, a busier Monday) put them within about +-0.3 of 1, a prior variance of 0.09 = ``1/11``."""

_WEEK_DAYS = 7
_DAY = timedelta(days=1)
_MIN_THRESHOLD = 0.5


class DetectorSettings(BaseModel):
    """How a watch's spike detector behaves; the defaults are what a new watch gets.

    Durations are ``timedelta``; as in the YAML configuration they may be written ``30s``, ``5m``, ``2h``, ``7d``
    (or a number of seconds, or ISO 8601 such as ``PT5M``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bucket: Duration = Field(timedelta(minutes=5), description="Width of a time bucket.")
    counts: bool = Field(
        True,
        description=(
            "The values are counts (mentions per bucket): non-negative, negative-binomial, only surges alert and "
            "a missing bucket counts as zero. False for measurements of any sign (a backtest of another kind of "
            "series): Gaussian residuals, rises and drops alert, a missing bucket is unknown and skipped."
        ),
    )
    warmup: Duration = Field(timedelta(days=1), description="How long the detector only learns before it may alert.")
    level_half_life: Duration = Field(timedelta(days=3), description="Half-life of the de-seasonalised level.")
    daily_slot: Duration = Field(timedelta(hours=1), description="Resolution of the time-of-day profile.")
    daily_half_life: Duration = Field(
        timedelta(days=5), description="Half-life of each time-of-day factor (in days of data)."
    )
    weekly: bool = Field(True, description="Learn a day-of-week rhythm on top of the daily one.")
    daily_novelty: bool = Field(
        True,
        description=(
            "A surge on a scale shorter than a day fires only if it also stands out against the same hours of "
            "the day before (what recurs at the same time each day is the watch's rhythm, not news)."
        ),
    )
    weekly_half_life: Duration = Field(
        timedelta(days=21), description="Half-life of each day-of-week factor (in weeks of data x 7)."
    )
    dispersion_half_life: Duration = Field(
        timedelta(days=14),
        description=(
            "Half-life of the over-dispersion estimates: how long the yardstick of 'unusual' remembers "
            "(two weekly cycles, so a few busy or quiet days do not move it much)."
        ),
    )
    scales: tuple[Duration, ...] = Field(
        (timedelta(hours=2), timedelta(hours=6), timedelta(hours=24)),
        description="Aggregation windows on which a surge is tested (each a multiple of the bucket).",
    )
    fire_threshold: float = Field(
        3.0, gt=0, description="Statistic (about sigmas) at which a surge fires on the shortest scale."
    )
    familywise: bool = Field(
        True,
        description=(
            "Give longer scales a lower threshold, so that every scale has the same false-alarm rate per day "
            "(a sum over m buckets is tested m times less often than a single bucket)."
        ),
    )
    resolve_threshold: float = Field(1.5, description="Statistic below which volume counts as normal.")
    resolve_after: Duration = Field(
        timedelta(hours=1), description="How long volume must stay normal before the alert resolves."
    )
    refire_after: Duration = Field(
        timedelta(hours=1), description="Quiet time after a resolution before a new surge may fire."
    )
    adapt_after: Duration = Field(
        timedelta(hours=12), description="After this long firing, the baseline accepts the new level."
    )
    min_excess: float = Field(5.0, ge=0, description="Fewest extra mentions (over a scale) to fire.")
    min_ratio: float = Field(2.0, ge=1, description="Smallest observed/expected ratio to fire.")
    clip_sigma: float = Field(3.0, gt=0, description="Counts are clipped to this many sigmas to learn.")
    min_dispersion: float = Field(0.01, ge=0, description="Floor of the over-dispersion alpha.")
    dispersion_clip_sigma: float = Field(
        6.0, gt=0, description="Counts are clipped to this many sigmas to learn the over-dispersion."
    )
    dispersion_cap: float = Field(100.0, gt=0, description="Largest single-bucket contribution to alpha.")
    severity_window: Duration = Field(
        timedelta(minutes=30), description="Recent window whose observed/expected ratio sets the severity."
    )
    warning_ratio: float = Field(3.0, ge=1, description="Observed/expected ratio from which severity is warning.")
    critical_ratio: float = Field(10.0, ge=1, description="Observed/expected ratio from which severity is critical.")
    max_gap: Duration = Field(
        timedelta(days=7), description="Longest run of missing buckets filled with zeros; longer gaps reset."
    )

    @model_validator(mode="after")
    def _check(self) -> DetectorSettings:
        if self.bucket <= timedelta(0):
            raise ValueError("bucket must be positive")
        if self.daily_slot <= timedelta(0) or _DAY % self.daily_slot or self.daily_slot % self.bucket:
            raise ValueError("daily_slot must divide a day and be a multiple of bucket")
        if not self.scales:
            raise ValueError("at least one scale is needed")
        for scale in self.scales:
            if scale < self.bucket or scale % self.bucket:
                raise ValueError(f"scale {scale} must be a positive multiple of bucket {self.bucket}")
        if self.resolve_threshold >= self.fire_threshold:
            raise ValueError("resolve_threshold must be below fire_threshold")
        if self.critical_ratio < self.warning_ratio:
            raise ValueError("critical_ratio must be at least warning_ratio")
        return self


@dataclass(frozen=True)
class Decision:
    """What the detector concluded about one bucket.

    ``event`` is ``"fired"`` on the bucket where a surge is first detected, ``"resolved"`` on the
    bucket where it is over, otherwise ``None``; ``firing`` says whether a surge is in progress after
    this bucket. ``observed``/``expected`` are the counts on the scale that decided (``scale_buckets``
    buckets), ``statistic`` the detector's statistic (about sigmas) against ``threshold``, and
    ``score`` an anomaly score in ``[0, 1]`` that is ``>= 0.5`` exactly when the statistic reaches
    the firing threshold.
    """

    timestamp: datetime
    event: Literal["fired", "resolved"] | None
    firing: bool
    severity: Severity | None
    observed: float
    expected: float
    statistic: float
    threshold: float
    score: float
    scale_buckets: int = 1
    warming_up: bool = False


def nb_signed_deviance(observed: float, expected: float, alpha: float) -> float:
    """Return the signed root deviance of a negative-binomial count (variance ``mu + alpha mu^2``).

    A continuity correction of half a count towards the mean is applied, so that a single mention
    where almost none are expected is not mistaken for a rare event. The result is approximately a
    standard normal deviate: about 0 for a typical count, large and positive for a surge.
    """
    mu = max(expected, 1e-9)
    if observed > mu:
        x = max(observed - 0.5, mu)
    elif observed < mu:
        x = min(observed + 0.5, mu)
    else:
        return 0.0
    if x == mu:
        return 0.0
    term = x * math.log(x / mu) if x > 0 else 0.0
    if alpha > 0:
        k = 1.0 / alpha
        dev = 2.0 * (term - (x + k) * math.log((x + k) / (mu + k)))
    else:
        dev = 2.0 * (term - (x - mu))
    root = math.sqrt(max(dev, 0.0))
    return root if x > mu else -root


def _rate(half_life: timedelta, step: timedelta) -> float:
    """Return the EWMA weight per ``step`` giving ``half_life``."""
    n = half_life / step
    return 1.0 - 0.5 ** (1.0 / n) if n > 0 else 1.0


class SpikeDetector:
    """Online spike detector for one watch: feed it one count per bucket, in time order."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        """Create a detector that has seen nothing yet."""
        self.settings = settings or DetectorSettings()
        s = self.settings
        self._slots = int(_DAY / s.daily_slot)
        self._slot_buckets = int(s.daily_slot / s.bucket)
        self._scale_buckets = [int(sc / s.bucket) for sc in s.scales]
        self._thresholds = _scale_thresholds(s.fire_threshold, self._scale_buckets, s.familywise)
        self._severity_buckets = max(1, int(s.severity_window / s.bucket))
        self._lag = int(_DAY / s.bucket)  # a day, in buckets (a bucket divides a day: see daily_slot)
        sub_day = [m for m in self._scale_buckets if m < self._lag] if s.daily_novelty else []
        self._history = max(*self._scale_buckets, self._severity_buckets, *(self._lag + m + m // 2 for m in sub_day))
        self._eta_level = _rate(s.level_half_life, s.bucket)
        # a time-of-day slot gets slot_buckets counts a day; a day of the week is closed once a week
        self._eta_daily = _rate(s.daily_half_life, _DAY / self._slot_buckets)
        self._eta_weekly = _rate(s.weekly_half_life, _DAY * _WEEK_DAYS)
        self._eta_disp = _rate(s.dispersion_half_life, s.bucket)
        # measurements: the first day teaches the level, the second the time-of-day profile around it
        warmup = s.warmup if s.counts else max(s.warmup, 2 * _DAY)
        self._warmup_buckets = int(warmup / s.bucket)
        self._resolve_buckets = max(1, int(s.resolve_after / s.bucket))
        self._refire_buckets = int(s.refire_after / s.bucket)
        self._adapt_buckets = int(s.adapt_after / s.bucket)
        self._max_gap = int(s.max_gap / s.bucket)
        self._reset()

    @property
    def thresholds(self) -> list[float]:
        """Return the firing threshold of each scale (in the order of ``settings.scales``)."""
        return list(self._thresholds)

    def _reset(self) -> None:
        self.n = 0
        self.last_ts: datetime | None = None
        self.level = 0.0
        self.level_w = 0.0  # counts: sum of the (forgotten) seasonal weights behind the level
        neutral = 1.0 if self.settings.counts else 0.0  # multiplicative factors for counts, offsets else
        self.daily = [neutral] * self._slots
        # counts: expected and observed mentions behind each factor, from a prior of PROFILE_PRIOR at 1;
        # measurements: samples behind each offset (and daily_acc unused)
        prior = PROFILE_PRIOR if self.settings.counts else 0.0
        self.daily_n = [prior] * self._slots
        self.daily_acc = [prior] * self._slots
        self.weekly = [neutral] * _WEEK_DAYS
        prior = WEEKLY_PRIOR if self.settings.counts else 0.0
        self.weekly_n = [prior] * _WEEK_DAYS  # as daily_n, a day of the week; measurements: days
        self.weekly_obs = [prior] * _WEEK_DAYS
        self.weekly_acc = [0.0, 0.0]  # observed and baseline counts of the current day
        self.weekly_day = -1
        self.alpha = [self.settings.min_dispersion] * len(self._scale_buckets)
        self.alpha_n = [0] * len(self._scale_buckets)
        self.recent_x: list[float] = []
        self.recent_mu: list[float] = []
        self.sum_x = [0.0] * len(self._scale_buckets)
        self.sum_mu = [0.0] * len(self._scale_buckets)
        self.firing = False
        self.fired_scale = 0  # index of the scale that fired the current alert
        self.fired_n = -1  # bucket index of the last "fired"
        self.calm = 0  # consecutive normal buckets while firing
        self.resolved_n = -(10**9)
        self.skipped_n = -(10**9)  # measurements: bucket index after the last skipped (missing) buckets
        self.severity: Severity | None = None

    # ---------------------------------------------------------------- baseline
    def _slot_position(self, ts: datetime) -> tuple[int, int, float, int]:
        """Return the two daily slots around ``ts``, the weight of the second, and the weekday."""
        day_seconds = ts.hour * 3600 + ts.minute * 60 + ts.second + ts.microsecond / 1e6
        pos = day_seconds / self.settings.daily_slot.total_seconds() - 0.5
        lo = math.floor(pos)
        frac = pos - lo
        return lo % self._slots, (lo + 1) % self._slots, frac, ts.weekday()

    def _seasonal(self, lo: int, hi: int, frac: float, dow: int) -> float:
        daily = self.daily[lo] * (1.0 - frac) + self.daily[hi] * frac
        return max(daily, 1e-3) * max(self.weekly[dow], 1e-3)

    def _baseline(self, lo: int, hi: int, frac: float, dow: int) -> float:
        """Return the expected value: ``level x daily x weekly`` for counts, ``level + daily + weekly`` else."""
        if self.settings.counts:
            return self.level * self._seasonal(lo, hi, frac, dow)
        return self.level + self.daily[lo] * (1.0 - frac) + self.daily[hi] * frac + self.weekly[dow]

    def expected(self, ts: datetime) -> float:
        """Return the count the baseline expects for the bucket starting at ``ts``."""
        lo, hi, frac, dow = self._slot_position(_utc(ts))
        return self._baseline(lo, hi, frac, dow)

    def _learn_additive(self, x: float, lo: int, hi: int, frac: float, dow: int) -> None:
        """Teach an additive baseline (measurements): the same half-lives, offsets of mean zero."""
        eta = max(self._eta_level, 1.0 / self.n)
        daily = self.daily[lo] * (1.0 - frac) + self.daily[hi] * frac
        self.level += eta * (x - daily - self.weekly[dow] - self.level)
        resid = x - self.level - self.weekly[dow]
        for slot, w in ((lo, 1.0 - frac), (hi, frac)):
            if w <= 0.0:
                continue
            self.daily_n[slot] += w
            eta_d = w * max(self._eta_daily, 1.0 / self.daily_n[slot])
            self.daily[slot] += eta_d * (resid - self.daily[slot])
        mean = sum(self.daily) / self._slots
        self.daily = [f - mean for f in self.daily]
        if dow != self.weekly_day:
            day, (obs, base) = self.weekly_day, self.weekly_acc
            self.weekly_acc = [0.0, 0.0]
            if day >= 0 and base > 0 and self.settings.weekly:
                self.weekly_n[day] += 1
                eta_w = max(self._eta_weekly, 1.0 / (self.weekly_n[day] + 1))
                self.weekly[day] += eta_w * (obs / base - self.weekly[day])
                wmean = sum(self.weekly) / _WEEK_DAYS
                self.weekly = [f - wmean for f in self.weekly]
            self.weekly_day = dow
        self.weekly_acc[0] += x - self.level - daily
        self.weekly_acc[1] += 1.0

    def _learn(self, x: float, mu: float, lo: int, hi: int, frac: float, dow: int) -> None:
        """Teach the baseline the (already clipped) count ``x`` of a bucket expected at ``mu``.

        Level and time-of-day factors are ratio estimators, as a Poisson model makes them: the level
        is ``sum(x) / sum(season)`` and a slot's factor ``sum(x) / sum(level x weekly)`` over the
        buckets it saw (with forgetting), each bucket weighted by the negative-binomial information
        ``1 / (1 + alpha mu)`` so a busy, bursty bucket counts for at most ``1 / alpha`` mentions. A
        bucket whose baseline is near zero therefore teaches a factor almost nothing, where a mean of
        ratios ``x / baseline`` would let one mention on a quiet night set a huge factor. A slot's factor
        is shrunk towards 1 by :data:`PROFILE_PRIOR` expected mentions (see there).
        """
        season = self._seasonal(lo, hi, frac, dow)
        inv = 1.0 / (1.0 + self.alpha[0] * max(mu, 0.0))
        self.level_w = (1.0 - self._eta_level) * self.level_w + season * inv
        self.level += (x - self.level * season) * inv / self.level_w
        self.level = max(self.level, 0.0)
        base = self.level * max(self.weekly[dow], 1e-3)
        for slot, w in ((lo, 1.0 - frac), (hi, frac)):
            if w <= 0.0:
                continue
            keep = 1.0 - w * self._eta_daily
            self.daily_acc[slot] = keep * self.daily_acc[slot] + w * x * inv
            self.daily_n[slot] = keep * self.daily_n[slot] + w * base * inv
        self._profile()
        # day-of-week factor: once a day, from that day's observed / baseline counts; not from the
        # warm-up, whose days measure how far the young baseline still is, not the weekday
        if dow != self.weekly_day:
            self._close_day()
            self.weekly_day = dow
        if self.n > self._warmup_buckets:
            self.weekly_acc[0] += x
            self.weekly_acc[1] += self.level * max(self.daily[lo] * (1 - frac) + self.daily[hi] * frac, 1e-3)

    def _profile(self) -> None:
        """Recompute the time-of-day factors (mean 1) from their shrunk ratio estimators."""
        raw = [a / w for a, w in zip(self.daily_acc, self.daily_n, strict=True)]
        mean = sum(raw) / self._slots
        self.daily = [f / mean for f in raw]

    def _uncertainty(self, lo: int, hi: int, frac: float, dow: int, m: int) -> float:
        """Relative variance of the expected sum of ``m`` buckets ending now, as an estimate (counts).

        Each factor is a ratio estimator built from ``W`` expected mentions (its weight), so its relative
        variance is about ``1 / W``; the expected count's is the sum over level, weekday and time of day
        (``m`` buckets span ``m / slot_buckets`` slots with independent errors). Added to the
        over-dispersion this is the Gamma-Poisson predictive distribution: a young or quiet watch,
        whose baseline rests on a few mentions, needs a larger surge to alert; a busy one is unaffected.
        """
        level_w = self.level * self.level_w
        v = 1.0 / level_w if level_w > 0 else 0.0
        if self.settings.weekly:
            v += 1.0 / self.weekly_n[dow]
        slot_w = self.daily_n[lo] * (1.0 - frac) + self.daily_n[hi] * frac
        return v + self._slot_buckets / (max(m, self._slot_buckets) * slot_w)

    def _close_day(self) -> None:
        """Teach the day-of-week factor of the day that just ended (counts).

        The same shrunk ratio estimator as a time-of-day factor, a whole day being one observation:
        its observed and baseline counts, weighted by ``1 / (1 + alpha base)`` with the dispersion of
        the longest scale (a day's total varies from day to day far more than Poisson says, so one
        busy day counts for at most ``1 / alpha`` mentions), forgotten with ``weekly_half_life``.
        """
        day = self.weekly_day
        obs, base = self.weekly_acc
        self.weekly_acc = [0.0, 0.0]
        if day < 0 or base <= 0.0 or not self.settings.weekly:
            return
        inv = 1.0 / (1.0 + self.alpha[-1] * base)
        keep = 1.0 - self._eta_weekly
        self.weekly_obs[day] = keep * self.weekly_obs[day] + obs * inv
        self.weekly_n[day] = keep * self.weekly_n[day] + base * inv
        raw = [a / w for a, w in zip(self.weekly_obs, self.weekly_n, strict=True)]
        mean = sum(raw) / _WEEK_DAYS
        self.weekly = [f / mean for f in raw]

    # ---------------------------------------------------------------- update
    def update(self, ts: datetime, value: float) -> Decision:
        """Feed the count of the bucket starting at ``ts`` and return the decision for it.

        Buckets must come in time order. Missing buckets (a gap of up to ``max_gap``) count as
        zero mentions; after a longer gap the detector starts learning afresh. A bucket at or before
        the last one seen raises ``ValueError``.
        """
        ts = _utc(ts)
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"a bucket value must be a finite number, got {value!r}")
        if value < 0 and self.settings.counts:
            raise ValueError(f"a bucket count must be a finite non-negative number, got {value!r}")
        bucket = self.settings.bucket
        if self.last_ts is not None:
            if ts <= self.last_ts:
                raise ValueError(f"bucket {ts.isoformat()} is not after the last one ({self.last_ts.isoformat()})")
            missing = round((ts - self.last_ts) / bucket) - 1
            if missing > self._max_gap:
                self._reset()
            elif self.settings.counts:
                for k in range(missing, 0, -1):
                    self._step(ts - k * bucket, 0.0)
            elif missing > 0:  # measurements: skipped, so the history no longer maps to time for a while
                self.skipped_n = self.n + 1
        return self._step(ts, float(value))

    def _push(self, x: float, mu: float) -> None:
        """Append a bucket to the recent history and slide the per-scale sums."""
        self.recent_x.append(x)
        self.recent_mu.append(mu)
        size = len(self.recent_x)
        for j, m in enumerate(self._scale_buckets):
            self.sum_x[j] += x
            self.sum_mu[j] += mu
            if size > m:
                self.sum_x[j] -= self.recent_x[-m - 1]
                self.sum_mu[j] -= self.recent_mu[-m - 1]
        if size > self._history:
            del self.recent_x[0]
            del self.recent_mu[0]
        if self.n % self._history == 0:  # wipe rounding drift now and then (deterministically)
            for j, m in enumerate(self._scale_buckets):
                self.sum_x[j] = math.fsum(self.recent_x[-m:])
                self.sum_mu[j] = math.fsum(self.recent_mu[-m:])

    def _step(self, ts: datetime, x: float) -> Decision:
        s = self.settings
        self.n += 1
        self.last_ts = ts
        lo, hi, frac, dow = self._slot_position(ts)
        counts = s.counts
        mu = self._baseline(lo, hi, frac, dow) if self.n > 1 else x
        if counts:
            mu = max(mu, 1e-6)
        self._push(x, mu)

        # statistic on each scale, relative to that scale's threshold
        zs: list[float] = []
        best_r = -math.inf
        best_j = -1
        fire_j = -1
        since_alert = self.n - self.resolved_n
        for j, m in enumerate(self._scale_buckets):
            if len(self.recent_x) < m:
                zs.append(-math.inf)
                continue
            v = 0.0
            if counts:
                obs = max(self.sum_x[j], 0.0)
                exp = max(self.sum_mu[j], 1e-9)
                v = self._uncertainty(lo, hi, frac, dow, m)
                z = nb_signed_deviance(obs, exp, self.alpha[j] + v)
            else:  # measurements: a rise or a drop, in units of the learned spread of this scale's sum
                obs, exp = self.sum_x[j], self.sum_mu[j]
                z = abs(obs - exp) / math.sqrt(max(self.alpha[j], 1e-12))
            zs.append(z)
            r = z / self._thresholds[j]
            if r > best_r:
                best_r, best_j = r, j
            if (
                r >= 1.0
                and (counts or self.alpha_n[j] >= 10 * m)  # a spread is known after ten windows of data
                and (not counts or (obs - exp >= s.min_excess and obs >= s.min_ratio * exp))
                and since_alert > max(self._refire_buckets, m - self._resolve_buckets)
                and (fire_j < 0 or r > zs[fire_j] / self._thresholds[fire_j])
                and (self.firing or self.n <= self._warmup_buckets or self._novel(j, m, obs, exp))
            ):
                fire_j = j
            if self.n > self._warmup_buckets // 2:
                self._learn_dispersion(j, obs, exp, v)

        warming = self.n <= self._warmup_buckets
        if counts and self.n == self._warmup_buckets:
            # the warm-up's residuals measure how far the young baseline was more than how bursty the
            # watch is: their over-dispersion is kept as a provisional value worth one window of each scale
            self.alpha_n = [min(n, m) for n, m in zip(self.alpha_n, self._scale_buckets, strict=True)]
        event: Literal["fired", "resolved"] | None = None
        if self.firing:
            calm = all(
                zs[j] < s.resolve_threshold * self._thresholds[j] / s.fire_threshold
                for j in range(len(zs))
                if self._scale_buckets[j] <= self._scale_buckets[self.fired_scale]
            )
            self.calm = self.calm + 1 if calm else 0
            if self.calm >= self._resolve_buckets:
                self.firing = False
                self.resolved_n = self.n
                event = "resolved"
        elif fire_j >= 0 and not warming:
            self.firing = True
            self.fired_n = self.n
            self.fired_scale = fire_j
            self.calm = 0
            event = "fired"
            k = self._severity_buckets
            if counts:
                self.severity = self._severity(math.fsum(self.recent_x[-k:]), math.fsum(self.recent_mu[-k:]))
            else:  # measurements have no meaningful ratio: how far past its threshold the statistic went
                excess = zs[fire_j] / self._thresholds[fire_j]
                self.severity = "critical" if excess >= 3.0 else "warning" if excess >= 1.5 else "info"
        if event == "fired":
            best_j = fire_j

        # robust learning
        if not counts:
            self._learn_values(x, mu, lo, hi, frac, dow)
            return self._decision(ts, event, warming, best_j, zs, x, mu)
        sd = math.sqrt(mu + self.alpha[0] * mu * mu)
        # counts are whole: a bound between two counts is rounded up to the next, so the one mention that a
        # quiet watch gets now and then is learned as one (clipped to mu + 3 sd = 0.7 it would bias the
        # level of a watch expecting 0.05 a bucket down by a third)
        upper = float(math.ceil(mu + s.clip_sigma * sd))
        if self.firing and self.n - self.fired_n < self._adapt_buckets:
            upper = mu
        # during the warm-up the baseline is still finding its level: it learns every count as it is
        x_learn = min(max(x, mu - s.clip_sigma * sd), upper) if self.n > self._warmup_buckets else x
        self._learn(x_learn, mu, lo, hi, frac, dow)
        return self._decision(ts, event, warming, best_j, zs, x, mu)

    def _novel(self, j: int, m: int, obs: float, exp: float) -> bool:
        """Whether scale ``j``'s surge is new, rather than the same surge as at this time yesterday.

        Contextual novelty (as in CAD OSE, which alerts on contexts it has not seen before): the robust
        baseline clips and freezes whatever looks like a surge, so a burst that comes back at the same
        hour every day (a nightly job, a daily show) is never learned as rhythm and would alert every
        day. A sum of ``m`` buckets is therefore compared with the same hours of the day before (the
        windows ending within half a window either side of this time yesterday, since a rhythm's hour
        wanders a little): if one of them was *itself a surge* on the same side (its statistic against
        the baseline of the time reached the scale's threshold), today's must also reach the threshold
        against that one's observed sum (counts: with the over-dispersion alone, since an observed sum
        is not the baseline's estimate; measurements: its excess over its own baseline is taken off).
        A slow drift, whose yesterday was not yet a surge, is not discounted. Unknown context (a scale
        of a day or more, too little history, or measurements skipped in it) is novel, as before.
        """
        lag = self._lag
        half = m // 2
        reach = lag + m + half
        if not self.settings.daily_novelty or m >= lag or len(self.recent_x) < reach:
            return True
        if self.n - self.skipped_n < reach:
            return True
        xs, mus = self.recent_x, self.recent_mu
        thr = self._thresholds[j]
        rise = obs >= exp
        sx = math.fsum(xs[-reach : -reach + m])  # the window ending lag + half buckets ago
        smu = math.fsum(mus[-reach : -reach + m])
        worst: float | None = None  # yesterday's most extreme surge on the same side
        counts = self.settings.counts
        spread = math.sqrt(max(self.alpha[j], 1e-12))
        for i in range(-reach + m, -lag + half + 1):
            if counts:
                surge = sx > smu and nb_signed_deviance(sx, smu, self.alpha[j]) >= thr
                value = sx
            else:
                surge = (sx > smu) == rise and abs(sx - smu) / spread >= thr
                value = abs(sx - smu)
            if surge and (worst is None or value > worst):
                worst = value
            if i < -lag + half:  # slide the window forward one bucket
                sx += xs[i] - xs[i - m]
                smu += mus[i] - mus[i - m]
        if worst is None:
            return True
        if counts:
            return worst <= exp or nb_signed_deviance(obs, worst, self.alpha[j]) >= thr
        return (abs(obs - exp) - worst) / spread >= thr

    def _learn_values(self, x: float, mu: float, lo: int, hi: int, frac: float, dow: int) -> None:
        """Robust learning of a measurement: clipped to ``clip_sigma`` bucket spreads, frozen while firing."""
        s = self.settings
        if self.n > self._warmup_buckets:
            sd = math.sqrt(max(self.alpha[0], 1e-12) / self._scale_buckets[0])
            lo_x, hi_x = mu - s.clip_sigma * sd, mu + s.clip_sigma * sd
            if self.firing and self.n - self.fired_n < self._adapt_buckets:
                lo_x = hi_x = mu
            x = min(max(x, lo_x), hi_x)
        self._learn_additive(x, lo, hi, frac, dow)

    def _decision(
        self,
        ts: datetime,
        event: Literal["fired", "resolved"] | None,
        warming: bool,
        best_j: int,
        zs: list[float],
        x: float,
        mu: float,
    ) -> Decision:
        if best_j >= 0:
            m = self._scale_buckets[best_j]
            obs, exp, stat, thr = self.sum_x[best_j], self.sum_mu[best_j], zs[best_j], self._thresholds[best_j]
        else:
            m, obs, exp, stat, thr = 1, x, mu, 0.0, self._thresholds[0]
        ratio = max(stat / thr, 0.0)
        score = ratio / (ratio + 1.0)
        severity = self.severity if (self.firing or event == "resolved") else None
        return Decision(
            timestamp=ts,
            event=event,
            firing=self.firing,
            severity=severity,
            observed=max(obs, 0.0) if self.settings.counts else obs,
            expected=max(exp, 0.0) if self.settings.counts else exp,
            statistic=stat,
            threshold=thr,
            score=score,
            scale_buckets=m,
            warming_up=warming,
        )

    def _learn_dispersion(self, j: int, obs: float, exp: float, v: float) -> None:
        """Learn scale ``j``'s over-dispersion from its sum ``obs`` against ``exp`` (relative variance ``v``).

        Counts: ``E[(obs - exp)^2] = exp + (alpha + v) exp^2`` when ``exp`` is itself an estimate of
        relative variance ``v`` (:meth:`_uncertainty`), so ``v`` is taken out: ``alpha`` is how bursty
        the watch is, not how young its baseline is (which the statistic adds back while it lasts).
        """
        s = self.settings
        if not s.counts:  # the variance of this scale's residual sum, learned from clipped residuals
            self.alpha_n[j] += 1
            eta = max(self._eta_disp, 1.0 / self.alpha_n[j])
            var = self.alpha[j] if self.alpha_n[j] > 1 else 0.0
            lim = s.dispersion_clip_sigma * math.sqrt(var) if self.alpha_n[j] > 10 else math.inf
            r = min(max(obs - exp, -lim), lim)
            self.alpha[j] = max(var + eta * (r * r - var), 1e-12)
            return
        sd = math.sqrt(exp + (self.alpha[j] + v) * exp * exp)
        clipped = min(max(obs, exp - s.dispersion_clip_sigma * sd), exp + s.dispersion_clip_sigma * sd)
        a_obs = ((clipped - exp) ** 2 - exp) / (exp * exp) - v
        a_obs = min(max(a_obs, -1.0), s.dispersion_cap)
        self.alpha_n[j] += 1
        eta = max(self._eta_disp, 1.0 / self.alpha_n[j])
        raw = self.alpha[j] + eta * (a_obs - self.alpha[j])
        self.alpha[j] = max(raw, s.min_dispersion)

    def _severity(self, observed: float, expected: float) -> Severity:
        ratio = observed / max(expected, 1e-9)
        if ratio >= self.settings.critical_ratio:
            return "critical"
        if ratio >= self.settings.warning_ratio:
            return "warning"
        return "info"

    # ---------------------------------------------------------------- state
    def to_state(self) -> dict[str, Any]:
        """Return the detector's whole state as a JSON-serialisable dict."""
        return {
            "version": STATE_VERSION,
            "n": self.n,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "level": self.level,
            "level_w": self.level_w,
            "daily": list(self.daily),
            "daily_n": list(self.daily_n),
            "daily_acc": list(self.daily_acc),
            "weekly": list(self.weekly),
            "weekly_n": list(self.weekly_n),
            "weekly_obs": list(self.weekly_obs),
            "weekly_acc": list(self.weekly_acc),
            "weekly_day": self.weekly_day,
            "alpha": list(self.alpha),
            "alpha_n": list(self.alpha_n),
            "recent_x": list(self.recent_x),
            "recent_mu": list(self.recent_mu),
            "sum_x": list(self.sum_x),
            "sum_mu": list(self.sum_mu),
            "firing": self.firing,
            "fired_scale": self.fired_scale,
            "fired_n": self.fired_n,
            "calm": self.calm,
            "resolved_n": self.resolved_n,
            "skipped_n": self.skipped_n,
            "severity": self.severity,
        }

    @classmethod
    def from_state(cls, settings: DetectorSettings | None, state: dict[str, Any]) -> SpikeDetector:
        """Rebuild a detector from :meth:`to_state` output (and the same settings)."""
        det = cls(settings)
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported detector state version {state.get('version')!r}")
        if len(state["daily"]) != det._slots or len(state["alpha"]) != len(det._scale_buckets):
            raise ValueError("detector state does not match these settings (daily_slot or scales changed)")
        det.n = int(state["n"])
        det.last_ts = datetime.fromisoformat(state["last_ts"]) if state["last_ts"] else None
        det.level = float(state["level"])
        det.daily = [float(v) for v in state["daily"]]
        det.daily_n = [float(v) for v in state["daily_n"]]
        det.daily_acc = [float(v) for v in state["daily_acc"]]
        det.level_w = float(state["level_w"])
        det.weekly = [float(v) for v in state["weekly"]]
        det.weekly_n = [float(v) for v in state["weekly_n"]]
        det.weekly_obs = [float(v) for v in state["weekly_obs"]]
        det.weekly_acc = [float(v) for v in state["weekly_acc"]]
        det.weekly_day = int(state["weekly_day"])
        det.alpha = [float(v) for v in state["alpha"]]
        det.alpha_n = [int(v) for v in state["alpha_n"]]
        det.recent_x = [float(v) for v in state["recent_x"]][-det._history :]
        det.recent_mu = [float(v) for v in state["recent_mu"]][-det._history :]
        det.sum_x = [float(v) for v in state["sum_x"]]
        det.sum_mu = [float(v) for v in state["sum_mu"]]
        det.firing = bool(state["firing"])
        det.fired_scale = int(state["fired_scale"])
        det.fired_n = int(state["fired_n"])
        det.calm = int(state["calm"])
        det.resolved_n = int(state["resolved_n"])
        det.skipped_n = int(state.get("skipped_n", -(10**9)))
        sev = state["severity"]
        det.severity = sev if sev in ("info", "warning", "critical") else None
        return det


def _scale_thresholds(threshold: float, scale_buckets: list[int], familywise: bool) -> list[float]:
    """Return the firing threshold of each scale.

    ``threshold`` applies to the shortest scale. With ``familywise``, a scale ``k`` times longer is
    tested on ``k`` times fewer independent windows a day, so its one-sided tail probability may be
    ``k`` times larger for the same false-alarm rate per day: its threshold is the normal quantile of
    that tail.
    """
    if not familywise:
        return [threshold] * len(scale_buckets)
    normal = NormalDist()
    tail = 1.0 - normal.cdf(threshold)
    shortest = min(scale_buckets)
    out = []
    for m in scale_buckets:
        p = min(tail * m / shortest, 0.5)
        out.append(max(normal.inv_cdf(1.0 - p), _MIN_THRESHOLD) if m > shortest else threshold)
    return out


def _utc(ts: datetime) -> datetime:
    """Return ``ts`` as an aware UTC datetime (naive timestamps are taken to be UTC)."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)
