"""Human durations (``30s``, ``5m``, ``2h``, ``7d``) as used in the YAML config and on the command line."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, TypeAdapter, ValidationError

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ISO: TypeAdapter[timedelta] = TypeAdapter(timedelta)


def parse_duration(value: Any) -> timedelta:
    """Parse ``90s``, ``5m``, ``1h30m``, ``7d``, ISO 8601 (``PT5M``), a number of seconds or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration such as 30s, 5m, 2h or 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("a duration such as 30s, 5m, 2h or 7d")
    text = value.strip().lower().replace(" ", "")
    if text.startswith("p"):  # ISO 8601 (PT5M), which the detector settings always took
        try:
            iso = _ISO.validate_python(value.strip())
        except ValidationError:
            raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 2h or 7d") from None
        if iso < timedelta(0):
            raise ValueError("a duration cannot be negative")
        return iso
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m, 2h or 7d")
    return timedelta(seconds=total)


def format_duration(value: timedelta) -> str:
    """Format a timedelta compactly (``1h30m``)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
