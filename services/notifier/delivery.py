"""The one interface every integration implements, and the retry policy around it.

An integration (``integrations/<name>.py``) sends one :class:`Notification` and either returns or
raises :class:`DeliveryError` saying whether trying again could help, and after how long the
receiver asked us to wait (``Retry-After``). Everything else — backoff, jitter, leases, dead
letters — lives in the dispatcher, written once (Alertmanager's ``notify.Retrier``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import httpx

from services.notifier.model import IntegrationKind, Notification

__all__ = [
    "DeliveryError",
    "Integration",
    "RetryPolicy",
    "check_response",
    "error_from_exception",
    "parse_retry_after",
]


class DeliveryError(Exception):
    """A failed attempt: ``retryable`` says whether another attempt may succeed."""

    def __init__(
        self, reason: str, *, retryable: bool, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class Integration(Protocol):
    """Something that can deliver a notification: a webhook, an SMTP server, a chat webhook."""

    kind: IntegrationKind

    async def send(self, notification: Notification) -> None:
        """Deliver once; raise :class:`DeliveryError` on failure."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped, honouring ``Retry-After`` up to a ceiling."""

    max_attempts: int = 6
    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    max_retry_after: float = 600.0

    def delay(self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_retry_after))
        ceiling = min(self.cap, self.base * self.factor ** (attempt - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def check_response(response: httpx.Response, what: str) -> None:
    """Raise :class:`DeliveryError` unless the response is a 2xx; 408, 429 and 5xx are retryable."""
    status = response.status_code
    if 200 <= status < 300:
        return
    retryable = status in (408, 429) or status >= 500
    snippet = response.text[:200].replace("\n", " ") if response.content else ""
    raise DeliveryError(
        f"{what} answered HTTP {status}{': ' + snippet if snippet else ''}",
        retryable=retryable,
        retry_after=parse_retry_after(response.headers.get("retry-after")) if retryable else None,
        status=status,
    )


def error_from_exception(exc: Exception, what: str) -> DeliveryError:
    """Turn a transport error into a :class:`DeliveryError` (time-outs and connection errors retry)."""
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryError(f"{what} timed out ({type(exc).__name__})", retryable=True)
    if isinstance(exc, httpx.TransportError):
        return DeliveryError(f"{what} unreachable: {type(exc).__name__}: {exc}", retryable=True)
    return DeliveryError(f"{what} failed: {type(exc).__name__}: {exc}", retryable=False)
