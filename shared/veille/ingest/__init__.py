"""The ingestor framework: what every source service shares.

- :mod:`veille.ingest.http`: bounded fetching (size cap, deadline, conditional GET, rate limits,
  ``Retry-After``), failures as :class:`FetchError` with a metric-friendly ``kind``;
- :mod:`veille.ingest.backoff`: poll intervals with jitter and exponential backoff;
- :mod:`veille.ingest.cursors`: cursors in the KV bucket, one key per (source, feed or watch);
- :mod:`veille.ingest.runner`: :class:`IngestService`, scheduling, publishing, metrics, health;
- :mod:`veille.ingest.items`: per-item mapping where a malformed item is dead-lettered, not fatal;
- :mod:`veille.ingest.matching`: local re-check with the query engine, query translation helpers;
- :mod:`veille.ingest.xmlsafe`, :mod:`veille.ingest.textclean`, :mod:`veille.ingest.urls`: safe
  input handling.
"""

from veille.ingest.backoff import Backoff, jittered
from veille.ingest.cursors import Cursor, CursorStore, KvCursorStore, MemoryCursorStore, cursor_key
from veille.ingest.http import Fetcher, FetchError, RateLimiter, Response, parse_retry_after
from veille.ingest.items import ItemMapper, MalformedItem, RejectedItem, item_mapping
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import (
    IngestContext,
    IngestService,
    PollingSource,
    PollOutcome,
    PollResult,
    StreamingSource,
    Target,
)

__all__ = [
    "Backoff",
    "Cursor",
    "CursorStore",
    "FetchError",
    "Fetcher",
    "IngestContext",
    "IngestMetrics",
    "IngestService",
    "ItemMapper",
    "KvCursorStore",
    "MalformedItem",
    "MemoryCursorStore",
    "PollOutcome",
    "PollResult",
    "PollingSource",
    "RateLimiter",
    "RejectedItem",
    "Response",
    "StreamingSource",
    "Target",
    "cursor_key",
    "item_mapping",
    "jittered",
    "parse_retry_after",
]
