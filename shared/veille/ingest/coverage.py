"""Watches a source cannot search, told once at start: a log line and ``veille_source_watch_untargeted``.

A watch allowed on a source may still give that source nothing to ask for: no hashtag can be made
from its terms (Mastodon), or no term is long enough (GDELT wants 3 letters). Such a watch gets
no mention from the source, silently, unless it is said: :func:`report_untargeted` logs one
``ingest.watch_untargeted`` warning per watch when the service is built and sets the gauge to 1
for as long as the service runs with that configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import structlog

from veille.ingest.metrics import IngestMetrics

__all__ = ["report_untargeted"]

log = structlog.get_logger("veille.ingest")


def report_untargeted(
    source: str, metrics: IngestMetrics, watches: Iterable[str], untargeted: Mapping[str, str]
) -> list[str]:
    """Log and count the watches of ``untargeted`` (name to reason); return their names.

    ``watches`` are all the watches the source serves: each gets the gauge (0 or 1), so a
    watch fixed in a new configuration reads 0 rather than keeping an old 1.
    """
    names = []
    for watch in watches:
        reason = untargeted.get(watch)
        metrics.watch_untargeted.labels(source, watch).set(1 if reason else 0)
        if reason:
            names.append(watch)
            log.warning("ingest.watch_untargeted", source=source, watch=watch, reason=reason)
    return names
