"""Stopping background tasks for sure: :func:`cancel_and_wait`.

A service stops its loops (consumer lag, partition leases, silences watch, ticker, pollers) by
cancelling their tasks and awaiting them. On Python 3.11 one cancellation is not always enough:
``asyncio.wait_for`` returns the awaited result, swallowing the cancellation, when that result arrived
in the same turn of the event loop as the cancel (CPython gh-86296, fixed in 3.12 by a new
``wait_for``). nats-py's ``request`` (every ``consumer_info``, KV get, stream info) and KV watchers are
built on ``wait_for``, so a loop cancelled just as a reply came in goes on running, and
``task.cancel(); await task`` never returns: a ``docker stop`` then has to kill the service. It was seen
as rare hangs of the notifier's and the RSS ingester's ``stop()`` in CI. nats-py's ``publish`` can
swallow one too, at any time, when it waits for its flusher (``_flush_pending`` passes on
``CancelledError``).

:func:`cancel_and_wait` cancels again any task still running after ``grace`` seconds, and after
``timeout`` seconds gives up on it with an error log naming it, so that a stop always returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

__all__ = ["cancel_and_wait"]

log = structlog.get_logger("veille.tasks")


async def cancel_and_wait(
    tasks: Iterable[asyncio.Task[object] | None], *, grace: float = 0.5, timeout: float = 10.0
) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and wait until each has ended.

    A task still running ``grace`` seconds after a cancel (it swallowed it, or its clean-up is slow: give
    a task that cleans up on cancellation a ``grace`` long enough for it) is cancelled again, with a
    warning the first time; one still running after ``timeout`` seconds is left behind with an error
    log. A task that failed has its exception logged (a warning), not raised: a stop goes on. If the
    caller is cancelled while it waits, the tasks still running are cancelled once more (as awaiting a
    task would pass the cancellation on) and the caller's cancellation is raised.
    """
    given = [task for task in tasks if task is not None]
    pending = {task for task in given if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    warned: set[asyncio.Task[object]] = set()
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=max(0.0, min(grace, deadline - loop.time())))
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            raise
        if not pending:
            break
        if loop.time() >= deadline:
            log.error("tasks.abandoned", tasks=sorted(task.get_name() for task in pending), timeout=timeout)
            break
        if pending - warned:
            log.warning("tasks.cancel_ignored", tasks=sorted(task.get_name() for task in pending - warned))
            warned |= pending
    for task in given:
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("tasks.failed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")
