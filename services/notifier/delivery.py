"""The one interface every integration implements, and the retry policy around it.

An integration (``integrations/<name>.py``) sends one :class:`Notification` and either returns or
raises :class:`DeliveryError` saying whether trying again could help, and after how long the
receiver asked us to wait (``Retry-After``). Everything else — backoff, jitter, leases, dead
letters — lives in the dispatcher, written once (Alertmanager's ``notify.Retrier``).

The HTTP integrations send through :func:`post`: one deadline for the whole exchange (a receiver that
trickles bytes cannot hold a group), no redirects (a delivery goes to its configured URL or fails),
and at most :data:`RESPONSE_LIMIT` bytes of any answer read (a receiver cannot fill our memory).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp
import httpx

from services.notifier.http import HttpAnswer, WebhookSession
from services.notifier.model import IntegrationKind, Notification
from veille.httpclient import read_at_most

__all__ = [
    "ERROR_KINDS",
    "RESPONSE_LIMIT",
    "DeliveryError",
    "Integration",
    "RetryPolicy",
    "check_response",
    "error_from_exception",
    "parse_retry_after",
    "post",
]

RESPONSE_LIMIT = 4096
"""Bytes of a receiver's answer read at most: enough for an error message, never a memory hazard."""

ERROR_KINDS = ("timeout", "redirect", "rate_limited", "status_4xx", "status_5xx", "unreachable", "error")
"""Labels of ``veille_notification_delivery_errors_total``: what went wrong with one attempt."""


def _kind_of(status: int | None) -> str:
    if status is None:
        return "error"
    if 300 <= status < 400:
        return "redirect"
    if status == 429:
        return "rate_limited"
    return "status_5xx" if status >= 500 else "status_4xx"


class DeliveryError(Exception):
    """A failed attempt: ``retryable`` says whether another attempt may succeed, ``kind`` what went wrong."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.kind = kind or _kind_of(status)


class Integration(Protocol):
    """Something that can deliver a notification: a webhook, an SMTP server, a chat webhook."""

    kind: IntegrationKind

    async def send(self, notification: Notification) -> None:
        """Deliver once; raise :class:`DeliveryError` on failure."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; never sooner than ``Retry-After`` (itself capped)."""

    max_attempts: int = 6
    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    max_retry_after: float = 600.0

    def delay(self, attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The jittered backoff, or ``retry_after`` (what the receiver asked for, or the time-out it just
        used up) when that is longer: a ``Retry-After: 0`` does not make us hammer a struggling receiver.
        """
        ceiling = min(self.cap, self.base * self.factor ** (attempt - 1))
        backoff = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
        if retry_after is not None:
            return max(backoff, min(retry_after, self.max_retry_after))
        return backoff


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


def _printable(text: str, limit: int) -> str:
    return "".join(c if c.isprintable() else " " for c in text[:limit]).strip()


def check_response(response: httpx.Response | HttpAnswer, what: str, body: bytes = b"") -> None:
    """Raise :class:`DeliveryError` unless the response is a 2xx; 408, 429 and 5xx are retryable.

    A 3xx is final: a delivery is never sent on to another address (it would carry the signed body
    and the receiver's custom headers there, or turn into a GET that reaches nobody); the message
    names the ``Location`` so the operator can fix the receiver's URL. ``body`` is what was read of
    the answer (at most :data:`RESPONSE_LIMIT` bytes); its start goes into the message.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        location = _printable(response.headers.get("location", ""), 300) or "(no Location)"
        raise DeliveryError(
            f"{what} answered HTTP {status} redirecting to {location}: redirects are not followed, "
            "set the receiver's url to the final address",
            retryable=False,
            status=status,
        )
    retryable = status in (408, 429) or status >= 500
    snippet = _printable(body[:400].decode("utf-8", "replace"), 200)
    raise DeliveryError(
        f"{what} answered HTTP {status}{': ' + snippet if snippet else ''}",
        retryable=retryable,
        retry_after=parse_retry_after(response.headers.get("retry-after")) if retryable else None,
        status=status,
    )


def error_from_exception(exc: Exception, what: str) -> DeliveryError:
    """Turn a transport error into a :class:`DeliveryError` (time-outs and connection errors retry)."""
    if isinstance(exc, httpx.TimeoutException):
        return DeliveryError(f"{what} timed out ({type(exc).__name__})", retryable=True, kind="timeout")
    if isinstance(exc, httpx.TransportError):
        return DeliveryError(f"{what} unreachable: {type(exc).__name__}: {exc}", retryable=True, kind="unreachable")
    if isinstance(exc, aiohttp.InvalidURL):
        return DeliveryError(f"{what} failed: {type(exc).__name__}: {exc}", retryable=False)
    if isinstance(exc, aiohttp.ClientError):  # connection refused or reset, TLS, a malformed answer
        return DeliveryError(f"{what} unreachable: {type(exc).__name__}: {exc}", retryable=True, kind="unreachable")
    return DeliveryError(f"{what} failed: {type(exc).__name__}: {exc}", retryable=False)


async def post(
    client: httpx.AsyncClient | WebhookSession,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
    what: str,
) -> None:
    """POST ``content`` to ``url`` once; return if the receiver answered 2xx, else raise :class:`DeliveryError`.

    ``timeout`` bounds the whole exchange (connect, send, status, headers and the part of the body
    read), not each network read: a receiver that trickles one byte a second times out like a silent
    one. A time-out is retried no sooner than ``timeout`` later (``retry_after``), since the receiver
    may still be working on the abandoned attempt. Redirects are never followed and at most
    :data:`RESPONSE_LIMIT` bytes of the answer are read, whatever its length. ``client``: the service's
    httpx client, or the webhooks' lighter :class:`~services.notifier.http.WebhookSession`.
    """
    response: httpx.Response | HttpAnswer
    try:
        async with asyncio.timeout(timeout):
            if isinstance(client, WebhookSession):
                response = await client.post(url, content=content, headers=headers, limit=RESPONSE_LIMIT)
                body = response.body
            else:
                async with client.stream(
                    "POST", url, content=content, headers=headers, timeout=timeout, follow_redirects=False
                ) as response:
                    body = await read_at_most(response, RESPONSE_LIMIT)
    except aiohttp.ConnectionTimeoutError as exc:  # (a TimeoutError too) no connection within the connect bound
        raise DeliveryError(
            f"{what} unreachable: no connection within the connect time-out ({exc or type(exc).__name__})",
            retryable=True,
            kind="timeout",
        ) from exc
    except TimeoutError as exc:
        raise DeliveryError(
            f"{what} gave no complete answer within {timeout:g}s", retryable=True, retry_after=timeout, kind="timeout"
        ) from exc
    except (httpx.HTTPError, aiohttp.ClientError) as exc:
        error = error_from_exception(exc, what)
        if error.kind == "timeout":
            error.retry_after = timeout
        raise error from exc
    check_response(response, what, body)
