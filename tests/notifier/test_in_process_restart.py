"""A notifier started and stopped inside a process leaves nothing behind (tests and embedders do this).

The collector setting a service process takes once started (``veille.service.settle_collector``) freezes the
heap: an app frozen with it would stay in memory after its stop. It is taken by ``veille run`` (``serve`` with
``settle=True``), never by ``NotifierApp.start``.
"""

from __future__ import annotations

import gc
import weakref

from services.notifier.app import NotifierApp, NotifierSettings, create_app
from tests.notifier.conftest import webhook_config
from veille.natsserver import NatsServerProcess


async def started_and_stopped(url: str, instance: str) -> weakref.ref[NotifierApp]:
    settings = NotifierSettings(nats_url=url, instance=instance, notifier_tick=0.0)
    app = create_app(settings, config=webhook_config("http://127.0.0.1:9/hook"))
    await app.start()
    await app.stop()
    return weakref.ref(app)


async def test_a_stopped_notifier_is_freed_and_the_collector_left_as_it_was(nats_server: NatsServerProcess) -> None:
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    gone = [await started_and_stopped(nats_server.url, instance) for instance in ("first", "second")]
    gc.collect()
    assert [ref() for ref in gone] == [None, None]
    assert gc.get_threshold() == threshold and gc.get_freeze_count() == frozen
