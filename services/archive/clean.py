"""Bad input made storable: what the database would refuse is cleaned, counted and stored, never a crash.

- NUL characters: PostgreSQL's ``text`` refuses them (``invalid byte sequence for encoding "UTF8":
  0x00``), SQLite would store them and FTS5 would cut the text there: removed.
- Lone surrogates (``"\\ud800"`` in the JSON, which Python's ``json`` accepts): no UTF-8 encoding
  exists for them, the drivers raise ``UnicodeEncodeError``: each becomes U+FFFD.
- Over-long strings: cut to the message contract's bounds (:mod:`veille.models`), with its
  truncation marker; a string longer than the contract even accepts (1,000,000 characters) is cut
  before validation so the mention is stored rather than dead-lettered.

Every change is tallied by (field, action) for ``veille_archive_fields_cleaned_total``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from veille.models import truncate

__all__ = ["MAX_STRING", "Cleaner", "decode"]

MAX_STRING = 1_000_000
"""Longest string the message models accept (``str_max_length``)."""

_SURROGATE = re.compile("[\ud800-\udfff]")

M = TypeVar("M", bound=BaseModel)


class Cleaner:
    """Cleans strings for the database and counts what it changed."""

    def __init__(self) -> None:
        self.tally: Counter[tuple[str, str]] = Counter()

    def text(self, field: str, value: str | None, limit: int | None = None) -> str | None:
        """``value`` without NULs or lone surrogates, cut to ``limit`` characters."""
        if value is None:
            return None
        if "\x00" in value:
            value = value.replace("\x00", "")
            self.tally[field, "nul_removed"] += 1
        if not value.isascii() and _SURROGATE.search(value):
            value = _SURROGATE.sub("\ufffd", value)
            self.tally[field, "surrogate_replaced"] += 1
        if limit is not None and len(value) > limit:
            value = truncate(value, limit)
            self.tally[field, "truncated"] += 1
        return value

    def deep(self, field: str, value: Any) -> Any:
        """A JSON value with every string cleaned (keys too)."""
        if isinstance(value, str):
            return self.text(field, value)
        if isinstance(value, list):
            return [self.deep(field, item) for item in value]
        if isinstance(value, dict):
            return {self.text(field, str(k)): self.deep(field, v) for k, v in value.items()}
        return value

    def take(self) -> Counter[tuple[str, str]]:
        """The tally so far, reset."""
        out, self.tally = self.tally, Counter()
        return out


def _scrub(value: Any, cleaner: Cleaner, path: str = "message") -> Any:
    """Strings over the contract's limit cut, lone surrogates replaced (pydantic refuses both)."""
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            value = _SURROGATE.sub("\ufffd", value)
            cleaner.tally[path, "surrogate_replaced"] += 1
        if len(value) > MAX_STRING:
            cleaner.tally[path, "truncated"] += 1
            return truncate(value, MAX_STRING)
        return value
    if isinstance(value, list):
        return [_scrub(item, cleaner, path) for item in value]
    if isinstance(value, dict):
        return {
            _scrub(str(k), cleaner, path): _scrub(v, cleaner, f"{path}.{k}" if path.count(".") < 2 else path)
            for k, v in value.items()
        }
    return value


def decode(model: type[M], data: bytes, cleaner: Cleaner) -> M | tuple[str, str]:
    """The message in ``data`` as ``model``, repaired where it can be; else (kind, reason) for a dead letter.

    The fast path is pydantic's own JSON parser. When it refuses, the payload is read again with
    Python's (which keeps lone surrogates), invalid UTF-8 and lone surrogates replaced, strings over
    the contract's limit cut, and validated once more: only what is still not a valid message is dead-lettered.
    """
    try:
        return model.model_validate_json(data)
    except ValidationError:
        pass
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        cleaner.tally["message", "invalid_utf8_replaced"] += 1
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return "invalid_json", f"payload is not JSON ({type(exc).__name__}: {str(exc)[:200]})"
    if not isinstance(value, dict):
        return "invalid_schema", f"payload is a JSON {type(value).__name__}, not an object"
    value = _scrub(value, cleaner)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())) or '(body)'}: {e.get('msg')}" for e in exc.errors()[:5]
        )
        return "invalid_schema", f"not a valid message: {details}"
