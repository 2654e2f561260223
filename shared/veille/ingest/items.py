"""Malformed items: one bad item of a page is dead-lettered, never the end of its target.

A source maps each item it received (an Algolia hit, a Mastodon status, a Jetstream event ...)
to a mention. An item that cannot be mapped (a title that is a number, content that is an
object, a timestamp past the year 9999, no id) is *malformed*: the mapping raises
:class:`MalformedItem` with a clear reason and a short ``kind``. Sources map through
:class:`ItemMapper` (or functions decorated with :func:`item_mapping`), which turns any
``ValueError``, ``TypeError``, ``LookupError``, ``AttributeError``, ``ArithmeticError`` or
``RecursionError`` escaping a mapping into :class:`MalformedItem` too, so a forgotten check costs
one item, not the whole poll. The malformed items travel in :attr:`PollResult.malformed
<veille.ingest.runner.PollResult.malformed>`; the framework publishes the good mentions,
dead-letters each malformed item with its raw payload and reason, counts it, and only then saves
the cursor, which has moved past it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "MALFORMED_ERRORS",
    "ItemMapper",
    "MalformedItem",
    "RejectedItem",
    "a_type_name",
    "item_mapping",
    "optional_text",
    "type_name",
]

MALFORMED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # pydantic's ValidationError, UnicodeError, int("²") ...
    TypeError,
    LookupError,  # KeyError, IndexError
    AttributeError,
    ArithmeticError,  # OverflowError from far-future timestamps
    RecursionError,
)
"""Errors that, escaping an item's mapping, mean the item is malformed (not that the poll failed)."""

DEAD_LETTER_KIND = "malformed_item"
"""The dead-letter kind (``veille.dlq.<service>.malformed_item``) of every malformed item."""

P = ParamSpec("P")
T = TypeVar("T")


class MalformedItem(ValueError):
    """An item a source sent that cannot become a mention; ``kind`` is a short metric label."""

    def __init__(self, reason: str, *, kind: str = "malformed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def type_name(value: Any) -> str:
    """The JSON name of ``value``'s type, for reasons: ``object``, ``array``, ``number`` ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def a_type_name(value: Any) -> str:
    """:func:`type_name` with its article, for reasons: ``an object``, ``a number``, ``null``."""
    name = type_name(value)
    if name == "null":
        return name
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def optional_text(item: dict[str, Any], name: str) -> str | None:
    """The string field ``name`` of ``item`` (None when absent or null); malformed when of another type."""
    value = item.get(name)
    if value is None or isinstance(value, str):
        return value
    raise MalformedItem(f"field {name!r} is {a_type_name(value)}, expected a string", kind="wrong_type")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    return f"{type(exc).__name__}: {text}"[:1000]


def item_mapping(fn: Callable[P, T]) -> Callable[P, T]:
    """Decorate a mapping function so any error it lets escape is a :class:`MalformedItem`."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except MalformedItem:
            raise
        except MALFORMED_ERRORS as exc:
            raise MalformedItem(_reason(exc)) from exc

    return wrapper


@dataclass(frozen=True)
class RejectedItem:
    """A malformed item as received, with why it was refused."""

    raw: Any
    reason: str
    kind: str = "malformed"

    def payload(self) -> bytes:
        """The raw item as bytes: JSON for a decoded item, the text itself for an undecodable one."""
        if isinstance(self.raw, bytes):
            return self.raw
        if isinstance(self.raw, str):
            return self.raw.encode("utf-8", errors="replace")
        try:
            return json.dumps(self.raw, ensure_ascii=False, separators=(",", ":"), default=repr).encode(
                "utf-8", errors="replace"
            )
        except (ValueError, TypeError, RecursionError):
            return repr(self.raw).encode("utf-8", errors="replace")

    def item_id(self, source: str) -> str:
        """A stable id of this item (its source and content), so a re-served item is dead-lettered once."""
        return f"item:{source}:{hashlib.sha256(self.payload()).hexdigest()[:32]}"


@dataclass
class ItemMapper:
    """Maps a page's items one by one; a malformed one is kept in :attr:`malformed`, the others go on."""

    malformed: list[RejectedItem] = field(default_factory=list)

    def map(self, fn: Callable[..., T], raw: Any, *args: Any, **kwargs: Any) -> T | None:
        """``fn(raw, *args, **kwargs)``, or None (and ``raw`` kept as malformed) if it raised."""
        try:
            return fn(raw, *args, **kwargs)
        except MalformedItem as exc:
            self.reject(raw, exc.reason, kind=exc.kind)
        except MALFORMED_ERRORS as exc:
            self.reject(raw, _reason(exc))
        return None

    def unseen(self, source: str, seen: Any) -> list[RejectedItem]:
        """The malformed items whose :meth:`RejectedItem.item_id` is not in ``seen`` (a cursor's list of ids).

        Sources whose cursor remembers the ids it handled also remember these, so an item served
        again (an overlapping time window) is not dead-lettered again.
        """
        known = {s for s in seen if isinstance(s, str)} if isinstance(seen, list) else set()
        out: list[RejectedItem] = []
        for item in self.malformed:
            item_id = item.item_id(source)
            if item_id not in known:
                known.add(item_id)
                out.append(item)
        return out

    def reject(self, raw: Any, reason: str, *, kind: str = "malformed") -> None:
        """Keep ``raw`` as a malformed item (an undecodable event, say)."""
        self.malformed.append(RejectedItem(raw, reason, kind))
