"""The classifier tells operators which sentiment scorer it runs: compiled inner loops or pure Python."""

from __future__ import annotations

from tests.classifier.conftest import Apps
from veille.sentiment import speedups


async def test_the_classifier_exposes_whether_its_scorer_is_compiled(apps: Apps) -> None:
    """`veille_sentiment_compiled` is 1 with the compiled module (what `make install` builds where a C
    compiler is), 0 with the pure-Python scorer (same scores, slower), so a slow image is visible."""
    app = await apps.start()
    value = app.metrics.registry.get_sample_value("veille_sentiment_compiled")
    assert value == (1.0 if speedups.MODULE is not None else 0.0)
