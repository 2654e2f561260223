"""Feed parsing off the event loop: a few worker processes, and a time budget per document.

feedparser is pure-Python and CPU-bound, and some documents make it very slow (quadratic in the
attributes of one element; a megabyte of inline markup takes seconds). Run on the event loop, one
such feed would freeze the service: no health probes, no other feed, publishes timing out.

:class:`FeedParserPool` runs :func:`services.ingest_rss.logic.parse_feed` in worker processes.
Each worker is its own single-process :class:`~concurrent.futures.ProcessPoolExecutor`, so a parse
over its budget is stopped by killing exactly that process (a thread could not be stopped) and a
fresh worker takes its place; the feed gets a ``parse_timeout`` error and the next poll tries again.
Workers are started (and warmed up) before they take a document, so a document's budget is spent
on parsing it, never on starting Python. A worker is retired after ``PARSE_JOBS_PER_WORKER`` documents
and a fresh one takes its place: a parser process's heap only grows to the largest document it has
seen and fragments over months of polls, and a new process gives that memory back (the same reason
as ``maxtasksperchild`` in :mod:`multiprocessing`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from services.ingest_rss.logic import MAX_ENTRIES, ParsedFeed, parse_feed
from veille.ingest.http import FetchError

__all__ = ["PARSE_BUDGET", "PARSE_WORKERS", "FeedParserPool"]

PARSE_WORKERS = 2
PARSE_BUDGET = 15.0
"""Seconds one document may take to parse (a real 1 MB feed takes well under one)."""
PARSE_JOBS_PER_WORKER = 1000
"""Documents a worker parses before it is replaced (about a day of 50 feeds polled every 5 minutes)."""
_START_TIMEOUT = 120.0
_RESTART_DELAY = 5.0

log = structlog.get_logger("ingest_rss")


@dataclass(frozen=True)
class _Refused:
    """A :class:`FetchError` raised in a worker, sent back as a value (the exception does not pickle)."""

    kind: str
    message: str
    retryable: bool


def _ready() -> bool:
    """The warm-up job: importing this module in the worker has loaded feedparser and the models."""
    return True


def _parse_in_worker(body: bytes, options: dict[str, Any]) -> ParsedFeed | _Refused:
    """Run in a worker process: parse, and turn any error into a value the parent can read."""
    try:
        return parse_feed(body, **options)
    except FetchError as exc:
        return _Refused(exc.kind, exc.message, exc.retryable)
    except Exception as exc:  # a parser bug on a strange document: reported, not fatal
        detail = "".join(traceback.format_exception_only(exc)).strip()
        return _Refused("parse_failed", f"the parser failed on this document: {detail[:500]}", True)


class _Worker:
    """One worker process behind a one-process executor, so it can be killed alone."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=context)
        self.jobs = 0

    def kill(self) -> None:
        """Kill the process (whatever it is doing) and drop the executor."""
        # No public way to kill an executor's workers before Python 3.14 (kill_workers()).
        processes = list(getattr(self.executor, "_processes", None) or {})
        for process in (getattr(self.executor, "_processes", None) or {}).values():
            if process.is_alive():
                process.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.debug("ingest_rss.parser_killed", pids=processes)


class FeedParserPool:
    """A small pool of parser processes with a time budget per document.

    Create it at the composition root, call :meth:`shutdown` when the service stops. Workers
    start lazily on the first :meth:`parse` (inside the running event loop).
    """

    def __init__(
        self,
        *,
        workers: int = PARSE_WORKERS,
        budget: float = PARSE_BUDGET,
        max_entries: int | None = MAX_ENTRIES,
        jobs_per_worker: int = PARSE_JOBS_PER_WORKER,
        on_restart: Callable[[str], None] | None = None,
        start_method: str = "forkserver",
    ) -> None:
        if workers < 1:
            raise ValueError("a parser pool needs at least one worker")
        if jobs_per_worker < 1:
            raise ValueError("a parser worker must be allowed at least one document")
        self.jobs_per_worker = jobs_per_worker
        self.workers = workers
        self.budget = budget
        self.max_entries = max_entries
        self._on_restart = on_restart
        # Not fork: forking a process that runs an event loop and threads is unsafe. A forkserver
        # (a clean process that has imported the parser once) forks each worker in milliseconds.
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._context.set_forkserver_preload([__name__])
        self._free: asyncio.Queue[_Worker] | None = None
        self._all: set[_Worker] = set()
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    async def parse(self, body: bytes, *, url: str, kind: str, watch: str | None, now: datetime) -> ParsedFeed:
        """Parse ``body`` in a worker; raise :class:`FetchError` if refused, over budget, or crashed."""
        if self._closed:
            raise FetchError("internal", "the feed parser pool is shut down")
        free = self._ensure_started()
        worker = await free.get()
        options = {"url": url, "kind": kind, "watch": watch, "now": now, "max_entries": self.max_entries}
        try:
            future = worker.executor.submit(_parse_in_worker, body, options)
            result: ParsedFeed | _Refused = await asyncio.wait_for(asyncio.wrap_future(future), self.budget)
        except TimeoutError:
            self._replace(worker, "over_budget")
            raise FetchError(
                "parse_timeout",
                f"parsing the {len(body)}-byte document took more than {self.budget:g} s; "
                "the parser process was stopped (a parser bomb?); the next poll tries again",
                retryable=False,
            ) from None
        except BrokenProcessPool:
            self._replace(worker, "crashed")
            raise FetchError(
                "parse_failed",
                f"the parser process died while parsing the {len(body)}-byte document (out of memory?)",
                retryable=False,
            ) from None
        except BaseException:  # cancelled (the service stops): the worker may still be busy
            self._replace(worker, "cancelled")
            raise
        worker.jobs += 1
        if worker.jobs >= self.jobs_per_worker:
            self._replace(worker, "recycled")
        else:
            free.put_nowait(worker)
        if isinstance(result, _Refused):
            raise FetchError(result.kind, result.message, retryable=result.retryable)
        return result

    def shutdown(self) -> None:
        """Stop every worker now (a parse in flight is abandoned; its feed is polled again later)."""
        self._closed = True
        for task in self._starting:
            task.cancel()
        for worker in list(self._all):
            worker.kill()
        self._all.clear()

    # ------------------------------------------------------------------ workers

    def _ensure_started(self) -> asyncio.Queue[_Worker]:
        if self._free is None:
            self._free = asyncio.Queue()
            for _ in range(self.workers):
                self._spawn()
        return self._free

    def _spawn(self, delay: float = 0.0) -> None:
        task = asyncio.get_running_loop().create_task(self._start_worker(delay), name="ingest-rss:parser-start")
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start_worker(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._closed:
            return
        worker = _Worker(self._context)
        self._all.add(worker)
        try:
            await asyncio.wait_for(asyncio.wrap_future(worker.executor.submit(_ready)), _START_TIMEOUT)
        except asyncio.CancelledError:
            self._all.discard(worker)
            worker.kill()
            raise
        except Exception as exc:
            log.error("ingest_rss.parser_start_failed", error=f"{type(exc).__name__}: {exc}")
            self._all.discard(worker)
            worker.kill()
            self._spawn(_RESTART_DELAY)
            return
        if self._closed:
            self._all.discard(worker)
            worker.kill()
            return
        assert self._free is not None
        self._free.put_nowait(worker)

    def _replace(self, worker: _Worker, reason: str) -> None:
        """Kill ``worker`` and start a fresh one in its place."""
        self._all.discard(worker)
        worker.kill()
        if self._on_restart is not None:
            self._on_restart(reason)
        if reason == "recycled":
            log.info("ingest_rss.parser_recycled", jobs=worker.jobs)
        elif reason != "cancelled":
            log.warning("ingest_rss.parser_restarted", reason=reason, budget_s=self.budget)
        if not self._closed:
            self._spawn()
