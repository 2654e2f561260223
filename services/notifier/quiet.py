"""Quiet hours: pure time arithmetic in the receiver's time zone.

A window ``start``–``end`` (``22:00``–``07:00`` spans midnight) on the listed ``days`` (the day the
window starts; every day when empty). Inside it, a notification waits for the window's end unless it
carries a critical alert and ``critical_bypass`` is on. Daylight-saving gaps and folds are handled by
computing the window's bounds as local wall-clock times and converting them to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from veille.config import QuietHours

__all__ = ["quiet_until"]

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(text: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    return time(hours % 24, minutes)


def quiet_until(quiet: QuietHours | None, now: datetime) -> datetime | None:
    """Return when the quiet window containing ``now`` ends (UTC), or None outside quiet hours."""
    if quiet is None:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    start, end = _clock(quiet.start), _clock(quiet.end)
    if start == end:
        return None
    span = (datetime.combine(local.date(), end) - datetime.combine(local.date(), start)) % timedelta(days=1)
    for days_back in (0, 1):
        day = local.date() - timedelta(days=days_back)
        if quiet.days and _DAYS[day.weekday()] not in quiet.days:
            continue
        begins = datetime.combine(day, start, tzinfo=zone)
        ends = datetime.combine(day, start) + span
        ends_aware = ends.replace(tzinfo=zone)
        if begins.astimezone(UTC) <= now.astimezone(UTC) < ends_aware.astimezone(UTC):
            return ends_aware.astimezone(UTC)
    return None
