"""Composition root of the console: a server-rendered web application for the crisis team (issue 16).

One aiohttp server (``VEILLE_CONSOLE_HOST``:``VEILLE_CONSOLE_PORT``, default 0.0.0.0:8090) beside the
usual health server. Pages are Jinja2 templates (autoescaped: mention text is anyone's post) in
English or French, plain HTML forms (POST, redirect, GET) and one small script for the live page's
server-sent events; a phone-sized screen gets the same pages in one column.

- **Alerts**: the archive's ``alerts`` table, newest first, each with its explanation (observed,
  baseline, share, samples, top terms) and its history from ``alert_actions``. Acknowledge, assign,
  comment, resolve: each a row (who, when, what). Acknowledging also puts a silence matching the
  alert's group (``watch`` and ``kind``, the default ``group_by``) in the notifier's silences bucket
  (``bus.SILENCES``, the store ``veille silence`` uses), so every notifier replica stops repeating
  the group at its next flush; resolving in the console expires that silence.
- **Silences**: list, create (pre-filled from an alert), expire, through :mod:`services.notifier.silences`.
- **Live**: a core NATS subscription on the classified subjects (no consumer, nothing to ack): each
  mention goes to the open event streams of its watches at once; a slow browser's queue is bounded
  and drops its oldest.
- **Corrections**: a responder marks a mention's sentiment as wrong; stored in ``corrections``
  (``veille corrections export``).

Who may do what: nothing but ``/login`` and ``/static`` without a session; viewers read, responders
act, admins also manage accounts (``/users``: role, disable, enable; each change recorded in
``user_actions``). Every request reads its user's account: a changed role applies at once and a
disabled account's session ends at its next request. With single sign-on configured
(``VEILLE_CONSOLE_SSO_*``), a request from a trusted proxy address carrying the user header is that
user (account created or updated, marked ``sso``, role from its groups); the header from any other
address is ignored and counted. With no account in ``console_users`` and no single sign-on the
console listens on 127.0.0.1 only and everyone there is the responder ``local`` (it says so at start
and on every page).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import structlog
from aiohttp import web
from multidict import MultiDictProxy
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge
from pydantic import Field, SecretStr, ValidationError
from sqlalchemy.exc import IntegrityError

from services.archive.db import database_url, make_engine, migrate
from services.archive.search import MentionHit, SearchError, SearchFilters, search
from services.console.auth import (
    RANK,
    LoginThrottle,
    Signer,
    TrustedProxy,
    User,
    load_secret,
    parse_role_map,
    verify_password,
)
from services.console.i18n import LANGS, pick_lang, translate
from services.console.searching import EXPORT_LIMIT, csv_rows, filters_from, highlight, moment, query_words
from services.console.store import LABELS, ROLES, ConsoleStore
from services.notifier.silences import Silence, SilenceStore
from veille import bus
from veille.config import Matcher, VeilleConfig, load_config
from veille.durations import parse_duration
from veille.health import Health
from veille.metrics import PREFIX, ServiceMetrics
from veille.models import MentionClassified
from veille.natsauth import connect
from veille.settings import ServiceSettings

__all__ = ["ConsoleApp", "ConsoleSettings", "create_app"]

NAME = "console"
HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "veille_session"
CSRF_COOKIE = "veille_csrf"
LANG_COOKIE = "veille_lang"
ACK_SILENCE = timedelta(days=7)
LIVE_QUEUE = 500
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
OVERVIEW_TTL = 15.0
"""Seconds a watch overview's aggregations are reused for the same (watch, range) (see ``_overview``)."""
OVERVIEW_GRAIN = 5
"""Seconds the overview's range ends are rounded down to, so reloads of a range button share one result."""
OVERVIEW_KEPT = 64
STORY_MEMORY = 50_000
log = structlog.get_logger("console")
LANG = web.RequestKey("lang", str)
CSRF_TOKEN = web.RequestKey("csrf", str)
USER: web.RequestKey[User | None] = web.RequestKey("user", User)
FORM: web.RequestKey[MultiDictProxy[Any]] = web.RequestKey("form", MultiDictProxy)
SSO: web.RequestKey[bool] = web.RequestKey("sso", bool)
SSO_TOUCH = 300.0  # a single-sign-on account's e-mail, role and last login are written at most this often
SSO_MEMORY = 10_000


class ConsoleSettings(ServiceSettings):
    """The console's deployment settings (``VEILLE_CONSOLE_*``)."""

    console_host: str = Field(default="0.0.0.0", description="Address the console listens on.")  # noqa: S104
    console_port: int = Field(default=8090, ge=0, le=65535, description="Its port (0 picks a free one).")
    console_secret: SecretStr | None = Field(
        default=None, description="Secret signing sessions and CSRF tokens (else made once in the data directory)."
    )
    console_secure_cookies: bool = Field(default=False, description="Mark cookies Secure (serve over https).")
    console_sso_user_header: str | None = Field(
        default=None,
        description="Single sign-on: the header a trusted reverse proxy names the user in (e.g. X-Forwarded-User); "
        "unset: no single sign-on.",
    )
    console_sso_email_header: str = Field(default="X-Forwarded-Email", description="Single sign-on: e-mail header.")
    console_sso_groups_header: str = Field(
        default="X-Forwarded-Groups", description="Single sign-on: groups header (one per line or comma-separated)."
    )
    console_sso_role_map: str = Field(
        default="", description="Single sign-on: group=role pairs, comma-separated (or a JSON object)."
    )
    console_sso_default_role: str = Field(
        default="viewer", description="Single sign-on: the role of a user in no mapped group ('none': refused)."
    )
    console_sso_trusted_ips: str = Field(
        default="", description="Single sign-on: the proxy's addresses or CIDR ranges, comma-separated (required)."
    )
    console_sso_logout_url: str = Field(
        default="/oauth2/sign_out", description="Single sign-on: where 'log out' goes (the proxy's sign-out)."
    )

    def trusted_proxy(self) -> TrustedProxy | None:
        """The single-sign-on settings, or None when not configured; ValueError in words."""
        if not self.console_sso_user_header:
            return None
        default = self.console_sso_default_role.strip().lower()
        return TrustedProxy(
            user_header=self.console_sso_user_header,
            email_header=self.console_sso_email_header,
            groups_header=self.console_sso_groups_header,
            role_map=parse_role_map(self.console_sso_role_map),
            default_role=None if default in ("", "none") else default,
            trusted=[ip for ip in self.console_sso_trusted_ips.split(",") if ip.strip()],
            logout_url=self.console_sso_logout_url,
        )


def _now() -> datetime:
    return datetime.now(UTC)


class LiveHub:
    """Fans classified mentions out to the browsers watching each watch; bounded per browser."""

    def __init__(self, dropped: Counter) -> None:
        self.queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self.stories: OrderedDict[str, int] = OrderedDict()
        self.dropped = dropped

    def story_size(self, story_id: str | None) -> int:
        if not story_id:
            return 1
        size = self.stories.pop(story_id, 0) + 1
        self.stories[story_id] = size
        if len(self.stories) > STORY_MEMORY:
            self.stories.popitem(last=False)
        return size

    def publish(self, classified: MentionClassified) -> None:
        mention = classified.mention
        event = {
            "id": mention.id,
            "title": mention.title or "",
            "text": mention.text[:400],
            "url": str(mention.url) if mention.url else "",
            "source": mention.source,
            "site": mention.site or "",
            "lang": classified.lang or "",
            "sentiment": classified.sentiment,
            "story_size": self.story_size(classified.story_id),
            "published_at": (mention.published_at or mention.ingested_at).isoformat(),
        }
        for watch in classified.watches:
            for queue in self.queues.get(watch, ()):
                if queue.full():
                    with contextlib.suppress(asyncio.QueueEmpty):
                        queue.get_nowait()
                    self.dropped.inc()
                queue.put_nowait(event)

    def subscribe(self, watch: str) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(LIVE_QUEUE)
        self.queues.setdefault(watch, set()).add(queue)
        return queue

    def unsubscribe(self, watch: str, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.queues.get(watch, set()).discard(queue)
        if not self.queues.get(watch):
            self.queues.pop(watch, None)


class ConsoleApp:
    """The running console."""

    name = NAME

    def __init__(
        self, settings: ServiceSettings, config: VeilleConfig, *, metrics: ServiceMetrics | None = None
    ) -> None:
        """Build the console; nothing connects before :meth:`start`."""
        self.settings = settings
        self.console = settings if isinstance(settings, ConsoleSettings) else ConsoleSettings()
        self.config = config
        self.metrics = metrics or ServiceMetrics(NAME)
        self.health = Health()
        registry = self.metrics.registry
        self.actions = Counter(
            f"{PREFIX}_console_actions_total", "Actions taken in the console, by action.", ["action"], registry=registry
        )
        self.refused = Counter(
            f"{PREFIX}_console_refused_total",
            "Requests the console refused, by reason (login, throttled, role, csrf, bad_input).",
            ["reason"],
            registry=registry,
        )
        self.sso_ignored = Counter(
            f"{PREFIX}_console_sso_header_ignored_total",
            "Requests carrying the single-sign-on user header from an address that is not a trusted proxy (ignored).",
            registry=registry,
        )
        self.logins = Counter(
            f"{PREFIX}_console_logins_total", "Logins, by source (local, sso).", ["source"], registry=registry
        )
        self.live_clients = Gauge(f"{PREFIX}_console_live_clients", "Open live event streams.", registry=registry)
        dropped = Counter(
            f"{PREFIX}_console_live_dropped_total",
            "Live events dropped because a browser did not keep up.",
            registry=registry,
        )
        self.hub = LiveHub(dropped)
        self.url = database_url(settings, config.archive)
        self.engine = make_engine(self.url)
        self.reader = make_engine(self.url, write=False)  # pages read without SQLite's write lock
        self.store = ConsoleStore(self.engine, self.reader)
        self.throttle = LoginThrottle()
        self.sso = self.console.trusted_proxy()
        self._sso_seen: OrderedDict[str, tuple[float, str, str | None]] = OrderedDict()
        self._overviews: OrderedDict[tuple[Any, ...], tuple[float, dict[str, Any]]] = OrderedDict()
        self._sso_warned = -1e9
        self.keepalive = 15.0  # seconds between a live stream's keep-alives (and account checks)
        self.signer = Signer(b"")
        self.local_only = False
        self.nc: NatsClient | None = None
        self.silences: SilenceStore | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.host = self.console.console_host
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined,
        )
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listen_problem: str | None = None
        self.health.add("http", lambda: self._listen_problem)
        self.health.add("nats", lambda: None if self.nc and self.nc.is_connected else "not connected to NATS")

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the database (migrated), NATS and the silences bucket, then serve."""
        secret = self.console.console_secret
        self.signer = Signer(load_secret(secret.get_secret_value() if secret else None, self.settings.data_dir))
        await migrate(self.engine)
        users = await self.store.user_count()
        if users == 0 and self.sso is None:
            self.local_only = True
            self.host = "127.0.0.1"
            log.warning(
                "console.no_accounts",
                effect="listening on 127.0.0.1 only; everyone there acts as the responder 'local'",
                fix="veille users add NAME --role responder, then restart the console",
            )
        self.nc = await connect(self.settings, name="veille-console", max_reconnect_attempts=-1)
        js = self.nc.jetstream()
        self.silences = await SilenceStore.open(js)
        await self.nc.subscribe(
            f"{bus.PREFIX}.mentions.classified.>", cb=self._on_classified, pending_msgs_limit=10_000
        )
        self.runner = web.AppRunner(self.web_app(), access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        if not await self._listen():
            self._tasks.append(asyncio.create_task(self._listen_later(), name="console-listen"))

    async def _listen(self) -> bool:
        """Listen on the console's address; False (readiness says why) when it is taken."""
        assert self.runner is not None
        site = web.TCPSite(self.runner, self.host, self.console.console_port)
        try:
            await site.start()
        except OSError as exc:
            if self._listen_problem is None:
                log.error("console.cannot_listen", host=self.host, port=self.console.console_port, error=str(exc))
            self._listen_problem = f"cannot listen on {self.host}:{self.console.console_port}: {exc.strerror or exc}"
            return False
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.console.console_port
        self._listen_problem = None
        log.info("console.listening", url=f"http://{self.host}:{self.port}/", local_only=self.local_only)
        return True

    async def _listen_later(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 5)
            if not self._stopping.is_set() and await self._listen():
                return

    async def stop(self) -> None:
        """Close the live streams, the server, NATS and the database."""
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.runner is not None:
            await self.runner.cleanup()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        await self.engine.dispose()
        await self.reader.dispose()

    async def _on_classified(self, msg: Msg) -> None:
        try:
            classified = MentionClassified.model_validate_json(msg.data)
        except ValidationError:
            self.refused.labels("bad_mention").inc()
            return
        self.hub.publish(classified)

    # ---------------------------------------------------------------- web

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware], client_max_size=64 * 1024)
        app.router.add_get("/login", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/lang/{lang}", self.set_lang)
        app.router.add_get("/", self.home)
        app.router.add_get("/alerts", self.alerts_page)
        app.router.add_get("/alerts/{id}", self.alert_page)
        app.router.add_post("/alerts/{id}/{action}", self.alert_action)
        app.router.add_get("/silences", self.silences_page)
        app.router.add_post("/silences", self.create_silence)
        app.router.add_post("/silences/{id}/expire", self.expire_silence)
        app.router.add_get("/search", self.search_page)
        app.router.add_get("/watches", self.live_index)
        app.router.add_get("/watches/{watch}", self.overview_page)
        app.router.add_get("/live", self.live_index)
        app.router.add_get("/live/{watch}", self.live_page)
        app.router.add_get("/live/{watch}/events", self.live_events)
        app.router.add_post("/mentions/{id}/correct", self.correct)
        app.router.add_get("/users", self.users_page)
        app.router.add_post("/users/{name}/{action}", self.user_action)
        app.router.add_static("/static", HERE / "static")
        return app

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request[LANG] = pick_lang(request.cookies.get(LANG_COOKIE), request.headers.get("Accept-Language"))
        browser = request.cookies.get(CSRF_COOKIE)
        new_browser = None
        if not browser:
            browser = new_browser = secrets.token_urlsafe(18)
        request[CSRF_TOKEN] = self.signer.csrf(browser)
        public = request.path in ("/login",) or request.path.startswith(("/static/", "/lang/"))
        request[SSO] = False
        request[USER] = None
        drop_session = False
        user: User | None = None
        if self.local_only:
            user = User("local", "responder")
        else:
            claimed = request.headers.get(self.sso.user_header, "").strip() if self.sso else ""
            if claimed and self.sso is not None:
                if self.sso.trusts(request.remote):
                    user, problem = await self._sso_user(request, claimed)
                    if problem:
                        return self._error(request, 403, problem)
                    request[SSO] = True
                else:
                    self._sso_header_ignored(request)
            if user is None:
                session = self.signer.user(request.cookies.get(SESSION_COOKIE))
                if session is not None:
                    account = await self.store.account(session.name)
                    if account is None or account.disabled or account.source != "local":
                        drop_session = True
                        self.refused.labels("disabled").inc()
                    else:
                        user = User(account.name, account.role)  # the role held now, not at login
        request[USER] = user
        if request.method == "POST":
            form = await request.post()
            request[FORM] = form
            token = form.get("csrf")
            if new_browser or not self.signer.csrf_ok(browser, token if isinstance(token, str) else None):
                self.refused.labels("csrf").inc()
                return self._error(request, 403, "error.csrf")
        if user is None and not public:
            self.refused.labels("login").inc()
            refusal: web.Response
            if request.method == "GET" and not request.path.endswith("/events"):
                refusal = web.HTTPFound(f"/login?next={quote(request.path_qs, safe='')}")
            else:
                refusal = web.Response(status=401, text="log in first")
            if drop_session:
                refusal.del_cookie(SESSION_COOKIE)
            if isinstance(refusal, web.HTTPException):
                raise refusal
            return refusal
        response: web.StreamResponse = await handler(request)
        if drop_session and not response.prepared:
            response.del_cookie(SESSION_COOKIE)
        if new_browser and not response.prepared:
            response.set_cookie(
                CSRF_COOKIE, new_browser, httponly=True, samesite="Lax", secure=self.console.console_secure_cookies
            )
        return response

    def _sso_header_ignored(self, request: web.Request) -> None:
        """Count (and now and then log) a single-sign-on header from an address that is not the proxy."""
        assert self.sso is not None
        self.sso_ignored.inc()
        now = time.monotonic()
        if now - self._sso_warned > 60:
            self._sso_warned = now
            log.warning(
                "console.sso_header_ignored",
                client=request.remote,
                header=self.sso.user_header,
                effect="not believed: the address is not in VEILLE_CONSOLE_SSO_TRUSTED_IPS",
            )

    async def _sso_user(self, request: web.Request, claimed: str) -> tuple[User | None, str | None]:
        """The user a trusted proxy names (account created or updated), or the reason it is refused."""
        assert self.sso is not None
        ident = self.sso.identity(
            claimed, request.headers.get(self.sso.email_header), request.headers.getall(self.sso.groups_header, [])
        )
        if ident.role is None:
            self.refused.labels("sso_no_role").inc()
            return None, "sso.no_role"
        account = await self.store.account(ident.name)
        if account is not None and account.source != "sso":
            self.refused.labels("sso_local_name").inc()
            log.warning("console.sso_name_is_local", user=ident.name, effect="refused: a local account has this name")
            return None, "sso.local_account"
        if account is not None and account.disabled:
            self.refused.labels("disabled").inc()
            return None, "login.disabled"
        now = time.monotonic()
        seen = self._sso_seen.get(ident.name)
        if (
            account is None
            or seen is None
            or now - seen[0] > SSO_TOUCH
            or (account.role, account.email) != (ident.role, ident.email)
        ):
            with contextlib.suppress(IntegrityError):  # a concurrent first request of the same person made it
                await self.store.put_sso_user(ident.name, ident.role, ident.email)
            if account is None or seen is None:
                self.logins.labels("sso").inc()
                log.info("console.login", user=ident.name, role=ident.role, source="sso", groups=list(ident.groups))
            self._sso_seen.pop(ident.name, None)
            self._sso_seen[ident.name] = (now, ident.role, ident.email)
            if len(self._sso_seen) > SSO_MEMORY:
                self._sso_seen.popitem(last=False)
        return User(ident.name, ident.role), None

    def _render(self, request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
        lang = request[LANG]
        other = "fr" if lang == "en" else "en"
        html = self.templates.get_template(template).render(
            _=lambda key: translate(lang, key),
            lang=lang,
            other_lang=other,
            user=request.get(USER),
            local_only=self.local_only,
            sso_logout=self.sso.logout_url if request.get(SSO) and self.sso else "",
            csrf=request[CSRF_TOKEN],
            path=request.path_qs,
            **context,
        )
        return web.Response(text=html, content_type="text/html", status=status, headers={"Cache-Control": "no-store"})

    def _error(self, request: web.Request, status: int, key: str, detail: str = "") -> web.Response:
        return self._render(request, "error.html", status=status, message=translate(request[LANG], key), detail=detail)

    def _require(self, request: web.Request, role: str) -> User:
        """The user, when at least ``role``; else 403."""
        user: User | None = request.get(USER)
        if user is None or not user.may(role):
            self.refused.labels("role").inc()
            page = self._error(request, 403, "error.admin_only" if role == "admin" else "error.forbidden")
            raise web.HTTPForbidden(text=page.text, content_type="text/html")
        return user

    def _form(self, request: web.Request, name: str, limit: int = 2000) -> str:
        value = request[FORM].get(name, "")
        return value.strip()[:limit] if isinstance(value, str) else ""

    # ---------------------------------------------------------------- login

    async def home(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/alerts")

    async def login_page(self, request: web.Request) -> web.Response:
        return self._render(request, "login.html", error=None, next=request.query.get("next", "/alerts"))

    async def login(self, request: web.Request) -> web.Response:
        name, password = self._form(request, "name", 200), self._form(request, "password", 1000)
        client = f"{request.remote or '?'}|{name}"  # per address and name: one guesser does not lock others out
        target = self._form(request, "next") or "/alerts"
        if not target.startswith("/") or target.startswith("//"):
            target = "/alerts"
        if self.throttle.blocked(client):
            self.refused.labels("throttled").inc()
            return self._render(request, "login.html", status=429, error="login.throttled", next=target)
        found = await self.store.account(name)
        if not verify_password(found.password_hash if found else None, password) or found is None:
            self.throttle.failed(client)
            self.refused.labels("login").inc()
            log.info("console.login_failed", user=name, client=client)
            return self._render(request, "login.html", status=401, error="login.failed", next=target)
        if found.disabled:
            self.refused.labels("disabled").inc()
            log.info("console.login_disabled", user=name, client=client)
            return self._render(request, "login.html", status=403, error="login.disabled", next=target)
        await self.store.logged_in(name)
        self.logins.labels("local").inc()
        response = web.HTTPFound(target)
        response.set_cookie(
            SESSION_COOKIE,
            self.signer.session(User(name, found.role)),
            httponly=True,
            samesite="Lax",
            secure=self.console.console_secure_cookies,
            max_age=int(self.signer.session_seconds),
        )
        log.info("console.login", user=name, role=found.role, source="local")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.HTTPFound("/login")
        response.del_cookie(SESSION_COOKIE)
        raise response

    async def set_lang(self, request: web.Request) -> web.Response:
        lang = request.match_info["lang"]
        target = request.query.get("next", "/alerts")
        if not target.startswith("/") or target.startswith("//"):
            target = "/alerts"
        response = web.HTTPFound(target)
        if lang in LANGS:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="Lax")
        raise response

    # ---------------------------------------------------------------- alerts

    async def alerts_page(self, request: web.Request) -> web.Response:
        watch = request.query.get("watch") or None
        alerts = await self.store.alerts(watch=watch)
        return self._render(request, "alerts.html", alerts=alerts, watch=watch)

    async def alert_page(self, request: web.Request) -> web.Response:
        alert = await self.store.alert(request.match_info["id"])
        if alert is None:
            return self._error(request, 404, "alert.not_found")
        return self._render(request, "alert.html", alert=alert, labels=LABELS)

    async def alert_action(self, request: web.Request) -> web.Response:
        user = self._require(request, "responder")
        alert_id, action = request.match_info["id"], request.match_info["action"]
        alert = await self.store.alert(alert_id)
        if alert is None:
            return self._error(request, 404, "alert.not_found")
        if action == "acknowledge":
            silence_id = None
            if alert.silence_id is None and self.silences is not None:
                silence = Silence.create(
                    [f'watch="{_quote(alert.watch)}"', f'kind="{alert.kind}"'],
                    now=_now(),
                    duration=ACK_SILENCE,
                    comment=f"acknowledged in the console: alert {alert.id}",
                    created_by=user.name,
                )
                await self.silences.put(silence)
                silence_id = silence.id
            await self.store.record(alert_id, user.name, "acknowledge", silence_id=silence_id)
        elif action == "assign":
            person = self._form(request, "assignee", 200)
            await self.store.record(alert_id, user.name, "assign", person)
        elif action == "comment":
            comment = self._form(request, "comment", 4000)
            if not comment:
                self.refused.labels("bad_input").inc()
                return self._error(request, 400, "error.bad_input", "empty comment")
            await self.store.record(alert_id, user.name, "comment", comment)
        elif action == "resolve":
            if alert.silence_id and self.silences is not None:
                await self.silences.expire(alert.silence_id, _now())
            await self.store.record(alert_id, user.name, "resolve", self._form(request, "comment", 4000))
        else:
            raise web.HTTPNotFound()
        self.actions.labels(action).inc()
        log.info("console.alert_action", alert=alert_id, action=action, user=user.name)
        raise web.HTTPSeeOther(f"/alerts/{quote(alert_id, safe='')}")

    # ---------------------------------------------------------------- silences

    async def silences_page(self, request: web.Request) -> web.Response:
        assert self.silences is not None
        now = _now()
        silences = sorted(await self.silences.all(), key=lambda s: s.created_at, reverse=True)
        matchers, comment = "", ""
        alert_id = request.query.get("alert")
        if alert_id:
            alert = await self.store.alert(alert_id)
            if alert is not None:
                matchers = f'watch="{_quote(alert.watch)}"\nkind="{alert.kind}"'
                comment = alert.summary
        return self._render(
            request,
            "silences.html",
            silences=silences,
            now=now,
            matchers=matchers,
            comment=comment,
            request_alert=alert_id if matchers else "",
        )

    async def create_silence(self, request: web.Request) -> web.Response:
        user = self._require(request, "responder")
        assert self.silences is not None
        lines = [line.strip() for line in self._form(request, "matchers", 4000).splitlines() if line.strip()]
        try:
            for line in lines:
                Matcher.parse(line)
            duration = parse_duration(self._form(request, "duration", 40) or "2h")
            if not lines:
                raise ValueError('at least one matcher, such as watch="acme"')
            if duration <= timedelta(0):
                raise ValueError("the duration must be positive")
        except ValueError as exc:
            self.refused.labels("bad_input").inc()
            return self._error(request, 400, "error.bad_input", str(exc))
        silence = Silence.create(
            lines, now=_now(), duration=duration, comment=self._form(request, "comment"), created_by=user.name
        )
        await self.silences.put(silence)
        self.actions.labels("silence").inc()
        alert_id = self._form(request, "alert", 500)
        if alert_id and await self.store.alert(alert_id) is not None:
            await self.store.record(alert_id, user.name, "silence", "; ".join(lines), silence.id)
        raise web.HTTPSeeOther("/silences")

    async def expire_silence(self, request: web.Request) -> web.Response:
        user = self._require(request, "responder")
        assert self.silences is not None
        await self.silences.expire(request.match_info["id"], _now())
        self.actions.labels("expire_silence").inc()
        log.info("console.silence_expired", silence=request.match_info["id"], user=user.name)
        raise web.HTTPSeeOther("/silences")

    # ---------------------------------------------------------------- search

    async def search_page(self, request: web.Request) -> web.StreamResponse:
        query = request.query.get("q", "").strip()[:2000]
        error = None
        try:
            filters = filters_from(request.query)
        except ValueError as exc:
            filters, error = SearchFilters(), str(exc)
        if request.query.get("format") == "csv" and error is None:
            hits: list[MentionHit] = []
            cursor = None
            try:
                while len(hits) < EXPORT_LIMIT:
                    page = await search(self.reader, query or None, filters, limit=1000, cursor=cursor)
                    hits.extend(page.hits)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
            except SearchError as exc:
                self.refused.labels("bad_input").inc()
                return self._error(request, 400, "error.bad_input", str(exc))
            self.actions.labels("export").inc()
            return web.Response(
                text=csv_rows(hits[:EXPORT_LIMIT]),
                content_type="text/csv",
                headers={"Content-Disposition": 'attachment; filename="veille-mentions.csv"'},
            )
        results: list[Any] = []
        next_url = None
        if error is None:
            try:
                page = await search(self.reader, query or None, filters, limit=50, cursor=request.query.get("cursor"))
            except SearchError as exc:
                error = str(exc)
            else:
                words = query_words(query)
                results = [
                    (hit, highlight(hit.title or "", words, 300), highlight(hit.text, words)) for hit in page.hits
                ]
                if page.next_cursor:
                    next_url = "/search?" + urlencode(
                        [*((k, v) for k, v in request.query.items() if k != "cursor"), ("cursor", page.next_cursor)]
                    )
        export = "/search?" + urlencode(
            [*((k, v) for k, v in request.query.items() if k not in ("cursor", "format")), ("format", "csv")]
        )
        if error:
            self.refused.labels("bad_input").inc()
        return self._render(
            request,
            "search.html",
            status=400 if error else 200,
            q=query,
            form=request.query,
            error=error,
            results=results,
            next_url=next_url,
            export_url=export,
            watches=[w.name for w in self.config.watches],
            labels=LABELS,
        )

    # ---------------------------------------------------------------- watch overview

    async def overview_page(self, request: web.Request) -> web.Response:
        from services.archive.aggregate import AggregationError
        from services.classifier.surges import detector_settings

        name = request.match_info["watch"]
        watch = next((w for w in self.config.watches if w.name == name), None)
        if watch is None:
            return self._error(request, 404, "overview.no_watch")
        span = request.query.get("range", "24h")
        error = None
        data: dict[str, Any] | None = None
        try:
            if span == "custom":
                since = moment(request.query.get("since", "")) or _now() - timedelta(days=1)
                until = moment(request.query.get("until", ""))
            elif span in RANGES:
                since, until = _now() - RANGES[span], None
            else:
                raise ValueError(f"range {span!r} is not one of 24h, 7d, 30d, custom")
            data = await self._overview(name, since, until, detector_settings(watch))
        except (ValueError, AggregationError) as exc:
            self.refused.labels("bad_input").inc()
            error = str(exc)
        return self._render(
            request,
            "overview.html",
            status=400 if error else 200,
            watch=name,
            span=span,
            form=request.query,
            error=error,
            data=data,
            ranges=[*RANGES, "custom"],
        )

    async def _overview(self, name: str, since: datetime, until: datetime | None, settings: Any) -> dict[str, Any]:
        """The watch's aggregations, kept :data:`OVERVIEW_TTL` seconds per (watch, range, detector settings).

        The range buttons look back from now: the key rounds both ends down to :data:`OVERVIEW_GRAIN`
        seconds, so reloads within those seconds share the result computed for the first of them (up
        to its own now); any other range, or the same one later, is computed afresh (0.1-0.3 s on a
        1-million-mention archive, most of it in the database, see docs/benchmarks.md)."""
        from services.archive.aggregate import aggregations

        def grain(moment: datetime | None) -> datetime | None:
            if moment is None:
                return None
            return datetime.fromtimestamp(moment.timestamp() // OVERVIEW_GRAIN * OVERVIEW_GRAIN, UTC)

        end = until or _now()
        key = (name, grain(since), grain(end), settings)
        clock = time.monotonic()
        kept = self._overviews.get(key)
        if kept is not None and clock - kept[0] < OVERVIEW_TTL:
            self._overviews.move_to_end(key)
            return kept[1]
        data = await aggregations(self.reader, name, since, until, settings=settings)
        self._overviews[key] = (clock, data)
        while len(self._overviews) > OVERVIEW_KEPT:
            self._overviews.popitem(last=False)
        return data

    # ---------------------------------------------------------------- live

    async def live_index(self, request: web.Request) -> web.Response:
        return self._render(request, "live_index.html", watches=[w.name for w in self.config.watches])

    async def live_page(self, request: web.Request) -> web.Response:
        return self._render(request, "live.html", watch=request.match_info["watch"], labels=LABELS)

    async def live_events(self, request: web.Request) -> web.StreamResponse:
        watch = request.match_info["watch"]
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        queue = self.hub.subscribe(watch)
        self.live_clients.inc()
        try:
            await response.write(b": connected\n\n")
            while not self._stopping.is_set():
                try:
                    event = await asyncio.wait_for(queue.get(), self.keepalive)
                except TimeoutError:
                    if not await self._still_allowed(request.get(USER)):
                        break  # disabled while watching: the browser's reconnection meets the login
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"event: mention\ndata: {json.dumps(event)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.hub.unsubscribe(watch, queue)
            self.live_clients.dec()
        return response

    async def _still_allowed(self, user: User | None) -> bool:
        """Whether ``user``'s account may still use the console (a long stream checks now and then)."""
        if user is None or self.local_only:
            return True
        account = await self.store.account(user.name)
        return account is not None and not account.disabled

    # ---------------------------------------------------------------- corrections

    async def correct(self, request: web.Request) -> web.Response:
        user = self._require(request, "responder")
        mention_id = request.match_info["id"]
        label = self._form(request, "label", 20)
        archived = await self.store.mention(mention_id)
        predicted = archived["sentiment"] if archived else self._form(request, "predicted", 20)
        text = (
            " ".join(p for p in (archived["title"], archived["text"]) if p)
            if archived
            else self._form(request, "text", 20_000)
        )
        if label not in LABELS or predicted not in LABELS or not text:
            self.refused.labels("bad_input").inc()
            return self._error(request, 400, "error.bad_input", "label, predicted label and text are needed")
        await self.store.correct(
            mention_id,
            user.name,
            label,
            predicted=predicted,
            text=text,
            lang=(archived or {}).get("lang") or self._form(request, "lang", 10) or None,
        )
        self.actions.labels("correct").inc()
        back = self._form(request, "next", 500)
        if request.headers.get("X-Requested-With") == "fetch":
            return web.json_response({"ok": True})
        raise web.HTTPSeeOther(back if back.startswith("/") and not back.startswith("//") else "/alerts")

    # ---------------------------------------------------------------- users

    async def users_page(self, request: web.Request) -> web.Response:
        self._require(request, "admin")
        accounts = await self.store.accounts()
        history = await self.store.user_history(50)
        return self._render(request, "users.html", accounts=accounts, history=history, roles=ROLES)

    async def user_action(self, request: web.Request) -> web.Response:
        admin = self._require(request, "admin")
        name, action = request.match_info["name"], request.match_info["action"]
        if action not in ("role", "disable", "enable"):
            raise web.HTTPNotFound()
        if name == admin.name:
            self.refused.labels("bad_input").inc()
            return self._error(request, 400, "users.not_yourself")
        try:
            if action == "role":
                role = self._form(request, "role", 20)
                if role not in RANK:
                    raise ValueError(f"role must be one of {', '.join(ROLES)}")
                await self.store.set_role(name, role, admin.name)
            else:
                await self.store.set_disabled(name, action == "disable", admin.name)
        except LookupError:
            return self._error(request, 404, "users.not_found")
        except ValueError as exc:
            self.refused.labels("bad_input").inc()
            return self._error(request, 400, "error.bad_input", str(exc))
        self.actions.labels(f"user_{action}").inc()
        log.info("console.user_action", target=name, action=action, user=admin.name)
        raise web.HTTPSeeOther("/users")


def _search_url(request: web.Request, **replace: str) -> str:
    """This search's URL with ``replace``'s parameters set (and no cursor unless given)."""
    kept = [(k, v) for k, v in request.query.items() if k not in ("cursor", "format", *replace)]
    return "/search?" + urlencode([*kept, *replace.items()])


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    metrics: ServiceMetrics | None = None,
) -> ConsoleApp:
    """Build the console from settings (``VEILLE_CONSOLE_*`` read here when ``settings`` lacks them)."""
    return ConsoleApp(settings, config or load_config(settings.config), metrics=metrics)
