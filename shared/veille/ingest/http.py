"""Bounded HTTP fetching for ingestors: size cap, total deadline, conditional GET, rate limits.

Every request an ingestor makes goes through :class:`Fetcher`, which
- waits for the source's :class:`RateLimiter` (a minimum interval between requests, and a pause
  when the source said ``Retry-After``);
- sends ``If-None-Match`` / ``If-Modified-Since`` when asked;
- reads the body as a stream and cuts it off past ``max_bytes``;
- gives up after a total deadline, so a server that drips one byte a second still times out;
- turns every failure into a :class:`FetchError` whose ``kind`` is a short metric label and whose
  ``retryable`` and ``retry_after`` say what to do next (429 and 503 honour ``Retry-After``).
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from veille.httpclient import RedirectRefused

__all__ = [
    "FetchError",
    "Fetcher",
    "RateLimiter",
    "Response",
    "parse_reset_time",
    "parse_retry_after",
    "quota_remaining",
    "quota_reset",
]

QUOTA_HEADERS = ("x-ratelimit-remaining", "x-rate-limit-remaining", "ratelimit-remaining")
ERROR_BODY_BYTES = 4096
"""How much of an error response's body a :class:`FetchError` keeps."""


def parse_reset_time(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds until the moment a rate-limit header names, or None when it names none.

    Accepted forms: delta seconds (``120``, Reddit's ``X-Ratelimit-Reset``), Unix epoch seconds
    (``1749729700``, X's ``x-rate-limit-reset``), an HTTP date (``Retry-After: Thu, 12 Jun 2025
    12:01:00 GMT``, RFC 9110 section 10.2.3) and ISO 8601 (Mastodon's ``X-RateLimit-Reset:
    2025-06-12T12:05:00.000000Z``, written by ``iso8601(6)`` in its ``config/initializers/rack_attack.rb``
    and ``app/controllers/concerns/rate_limit_headers.rb``). A moment in the past gives 0.
    """
    if not value:
        return None
    value = value.strip()
    current = now if now is not None else time.time()
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if number != number or number in (float("inf"), float("-inf")):
            return None
        return max(0.0, number - current) if number > 1_000_000_000 else max(0.0, number)
    when: datetime | None = None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - current)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date; ISO 8601 accepted), or None."""
    return parse_reset_time(value, now=now)


def quota_remaining(headers: Mapping[str, str]) -> float | None:
    """Requests left in the current window, when the source says so in a rate-limit header."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in QUOTA_HEADERS:
        if name in lowered:
            try:
                return float(lowered[name].split(",")[0].strip())
            except ValueError:
                return None
    return None


def quota_reset(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds until the rate-limit window resets, in any form :func:`parse_reset_time` reads."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("x-ratelimit-reset", "x-rate-limit-reset", "ratelimit-reset"):
        if name in lowered:
            return parse_reset_time(lowered[name], now=now)
    return None


class FetchError(Exception):
    """A fetch that failed; ``kind`` is a short label for metrics and logs."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = True,
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.body = body
        """The start of the error response's body (a source may read its error code there)."""


@dataclass(frozen=True)
class Response:
    """A completed response: status, headers and the whole (capped) body."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    elapsed: float = 0.0

    @property
    def not_modified(self) -> bool:
        """Whether the server answered 304 to a conditional request."""
        return self.status == 304

    @property
    def etag(self) -> str | None:
        """The ``ETag`` header, if any."""
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        """The ``Last-Modified`` header, if any."""
        return self.headers.get("last-modified")


@dataclass
class RateLimiter:
    """At most one request per ``min_interval`` seconds for one source, plus pauses it asks for."""

    min_interval: float = 0.0
    clock: Callable[[], float] = time.monotonic
    _next_at: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def acquire(self) -> None:
        """Wait until the next request is allowed and reserve its slot."""
        async with self._lock:
            wait = self._next_at - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_at = max(self._next_at, self.clock()) + self.min_interval

    def pause(self, seconds: float) -> None:
        """Allow no request for ``seconds`` (the source said ``Retry-After``)."""
        self._next_at = max(self._next_at, self.clock() + seconds)

    def reset(self) -> None:
        """Forget any pause and spacing (a new window began)."""
        self._next_at = 0.0

    def paused_for(self) -> float:
        """Seconds until the next request is allowed."""
        return max(0.0, self._next_at - self.clock())


class Fetcher:
    """Makes the requests of one source through a shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_bytes: int = 50 * 1024 * 1024,
        timeout: float = 20.0,
        limiter: RateLimiter | None = None,
        max_retry_after: float = 3600.0,
        on_quota: Callable[[float], None] | None = None,
        per_host: bool = False,
    ) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.limiter = limiter or RateLimiter()
        self.per_host = per_host
        self._host_limiters: dict[str, RateLimiter] = {}
        self.max_retry_after = max_retry_after
        self.on_quota = on_quota

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Response:
        """GET ``url``; return a 2xx or 304 response, or raise :class:`FetchError`."""
        return await self.request("GET", url, params=params, headers=headers, etag=etag, last_modified=last_modified)

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        auth: tuple[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> Response:
        """Send one request with the source's limits; see :meth:`get`."""
        send_headers = {"Accept-Encoding": "gzip, deflate", **(headers or {})}
        if etag:
            send_headers["If-None-Match"] = etag
        if last_modified:
            send_headers["If-Modified-Since"] = last_modified
        limiter = self.limiter_for(url)
        await limiter.acquire()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._send(method, url, params, send_headers, data, json, auth)
        except TimeoutError as exc:
            raise FetchError("timeout", f"no complete answer within {self.timeout:g}s") from exc
        response = Response(
            response.url, response.status, response.headers, response.body, time.perf_counter() - started
        )
        remaining = quota_remaining(response.headers)
        if remaining is not None:
            if self.on_quota is not None:
                self.on_quota(remaining)
            if remaining < 1:
                reset = quota_reset(response.headers)
                if reset is not None:
                    limiter.pause(min(reset, self.max_retry_after))
        self._check_status(response, limiter)
        return response

    def limiter_for(self, url: str) -> RateLimiter:
        """The rate limiter governing ``url``: the source's, or its host's when limits are per host."""
        if not self.per_host:
            return self.limiter
        host = (httpx.URL(url).host or "").lower()
        if host not in self._host_limiters:
            self._host_limiters[host] = RateLimiter(min_interval=self.limiter.min_interval)
        return self._host_limiters[host]

    def limiters(self) -> list[RateLimiter]:
        """Every rate limiter in use."""
        return [self.limiter, *self._host_limiters.values()]

    async def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        headers: dict[str, str],
        data: Mapping[str, str] | None,
        json: Any,
        auth: tuple[str, str] | None,
    ) -> Response:
        request = self.client.build_request(method, url, params=params, headers=headers, data=data, json=json)
        try:
            response = await self.client.send(request, stream=True, auth=auth if auth else httpx.USE_CLIENT_DEFAULT)
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"timed out ({type(exc).__name__})") from exc
        except httpx.TooManyRedirects as exc:
            raise FetchError("redirect_loop", "too many redirects", retryable=False) from exc
        except RedirectRefused as exc:
            raise FetchError("redirect_refused", str(exc), retryable=False) from exc
        except (httpx.TransportError, httpx.InvalidURL, OSError) as exc:
            raise FetchError("connect", f"cannot reach the server: {type(exc).__name__}: {exc}") from exc
        try:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(
                    "too_large",
                    f"response declares {int(declared)} bytes, over the {self.max_bytes}-byte cap",
                    retryable=False,
                )
            chunks: list[bytes] = []
            size = 0
            try:
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise FetchError(
                            "too_large",
                            f"response cut off after {size} bytes, over the {self.max_bytes}-byte cap",
                            retryable=False,
                        )
                    chunks.append(chunk)
            except httpx.TimeoutException as exc:
                raise FetchError("timeout", f"timed out reading the body ({type(exc).__name__})") from exc
            except (httpx.TransportError, OSError) as exc:
                raise FetchError("connect", f"connection broken while reading: {type(exc).__name__}") from exc
            raw = b"".join(chunks)
            body = _decode_content(raw, response.headers.get("content-encoding"), self.max_bytes)
        finally:
            await response.aclose()
        return Response(
            str(response.url), response.status_code, {k.lower(): v for k, v in response.headers.items()}, body
        )

    def _check_status(self, response: Response, limiter: RateLimiter) -> None:
        status = response.status
        if 200 <= status < 300 or status == 304:
            return
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None and status == 429:
            retry_after = quota_reset(response.headers)  # Mastodon's 429 has no Retry-After, only X-RateLimit-Reset
        if retry_after is not None:
            retry_after = min(retry_after, self.max_retry_after)
        body = response.body[:ERROR_BODY_BYTES]
        if status in (429, 503) or (retry_after is not None and status >= 500):
            if retry_after is not None:
                limiter.pause(retry_after)
            kind = "rate_limited" if status == 429 else "unavailable"
            wait = f", retry after {retry_after:g}s" if retry_after is not None else ""
            raise FetchError(kind, f"HTTP {status}{wait}", status=status, retry_after=retry_after, body=body)
        if status >= 500:
            raise FetchError("http_5xx", f"HTTP {status}", status=status, body=body)
        if status in (401, 403):
            raise FetchError(
                "unauthorized", f"HTTP {status}: credentials refused", status=status, retryable=False, body=body
            )
        raise FetchError("http_4xx", f"HTTP {status}", status=status, retryable=status in (404, 408, 410), body=body)


def _decode_content(raw: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo gzip/deflate content encoding, refusing a compression bomb past ``max_bytes``."""
    if not encoding or encoding.strip().lower() in ("identity", ""):
        return raw
    import zlib

    codings = [c.strip().lower() for c in encoding.split(",")]
    data = raw
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip", "deflate"):
            wbits = 47 if coding != "deflate" else zlib.MAX_WBITS
            decompressor = zlib.decompressobj(wbits)
            try:
                data = decompressor.decompress(data, max_bytes + 1)
            except zlib.error:
                if coding == "deflate":
                    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
                    data = decompressor.decompress(data, max_bytes + 1)
                else:
                    raise FetchError("bad_encoding", f"body is not valid {coding}", retryable=False) from None
            if len(data) > max_bytes or decompressor.unconsumed_tail:
                raise FetchError("too_large", f"decompressed body exceeds the {max_bytes}-byte cap", retryable=False)
        elif coding == "identity":
            continue
        else:
            raise FetchError("bad_encoding", f"unsupported content encoding {coding!r}", retryable=False)
    return data


def http_date(moment: datetime) -> str:
    """Format a datetime as an HTTP date."""
    return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)
