"""The keys of a JetStream key-value bucket, read without nats-py's ``KeyValue.keys()``.

``keys()`` opens an ordered consumer and decides there are no keys when the consumer's info shows nothing
pending and its callback has not run yet; under load the one message can be in flight at that moment, and
``keys()`` raises ``NoKeysError`` for a bucket that holds a key (seen in CI: a notifier test failed so with the
group it had just written). Here the bucket's stream is asked for its subjects (``STREAM.INFO`` with a subject
filter, answered from the stream's own index), and each key is read by a direct get, so a deleted or purged
key is left out as ``keys()`` would."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.errors import KeyDeletedError, KeyNotFoundError

__all__ = ["kv_keys"]


async def kv_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """The live keys of ``bucket``, sorted."""
    prefix = f"$KV.{bucket}."
    info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    kv = await js.key_value(bucket)
    keys = []
    for subject in sorted(info.state.subjects or {}):
        key = subject[len(prefix) :]
        try:
            await kv.get(key)
        except (KeyDeletedError, KeyNotFoundError):
            continue
        keys.append(key)
    return keys
