"""Parser worker processes are retired after a number of documents, so their heaps do not grow for months."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_rss_hostile import big_feed

from services.ingest_rss.parsing import FeedParserPool

pytestmark = pytest.mark.integration

NOW = datetime(2025, 6, 2, tzinfo=UTC)


def worker_pids(pool: FeedParserPool) -> set[int]:
    """The pids of the pool's parser processes."""
    return {pid for worker in pool._all for pid in (getattr(worker.executor, "_processes", None) or {})}


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_a_worker_is_replaced_after_its_share_of_documents_and_every_document_is_parsed() -> None:
    reasons: list[str] = []
    pool = FeedParserPool(workers=1, jobs_per_worker=2, on_restart=reasons.append)
    seen: list[int] = []
    try:
        for i in range(5):
            parsed = await pool.parse(big_feed(3 + i), url=f"http://127.0.0.1/f{i}", kind="feed", watch=None, now=NOW)
            assert len(parsed.mentions) == 3 + i
            seen.extend(worker_pids(pool) - set(seen))
    finally:
        pool.shutdown()
    assert reasons == ["recycled", "recycled"]  # after documents 2 and 4
    assert len(seen) == 3  # three processes in turn, none of the retired ones left running
    assert not any(running(pid) for pid in seen[:2])


def test_a_worker_must_be_allowed_one_document() -> None:
    with pytest.raises(ValueError, match="at least one document"):
        FeedParserPool(jobs_per_worker=0)
