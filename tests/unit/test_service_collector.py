"""The collector setting every busy service takes once started (``settle_collector``).

What an operator would notice if it were wrong: a process whose memory grows with garbage that is never
collected (reference cycles kept forever), or one that forgets what it loaded. Both are checked here; the
CPU it saves is a benchmark's figure (docs/benchmarks.md), not a test's.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator

import httpx
import pytest

from veille.service import YOUNG_COLLECTION, settle_collector


@pytest.fixture
def collector() -> Iterator[None]:
    """The process's collector as it was, restored after the test (pytest shares one interpreter)."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    """An object in a reference cycle: reference counting alone never frees it."""

    def __init__(self) -> None:
        self.me = self


def test_garbage_in_cycles_is_still_collected_without_being_asked(collector: None) -> None:
    settle_collector()
    freed = 0

    def count(_: object) -> None:
        nonlocal freed
        freed += 1

    made = 4 * YOUNG_COLLECTION
    refs = []
    for _ in range(made):
        node = Node()
        refs.append(weakref.ref(node, count))
        del node
    # Every cycle made before the last young collection is gone; at most one threshold's worth waits
    # for the next one (each Node allocates three tracked objects: itself, its __dict__, its weakref).
    assert freed >= made - YOUNG_COLLECTION


def test_what_the_process_held_is_frozen_out_of_the_collectors_way_and_stays_usable(collector: None) -> None:
    kept = {"lexicon": [[i] for i in range(1_000)]}
    settle_collector()
    assert gc.get_freeze_count() >= 1_000
    first = kept["lexicon"][0]
    assert gc.is_tracked(first)
    assert not any(o is first for o in gc.get_objects())  # the generations walked hold it no more
    assert kept["lexicon"][999] == [999]


def test_a_higher_threshold_already_set_is_kept(collector: None) -> None:
    gc.set_threshold(10 * YOUNG_COLLECTION, 10, 10)
    settle_collector()
    assert gc.get_threshold()[0] == 10 * YOUNG_COLLECTION


class QuietApp:
    """A service with nothing to connect: what ``serve`` needs of an app."""

    def __init__(self) -> None:
        from veille.health import Health
        from veille.metrics import ServiceMetrics

        self.name = "probe"
        self.metrics = ServiceMetrics("probe")
        self.health = Health()

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing in flight."""


@pytest.mark.parametrize("settle", [True, False])
async def test_serve_settles_the_collector_once_started_only_when_asked(collector: None, settle: bool) -> None:
    """``veille run`` (``run_service``) asks for it; a test or an embedder running ``serve`` in turn does not."""
    from veille.natsserver import free_port
    from veille.service import serve
    from veille.settings import ServiceSettings

    gc.set_threshold(700, 10, 10)
    port = free_port()
    stop = asyncio.Event()
    running = asyncio.create_task(serve(QuietApp(), ServiceSettings(http_port=port), stop, settle=settle))
    async with httpx.AsyncClient(timeout=5) as client:
        for _ in range(200):  # until /readyz says the service has started
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        assert (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
    stop.set()
    await asyncio.wait_for(running, 30)
    assert (gc.get_threshold()[0] == YOUNG_COLLECTION) is settle
