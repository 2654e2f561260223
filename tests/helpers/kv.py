"""The live keys of a JetStream key-value bucket, read without nats-py's ``KeyValue.keys()``.

``keys()`` opens an ordered consumer and decides there are no keys when the consumer's info shows nothing
pending and its callback has not run yet; under load the one message can be in flight at that moment, and
``keys()`` raises ``NoKeysError`` for a bucket that holds a key (seen in CI: a notifier test failed so with the
group it had just written). Here the bucket's subjects come from the stream's own index, as the notifier reads
them (``services.notifier.model.kv_keys``: one STREAM.INFO with a subject filter, deleted keys included), and
each key is read by a direct get, so a deleted or purged key is left out as ``keys()`` would."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError

from services.notifier.model import kv_keys

__all__ = ["live_kv_keys"]


async def live_kv_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """The keys of ``bucket`` that hold a value, sorted."""
    kv = await js.key_value(bucket)
    keys = []
    for key in await kv_keys(js, bucket):
        try:
            await kv.get(key)
        except (KeyDeletedError, KeyNotFoundError):
            continue
        keys.append(key)
    return keys
