"""Cursors kept in the KV bucket, one key per (source, feed or watch), so restarts resume exactly.

A cursor is a small JSON object whose shape belongs to the source (``etag``, ``seen`` ids,
``created_at_i``, ``min_id``, ``time_us`` ...). The ingestor saves it only after every mention it
covers was acknowledged by the stream, so a crash in between republishes (and JetStream drops the
duplicate by ``Nats-Msg-Id``) rather than losing anything.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Protocol

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from veille import bus

__all__ = ["Cursor", "CursorStore", "KvCursorStore", "MemoryCursorStore", "cursor_key"]

Cursor = dict[str, Any]

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def cursor_key(source: str, *parts: str) -> str:
    """A valid, stable KV key for ``source`` and the parts naming a feed or watch.

    Readable parts are kept (shortened); a hash of the exact parts keeps distinct targets apart.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]
    readable = "_".join(_KEY_UNSAFE.sub("_", p).strip("_")[:40] for p in parts if p)
    readable = readable[:80] or "_"
    return f"{_KEY_UNSAFE.sub('_', source)}.{readable}.{digest}"


class CursorStore(Protocol):
    """Where cursors live."""

    async def load(self, key: str) -> Cursor:
        """The cursor saved under ``key``, or an empty one."""

    async def save(self, key: str, cursor: Cursor) -> None:
        """Save ``cursor`` under ``key``."""


class KvCursorStore:
    """Cursors in the JetStream KV bucket declared in :mod:`veille.bus`."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext) -> KvCursorStore:
        """Open the cursors bucket (``ensure_topology`` creates it)."""
        return cls(await js.key_value(bus.CURSORS.name))

    async def load(self, key: str) -> Cursor:
        """The cursor saved under ``key``, or an empty one (also when the stored value is corrupt)."""
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return {}
        if not entry.value:
            return {}
        try:
            value = json.loads(entry.value)
        except (ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    async def save(self, key: str, cursor: Cursor) -> None:
        """Save ``cursor`` under ``key``."""
        await self.kv.put(key, json.dumps(cursor, separators=(",", ":"), sort_keys=True).encode())


class MemoryCursorStore:
    """Cursors in a dict, for unit tests of one source."""

    def __init__(self) -> None:
        self.data: dict[str, Cursor] = {}

    async def load(self, key: str) -> Cursor:
        """The cursor saved under ``key``, or an empty one."""
        return json.loads(json.dumps(self.data.get(key, {})))  # type: ignore[no-any-return]

    async def save(self, key: str, cursor: Cursor) -> None:
        """Save a copy of ``cursor`` under ``key``."""
        self.data[key] = json.loads(json.dumps(cursor))
