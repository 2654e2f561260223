"""The archive's HTTP JSON API (read-only): ``/api/v1/mentions``, ``/api/v1/aggregations``, ``/api/v1/alerts``.

Served by the archive service on its own port (``VEILLE_ARCHIVE_API_PORT``, 8081 by default; 0 picks
a free one), with aiohttp like the services' ``/metrics`` server. Every answer is JSON; every
endpoint is ``GET``.

Access. With a token (``VEILLE_ARCHIVE_API_TOKEN``, or ``VEILLE_ARCHIVE_API_TOKEN_FILE`` naming a file
holding it), every request must carry ``Authorization: Bearer <token>`` (401 otherwise), and the API
listens on ``VEILLE_ARCHIVE_API_HOST`` (default ``0.0.0.0``). Without a token it listens on
``127.0.0.1`` only, whatever the host asked, refuses any request not from a loopback address, and says
so in its start-up log line. ``/api/v1/openapi.json`` (the API's description) needs no token.

Errors are a sentence: ``{"error": "..."}`` with 400 for a bad query or parameter, 401, 404, 405,
503 while the database cannot be reached, and 500 (logged, no traceback in the answer) otherwise.

The OpenAPI document is built from :data:`ENDPOINTS` (the same table the handlers check their
parameters against) by :func:`openapi`; ``python -m services.archive.api`` prints it, and
``docs/archive-openapi.json`` is that output (a test keeps it up to date).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from pydantic import Field, SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.aggregate import DIMENSIONS, AggregationError, aggregations, list_alerts
from services.archive.search import MAX_LIMIT, SearchError, SearchFilters, search
from services.archive.store import is_connection_error
from veille import __version__
from veille.durations import parse_duration
from veille.settings import ServiceSettings
from veille.spikes import DetectorSettings

__all__ = ["ENDPOINTS", "ApiSettings", "ArchiveApi", "listen_host", "openapi", "parse_time"]

log = structlog.get_logger("archive.api")

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8081
MAX_LINE = 64 * 1024


class ApiSettings(ServiceSettings):
    """The API's settings from the environment (``*_FILE`` forms read as every setting's)."""

    archive_api_token: SecretStr | None = Field(
        default=None, description="Bearer token the API requires; unset: loopback only, no token."
    )
    archive_api_host: str = Field(default="0.0.0.0", description="Address the API listens on (with a token).")  # noqa: S104
    archive_api_port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="The API's port (0: a free one).")


class ApiError(ValueError):
    """A request the API refuses; ``status`` and a sentence."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def listen_host(host: str, token: str | None) -> str:
    """Where the API listens: ``host`` with a token, loopback without one."""
    return host if token else LOOPBACK


def parse_time(name: str, value: str | None, now: datetime) -> datetime | None:
    """``90d`` (that long before ``now``) or an ISO 8601 time (UTC when no offset); ApiError otherwise."""
    if value is None or value == "":
        return None
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(
            400, f"{name}={value!r} is neither a duration (90d, 12h) nor a time (2026-05-01T08:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------------ the endpoints' parameters


@dataclass(frozen=True)
class Param:
    """One query parameter: its OpenAPI schema and description; ``many`` when it may repeat."""

    name: str
    schema: dict[str, Any]
    description: str
    many: bool = False
    required: bool = False


_TIME = {"type": "string", "examples": ["7d", "2026-05-01T08:00:00Z"]}
_SENTIMENT = {"type": "string", "enum": ["negative", "neutral", "positive"]}

ENDPOINTS: dict[str, dict[str, Any]] = {
    "/api/v1/mentions": {
        "summary": "Search archived mentions",
        "description": 'The watches\' query language (terms, "phrases", AND/OR/NOT, NEAR, wildcards, '
        "field:value) with filters; newest first or by relevance; one page at a time (next_cursor).",
        "params": [
            Param("q", {"type": "string"}, "Query, e.g. acme AND (recall OR rappel) NOT lang:de. Empty: everything."),
            Param("watch", {"type": "string"}, "Only mentions that matched this watch."),
            Param("since", _TIME, "From this long ago (7d) or this time (ISO 8601)."),
            Param("until", _TIME, "Up to this long ago or this time."),
            Param("sentiment", _SENTIMENT, "Sentiment; repeat for several.", many=True),
            Param("lang", {"type": "string"}, "Language (ISO 639-1); repeat for several.", many=True),
            Param("source", {"type": "string"}, "Source (rss, bluesky, ...); repeat for several.", many=True),
            Param("site", {"type": "string"}, "Site; repeat for several.", many=True),
            Param("story", {"type": "string"}, "Only this story (syndicated copies)."),
            Param("sort", {"type": "string", "enum": ["time", "relevance"], "default": "time"}, "Order of the hits."),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}, "Hits per page."),
            Param("cursor", {"type": "string"}, "The next_cursor of the previous page."),
        ],
        "response": "MentionPage",
    },
    "/api/v1/aggregations": {
        "summary": "A watch's volume, sentiment share, baseline, alerts and top lists",
        "description": "Volume per bucket by sentiment with the spike detector's expected count (replayed over the "
        "archive) and the archived alerts on the same axis, plus the top stories, sources, sites and terms.",
        "params": [
            Param("watch", {"type": "string"}, "The watch.", required=True),
            Param("since", {**_TIME, "default": "7d"}, "From this long ago or this time."),
            Param("until", _TIME, "Up to this long ago or this time (default: now)."),
            Param("bucket", {"type": "string", "examples": ["1h"]}, "Bucket width (default: about 120 buckets)."),
            Param("top", {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}, "Length of each top list."),
            Param(
                "baseline",
                {"type": "string", "enum": ["true", "false"], "default": "true"},
                "Replay the spike detector for its expected counts (about 1 s per 90 days of 5-minute buckets); "
                "false: counts only, in milliseconds.",
            ),
        ],
        "response": "Aggregations",
    },
    "/api/v1/alerts": {
        "summary": "Archived alerts, newest first",
        "description": "One row per alert and status: a firing alert and its resolution are two.",
        "params": [
            Param("watch", {"type": "string"}, "Only this watch's alerts."),
            Param("since", _TIME, "Raised from this long ago or this time."),
            Param("until", _TIME, "Raised before this long ago or this time."),
            Param("status", {"type": "string", "enum": ["firing", "resolved"]}, "Status; repeat for both.", many=True),
            Param(
                "kind",
                {"type": "string", "enum": ["negative_mention", "volume_spike", "negative_spike"]},
                "Kind; repeat for several.",
                many=True,
            ),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 10000, "default": 500}, "Most alerts."),
        ],
        "response": "AlertList",
    },
}

_MENTION = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "ts": {"type": "string", "format": "date-time", "description": "published, else ingested time"},
        "source": {"type": "string"},
        "url": {"type": ["string", "null"]},
        "title": {"type": ["string", "null"]},
        "text": {"type": "string"},
        "author": {"type": ["string", "null"]},
        "site": {"type": ["string", "null"]},
        "lang": {"type": ["string", "null"]},
        "sentiment": _SENTIMENT,
        "sentiment_score": {"type": "number"},
        "story_id": {"type": ["string", "null"]},
        "watches": {"type": "array", "items": {"type": "string"}},
        "published_at": {"type": ["string", "null"], "format": "date-time"},
        "ingested_at": {"type": "string", "format": "date-time"},
    },
}
_ALERT = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "watch": {"type": "string"},
        "kind": {"type": "string"},
        "severity": {"type": "string"},
        "summary": {"type": "string"},
        "lang": {"type": ["string", "null"]},
        "source": {"type": ["string", "null"]},
        "observed": {"type": ["number", "null"]},
        "expected": {"type": ["number", "null"]},
        "mention_count": {"type": "integer"},
        "started_at": {"type": "string", "format": "date-time"},
        "ends_at": {"type": ["string", "null"], "format": "date-time"},
        "raised_at": {"type": "string", "format": "date-time"},
    },
}
_TOP = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "key": {"type": "string"},
            "count": {"type": "integer"},
            "example": {"type": ["string", "null"]},
        },
    },
}
SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]},
    "Mention": _MENTION,
    "MentionPage": {
        "type": "object",
        "properties": {
            "mentions": {"type": "array", "items": {"$ref": "#/components/schemas/Mention"}},
            "next_cursor": {"type": ["string", "null"], "description": "null: no more pages"},
        },
    },
    "Alert": _ALERT,
    "AlertList": {
        "type": "object",
        "properties": {"alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}}},
    },
    "Aggregations": {
        "type": "object",
        "properties": {
            "watch": {"type": "string"},
            "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "bucket_seconds": {"type": "integer"},
            "detector_bucket_seconds": {"type": "integer"},
            "buckets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "start": {"type": "string", "format": "date-time"},
                        "total": {"type": "integer"},
                        "negative": {"type": "integer"},
                        "neutral": {"type": "integer"},
                        "positive": {"type": "integer"},
                        "share": {
                            "type": "object",
                            "additionalProperties": {"type": "number"},
                            "description": "each sentiment's share of the bucket",
                        },
                        "expected": {
                            "type": ["number", "null"],
                            "description": "the spike detector's expected count (its baseline)",
                        },
                    },
                },
            },
            "alerts": {"type": "array", "items": {"$ref": "#/components/schemas/Alert"}},
            "top": {"type": "object", "properties": {d: _TOP for d in DIMENSIONS}},
        },
    },
}


def openapi() -> dict[str, Any]:
    """The API's OpenAPI 3.1 document, built from :data:`ENDPOINTS` and :data:`SCHEMAS`."""
    errors = {
        "400": "A bad query or parameter (the error says which and why).",
        "401": "No or a wrong bearer token.",
        "503": "The database cannot be reached.",
    }
    paths: dict[str, Any] = {}
    for path, spec in ENDPOINTS.items():
        parameters = []
        for param in spec["params"]:
            schema = {"type": "array", "items": param.schema} if param.many else param.schema
            entry: dict[str, Any] = {"name": param.name, "in": "query", "description": param.description}
            entry["schema"] = schema
            if param.many:
                entry["explode"] = True
            if param.required:
                entry["required"] = True
            parameters.append(entry)
        responses: dict[str, Any] = {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{spec['response']}"}}},
            }
        }
        for code, text in errors.items():
            responses[code] = {
                "description": text,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        paths[path] = {
            "get": {
                "summary": spec["summary"],
                "description": spec["description"],
                "operationId": path.rsplit("/", 1)[-1],
                "parameters": parameters,
                "responses": responses,
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "veille archive API",
            "version": __version__,
            "description": "Read-only access to the mention archive (services/archive). Bearer token from "
            "VEILLE_ARCHIVE_API_TOKEN; without one the API listens on loopback only.",
        },
        "servers": [{"url": f"http://localhost:{DEFAULT_PORT}"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }


def openapi_text() -> str:
    """The document as committed in docs/archive-openapi.json."""
    return json.dumps(openapi(), indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------ the server


class _Query:
    """A request's query parameters (a multidict), checked against its endpoint's table."""

    def __init__(self, path: str, query: Any) -> None:
        params = {p.name: p for p in ENDPOINTS[path]["params"]}
        for name in query:
            if name not in params:
                raise ApiError(400, f"unknown parameter {name!r}: this endpoint takes {', '.join(params)}")
        self.values: dict[str, list[str]] = {}
        for name, param in params.items():
            got = [v for v in query.getall(name, []) if v != ""]
            if len(got) > 1 and not param.many:
                raise ApiError(400, f"{name} is given {len(got)} times; it takes one value")
            if param.required and not got:
                raise ApiError(400, f"{name} is required")
            enum = param.schema.get("enum")
            for value in got:
                if enum and value not in enum:
                    raise ApiError(400, f"{name}={value!r} is not one of {', '.join(enum)}")
            self.values[name] = got

    def one(self, name: str) -> str | None:
        got = self.values.get(name) or []
        return got[0] if got else None

    def many(self, name: str) -> list[str]:
        return list(self.values.get(name) or [])

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.one(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"{name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ApiError(400, f"{name} must be between {low} and {high}")
        return value


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


class ArchiveApi:
    """The API over one read engine; ``token`` None means loopback only."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        token: str | None,
        detector_settings: Callable[[str], DetectorSettings | None] | None = None,
        clock: Callable[[], datetime] | None = None,
        not_ready: Callable[[], str | None] | None = None,
    ) -> None:
        """Serve ``engine``'s archive; ``detector_settings(watch)`` gives a watch's spike settings (baseline),
        ``not_ready()`` why the database cannot be read yet (None: it can), answered as a 503."""
        self.engine = engine
        self.token = token or None
        self.detector_settings = detector_settings or (lambda _watch: None)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.not_ready = not_ready or (lambda: None)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.host: str | None = None

    def application(self) -> web.Application:
        """The aiohttp application (routes and the access/error middleware)."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v1/mentions", self._mentions)
        app.router.add_get("/api/v1/aggregations", self._aggregations)
        app.router.add_get("/api/v1/alerts", self._alerts)
        app.router.add_get("/api/v1/openapi.json", self._openapi)
        return app

    async def start(self, host: str, port: int) -> int:
        """Listen (on loopback only without a token); return the bound port."""
        self.host = listen_host(host, self.token)
        # a query may be 10,000 characters, three times that URL-encoded: longer request lines than aiohttp's 8 KiB
        self._runner = web.AppRunner(self.application(), access_log=None, max_line_size=MAX_LINE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        if self.token:
            log.info("archive.api_started", url=f"http://{self.host}:{self.port}/api/v1/", auth="bearer token")
        else:
            log.warning(
                "archive.api_started",
                url=f"http://{self.host}:{self.port}/api/v1/",
                auth="none: listening on loopback only (127.0.0.1), since VEILLE_ARCHIVE_API_TOKEN is not set",
            )
        return self.port

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/api/v1/openapi.json":
            if self.token:
                given = request.headers.get("Authorization", "")
                scheme, _, credential = given.partition(" ")
                if scheme.lower() != "bearer" or not hmac.compare_digest(credential.strip(), self.token):
                    return _error(
                        401,
                        "a bearer token is required (Authorization: Bearer <VEILLE_ARCHIVE_API_TOKEN>)"
                        if not given
                        else "the bearer token is not the right one",
                        **{"WWW-Authenticate": 'Bearer realm="veille-archive"'},
                    )
            elif not _is_loopback(request.remote):
                return _error(403, "no token is set (VEILLE_ARCHIVE_API_TOKEN): only loopback clients are served")
        problem = self.not_ready() if request.path != "/api/v1/openapi.json" else None
        if problem:
            return _error(503, f"the archive is not ready: {problem}", **{"Retry-After": "5"})
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, str(exc))
        except (SearchError, AggregationError) as exc:
            return _error(400, str(exc))
        except web.HTTPException as exc:
            return _error(
                exc.status, exc.reason or "error", **({"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {})
            )
        except Exception as exc:
            if is_connection_error(exc):
                log.warning("archive.api_database_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
                return _error(503, "the archive's database cannot be reached; try again shortly")
            log.exception("archive.api_failed", path=request.path)
            return _error(500, "internal error (logged by the archive service)")

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi())

    async def _mentions(self, request: web.Request) -> web.Response:
        query = _Query("/api/v1/mentions", request.query)
        now = self.clock()
        filters = SearchFilters(
            watch=query.one("watch"),
            since=parse_time("since", query.one("since"), now),
            until=parse_time("until", query.one("until"), now),
            sentiment=query.many("sentiment"),  # type: ignore[arg-type]
            lang=query.many("lang"),
            source=query.many("source"),
            site=query.many("site"),
            story=query.one("story"),
        )
        page = await search(
            self.engine,
            query.one("q"),
            filters,
            limit=query.integer("limit", 50, 1, MAX_LIMIT),
            cursor=query.one("cursor"),
            sort=query.one("sort") or "time",  # type: ignore[arg-type]
            now=now,
        )
        return web.json_response({"mentions": [hit.as_json() for hit in page.hits], "next_cursor": page.next_cursor})

    async def _aggregations(self, request: web.Request) -> web.Response:
        query = _Query("/api/v1/aggregations", request.query)
        now = self.clock()
        watch = query.one("watch") or ""
        since = parse_time("since", query.one("since") or "7d", now)
        assert since is not None
        bucket: timedelta | None = None
        raw = query.one("bucket")
        if raw is not None:
            try:
                bucket = parse_duration(raw)
            except ValueError:
                raise ApiError(400, f"bucket={raw!r} is not a duration such as 5m, 1h or 1d") from None
        body = await aggregations(
            self.engine,
            watch,
            since,
            parse_time("until", query.one("until"), now),
            bucket=bucket,
            settings=self.detector_settings(watch),
            top_limit=query.integer("top", 10, 1, 100),
            baseline=query.one("baseline") != "false",
            now=now,
        )
        return web.json_response(body)

    async def _alerts(self, request: web.Request) -> web.Response:
        query = _Query("/api/v1/alerts", request.query)
        now = self.clock()
        rows = await list_alerts(
            self.engine,
            watch=query.one("watch"),
            since=parse_time("since", query.one("since"), now),
            until=parse_time("until", query.one("until"), now),
            status=query.many("status"),
            kind=query.many("kind"),
            limit=query.integer("limit", 500, 1, 10_000),
            now=now,
        )
        return web.json_response({"alerts": [row.as_json() for row in rows]})


if __name__ == "__main__":  # python -m services.archive.api > docs/archive-openapi.json
    sys.stdout.write(openapi_text())
