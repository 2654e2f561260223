"""A bounded memo that keeps what a stream repeats: two generations, no per-hit bookkeeping.

The scorers remember what they computed per word and per whitespace-separated chunk, because a
stream of posts repeats most of its words. Clearing such a memo when it is full (the earlier policy)
throws away the frequent words with the rare ones, and every text after that pays the cold price
until they are found again; a true LRU costs a move on every hit, which the hot path cannot afford
in Python. Here, new entries go into :attr:`Memo.young`; when it holds :attr:`Memo.limit` entries it
becomes :attr:`Memo.old` (the previous old generation is dropped) and a new young one starts. A
miss in young looks in old and promotes what it finds. A key used at least once per generation
(every frequent word) is never dropped; at most ``2 × limit`` entries are held. A key longer than
``max_key`` characters (a string, or the strings of a tuple such as the tokens memo's ``(kind, text)``) is
computed every time and never held: hostile input (a megabyte without a space, or a run of twenty
thousand ``!``, many times over with other lengths) could otherwise fill the memo with huge keys and
the values built from them.

Hot paths read ``memo.young.get(key)`` directly and call :meth:`Memo.miss` only when it returns
``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Memo", "key_length"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def key_length(key: object) -> int:
    """Characters of a memo key: a string's, or the total of a tuple's strings (other keys: 0)."""
    if isinstance(key, str):
        return len(key)
    if isinstance(key, tuple):
        return sum(len(part) for part in key if isinstance(part, str))
    return 0


class Memo(Generic[K, V]):
    """A two-generation bounded memo of ``compute(key)`` (see the module docstring)."""

    __slots__ = ("compute", "limit", "max_key", "old", "young")

    def __init__(self, compute: Callable[[K], V], limit: int, *, max_key: int = 256) -> None:
        if limit < 1:
            raise ValueError(f"a memo's limit must be at least 1, got {limit}")
        self.compute = compute
        self.limit = limit
        self.max_key = max_key
        self.young: dict[K, V] = {}
        self.old: dict[K, V] = {}

    def miss(self, key: K) -> V:
        """Return the value of ``key`` when :attr:`young` does not hold it (from old, or computed)."""
        value = self.old.pop(key, None)
        if value is None:
            value = self.compute(key)
            if key_length(key) > self.max_key:
                return value  # never held (see the module docstring)
        young = self.young
        if len(young) >= self.limit:
            self.old = young
            young = self.young = {}
        young[key] = value
        return value

    def get(self, key: K) -> V:
        """Return the value of ``key``, computing it if needed."""
        value = self.young.get(key)
        return value if value is not None else self.miss(key)

    def clear(self) -> None:
        """Forget everything (both generations)."""
        self.young = {}
        self.old = {}

    def __len__(self) -> int:
        return len(self.young) + len(self.old)
