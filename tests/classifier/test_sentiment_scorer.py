"""The classifier tells operators which sentiment scorer it runs: compiled inner loops or pure Python."""

from __future__ import annotations

import structlog

from tests.classifier.conftest import Apps
from veille import stories
from veille.sentiment import speedups


async def test_the_classifier_exposes_whether_its_scorer_is_compiled(apps: Apps) -> None:
    """`veille_sentiment_compiled` is 1 with the compiled module (what `make install` builds where a C
    compiler is), 0 with the pure-Python scorer (same scores, slower), so a slow image is visible."""
    app = await apps.start()
    value = app.metrics.registry.get_sample_value("veille_sentiment_compiled")
    assert value == (1.0 if speedups.MODULE is not None else 0.0)


async def test_the_classifier_logs_which_scorer_and_stories_it_runs(apps: Apps) -> None:
    """The start-up line says which sentiment scorer and which story loops run, so an operator can tell a
    slow image (no compiler at build) from a fast one."""
    with structlog.testing.capture_logs() as logs:
        await apps.start()
    lines = [line for line in logs if line.get("event") == "classifier.sentiment_scorer"]
    assert len(lines) == 1
    assert lines[0]["scorer"] == speedups.STATUS
    assert lines[0]["stories"] == ("compiled (C inner loops)" if stories.compiled() else "pure Python")
    if speedups.MODULE is not None:
        assert stories.compiled()
