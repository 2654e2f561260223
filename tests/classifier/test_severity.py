"""Alert severity grows with what is at stake: one negative mention < a surge < a large negative surge."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from nats.js import JetStreamContext

from services.classifier.surges import surge_severity
from tests.classifier.conftest import (
    CONFIG,
    END_MINUTES,
    Apps,
    alerts_in_stream,
    at,
    caught_up,
    publish_mentions,
    series,
)
from veille.config import ConfigError, SeverityPolicy, parse_config
from veille.natsserver import NatsServerProcess
from veille.sentiment.base import SentimentResult

DEFAULT = SeverityPolicy()


class RecallIsNegative:
    """A sentiment backend for the test series: the recall wire story is negative, the rest neutral."""

    name = "recall-is-negative"

    def analyze(self, text: str, lang: str | None = None) -> SentimentResult:
        """Negative (-0.9) for the recall story, neutral otherwise."""
        return SentimentResult("negative", -0.9) if "recalls" in text else SentimentResult("neutral", 0.0)

    def analyze_many(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[SentimentResult]:
        """:meth:`analyze` of each text."""
        return [self.analyze(t) for t in texts]


TWO_WATCHES = (
    CONFIG.replace("negative_alerts: false", "negative_alerts: true")
    + """\
  - name: acme-calm
    query: '"acme corp" OR acme'
    spike:
      bucket: 60
      daily_slot: 3600
      warmup: 3600
      scales: [300, 900]
      resolve_after: 300
      refire_after: 600
      severity_window: 300
      weekly: false
    severity:
      negative_mention: warning
      volume_spike: info
      negative_spike: warning
      critical_ratio: null
"""
)


def test_a_large_negative_surge_is_critical() -> None:
    """119 negative mentions in 5 min against 37 expected (3.2x) is critical by default."""
    assert surge_severity(DEFAULT, "negative_spike", 119, 37, 0.6) == "critical"


def test_a_small_surge_is_a_warning() -> None:
    """A surge that is not large (12 against 4 expected), or large but not negative, stays a warning."""
    assert surge_severity(DEFAULT, "negative_spike", 12, 4, 1.0) == "warning"
    assert surge_severity(DEFAULT, "volume_spike", 12, 4, 0.9) == "warning"
    assert surge_severity(DEFAULT, "volume_spike", 400, 40, 0.1) == "warning"
    assert surge_severity(DEFAULT, "volume_spike", 400, 40, 0.7) == "critical"


def test_a_per_watch_policy_overrides_the_defaults() -> None:
    """A watch's own levels and thresholds decide instead of the defaults."""
    calm = SeverityPolicy(negative_spike="info", critical_ratio=None)
    assert surge_severity(calm, "negative_spike", 1000, 10, 1.0) == "info"
    touchy = SeverityPolicy(critical_ratio=1.5, critical_excess=5)
    assert surge_severity(touchy, "negative_spike", 12, 4, 1.0) == "critical"
    always = SeverityPolicy(volume_spike="critical")
    assert surge_severity(always, "volume_spike", 12, 4, 0.0) == "critical"


def test_a_misspelt_severity_setting_is_refused() -> None:
    """An unknown key or level in a watch's severity is a configuration error naming it."""
    bad = "version: 1\nwatches:\n  - name: acme\n    query: acme\n    severity: {negative_mention: high}\n"
    with pytest.raises(ConfigError, match="negative_mention"):
        parse_config(bad)
    bad = "version: 1\nwatches:\n  - name: acme\n    query: acme\n    severity: {surge: warning}\n"
    with pytest.raises(ConfigError, match="surge"):
        parse_config(bad)


async def test_severities_of_a_negative_crisis_on_a_real_classifier(
    nats_server: NatsServerProcess, js: JetStreamContext, tmp_path: Path
) -> None:
    """On a real nats-server, a large negative surge is critical and its mentions info; another watch's policy wins."""
    apps = Apps(nats_server.url, parse_config(TWO_WATCHES))
    app = await apps.start(sentiment=RecallIsNegative())
    try:
        await publish_mentions(js, series())
        await caught_up(js)
        apps.clock.now = at(END_MINUTES + 30)
        await app.tick()
        alerts = [a for a in await alerts_in_stream(js) if a.status == "firing"]
    finally:
        await apps.stop(app)

    def severities(watch: str, kind: str) -> set[str]:
        return {a.severity for a in alerts if a.watch == watch and a.kind == kind}

    assert severities("acme", "negative_spike") == {"critical"}, [a.summary for a in alerts]
    assert severities("acme", "volume_spike") == {"critical"}  # mostly the negative recall story
    assert severities("acme", "negative_mention") == {"info"}
    assert severities("acme-calm", "negative_spike") == {"warning"}
    assert severities("acme-calm", "volume_spike") == {"info"}
    assert severities("acme-calm", "negative_mention") == {"warning"}
