"""The YAML configuration: watches, sources, receivers and the route tree.

``load_config(path)`` returns a validated :class:`VeilleConfig` or raises :class:`ConfigError`
listing every mistake with its file, line and dotted field path, which is what
``veille check-config`` prints. ``${VAR}`` in a string is replaced by the environment variable
``VAR`` (``${VAR:-default}`` gives a default), so secrets stay out of the file.

The loader refuses hostile files promptly, each with a :class:`ConfigError` naming the file and
line (see ``MAX_CONFIG_BYTES`` and its neighbours for the bounds and why they were chosen): a file
larger than 1 MiB or holding more than 200,000 values, nesting deeper than 64 levels, an alias that
refers to itself, aliases that expand to more than 100,000 values ("billion laughs"), and
``${VAR}`` substitutions that are too long.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from veille.durations import Duration
from veille.language import normalise_language_tag
from veille.settings import read_secret_file
from veille.spikes import DetectorSettings

__all__ = [
    "ArchiveConfig",
    "BlueskySource",
    "ConfigError",
    "ConfigProblem",
    "EmailReceiver",
    "FeedConfig",
    "GdeltSource",
    "GoogleNewsSearch",
    "HackerNewsSource",
    "MastodonServer",
    "MastodonSource",
    "Matcher",
    "QuietHours",
    "Receiver",
    "RedditSource",
    "Route",
    "RssSource",
    "SeverityPolicy",
    "SourcesConfig",
    "VeilleConfig",
    "Watch",
    "WebhookReceiver",
    "XSource",
    "load_config",
    "parse_config",
]

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or a digit (no spaces)"
        )
    return value


def _clock_time(value: str) -> str:
    match = re.fullmatch(r"(\d{2}):(\d{2})", value)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"{value!r} is not a time of day such as 08:00 or 22:30 (HH:MM, 00:00 to 23:59)")
    return value


def _websocket_url(value: str) -> str:
    if not re.match(r"^wss?://", value):
        raise ValueError(f"{value!r} is not a WebSocket URL (it must start with wss:// or ws://)")
    return value


Name = Annotated[str, AfterValidator(_name)]
ClockTime = Annotated[str, AfterValidator(_clock_time)]

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
SECRET_HOW_TO = "make one with `veille secret new`"  # noqa: S105 - advice, not a secret


def webhook_secret_key(secret: str) -> bytes:
    """The key bytes of a Standard Webhooks secret, ``whsec_`` + base64 (the prefix is optional).

    Raise ValueError, in words, when it is not one: the notifier signs with these bytes.
    """
    text = secret.strip()
    try:
        key = base64.b64decode(text.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the webhook secret is not '{WEBHOOK_SECRET_PREFIX}' followed by base64 "
            f"(a Standard Webhooks secret); {SECRET_HOW_TO}"
        ) from None
    if not key:
        raise ValueError(f"the webhook secret is empty after '{WEBHOOK_SECRET_PREFIX}'; {SECRET_HOW_TO}")
    return key


def new_webhook_secret() -> str:
    """A fresh random webhook secret: ``whsec_`` + base64 of 32 random bytes."""
    import secrets

    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FeedConfig(_Strict):
    """One RSS or Atom feed to poll."""

    url: AnyHttpUrl
    name: str | None = Field(default=None, description="Label for logs and metrics; defaults to the host.")
    watch: str | None = Field(
        default=None,
        description="Every entry of this feed belongs to this watch (a Google Alerts feed, say); "
        "otherwise entries are matched against every watch's query.",
    )
    interval: Duration | None = None


class GoogleNewsSearch(_Strict):
    """A Google News RSS search for one watch (``q``, ``hl``, ``gl``, ``ceid``)."""

    watch: str
    q: str | None = Field(default=None, description="Search query; defaults to the watch's terms joined by OR.")
    hl: str = Field(default="en-US", description="Interface language, e.g. en-US or fr.")
    gl: str = Field(default="US", description="Country, e.g. US or FR.")
    ceid: str | None = Field(
        default=None,
        description="Edition, e.g. US:en, FR:fr or BR:pt-419; found from gl and hl in Google News's editions, "
        "required when they match none.",
    )
    interval: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _edition(cls, data: Any) -> Any:
        from veille.gnews import edition_for

        if not isinstance(data, dict) or data.get("ceid") is not None:
            return data
        gl, hl = data.get("gl", "US"), data.get("hl", "en-US")
        if not isinstance(gl, str) or not isinstance(hl, str):
            return data  # the field checks say what is wrong
        edition = edition_for(gl, hl)
        if edition is None:
            raise ValueError(
                f"Google News has no edition for gl={gl!r} in hl={hl!r}: set ceid "
                "(COUNTRY:language as in the Google News URL, e.g. BR:pt-419, PT:pt-150, MX:es-419)"
            )
        return {**data, "ceid": edition}


class _IngestLimits(_Strict):
    """Settings every ingestor shares: schedule, limits, when to call a source failing."""

    enabled: bool = True
    interval: Duration = timedelta(minutes=5)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0, description="Spread of each interval, as a fraction.")
    max_bytes: int = Field(default=50 * 1024 * 1024, gt=0, description="Largest response read.")
    timeout: Duration = Field(default=timedelta(seconds=20), description="Deadline for a whole response.")
    failing_after: int = Field(
        default=3,
        ge=1,
        description="Failures in a row that make a target failing (a metric and an alert); /readyz turns red "
        "when every target of the source is failing.",
    )


class RssSource(_IngestLimits):
    """The RSS/Atom ingestor: feeds (Google Alerts feeds included), Google News searches, limits."""

    parse_timeout: Duration = Field(
        default=timedelta(seconds=15),
        description="Most time parsing one document may take; past it the parser process is replaced "
        "and the feed counts a parse_timeout error.",
    )
    max_entries: int = Field(
        default=1000, ge=1, le=100_000, description="Entries read from one document (the newest); the rest counted."
    )
    parse_workers: int = Field(default=2, ge=1, le=16, description="Parser processes (feeds are parsed off the loop).")
    feeds: list[FeedConfig] = Field(default_factory=list)
    google_news: list[GoogleNewsSearch] = Field(default_factory=list)
    google_news_url: AnyHttpUrl = Field(
        default=AnyHttpUrl("https://news.google.com/rss/search"), description="Base URL of Google News RSS search."
    )


class _SearchSource(_IngestLimits):
    """A source searched once per watch."""

    watches: list[str] = Field(
        default_factory=list, description="Watches to search for; empty means every watch allowing this source."
    )
    min_interval: Duration = Field(default=timedelta(seconds=1), description="Least time between two requests.")


def _secret(value: str | None, path: Path | None) -> str | None:
    if value:
        return value
    if path is not None:
        try:
            return read_secret_file(path) or None
        except (OSError, ValueError):
            return None
    return None


def _read_file_field(field: str, path: Path) -> str:
    """The text of a ``*_file`` the notifier reads when it starts; ValueError in words when it cannot."""
    try:
        return read_secret_file(path)
    except OSError as exc:
        raise ValueError(f"{field}: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None


def _hn_tags() -> list[Literal["story", "comment"]]:
    return ["story", "comment"]


class HackerNewsSource(_SearchSource):
    """Hacker News through the Algolia ``search_by_date`` API: stories and comments."""

    interval: Duration = timedelta(minutes=2)
    base_url: AnyHttpUrl = AnyHttpUrl("https://hn.algolia.com/api/v1")
    tags: list[Literal["story", "comment"]] = Field(default_factory=_hn_tags, min_length=1)
    hits_per_page: int = Field(default=100, ge=1, le=1000)
    max_pages: int = Field(default=5, ge=1, le=50)


class BlueskySource(_SearchSource):
    """Bluesky: the Jetstream firehose (no auth), and searchPosts backfill with an app password."""

    jetstream_url: str = Field(
        default="wss://jetstream2.us-east.bsky.network/subscribe", description="Jetstream URL (wss:// or ws://)."
    )
    rewind: Duration = Field(default=timedelta(seconds=5), description="Replay this much on reconnect.")
    api_url: AnyHttpUrl = Field(default=AnyHttpUrl("https://bsky.social/xrpc"), description="XRPC base for search.")
    handle: str | None = None
    app_password: str | None = None
    app_password_file: Path | None = None
    interval: Duration = Field(default=timedelta(minutes=10), description="Interval of the searchPosts backfill.")

    @field_validator("jetstream_url")
    @classmethod
    def _ws(cls, value: str) -> str:
        return _websocket_url(value)

    def password(self) -> str | None:
        """The app password, from the value or its file."""
        return _secret(self.app_password, self.app_password_file)


class MastodonServer(_Strict):
    """A Mastodon server whose hashtag timelines are polled (and streamed, with a token)."""

    url: AnyHttpUrl
    token: str | None = Field(default=None, description="User access token: enables the streaming API.")
    token_file: Path | None = None
    hashtags: list[str] = Field(default_factory=list, description="Extra hashtags, without '#'.")

    def access_token(self) -> str | None:
        """The token, from the value or its file."""
        return _secret(self.token, self.token_file)


class MastodonSource(_SearchSource):
    """Mastodon hashtag timelines on the listed servers (``min_id`` cursor, dedupe on ``uri``)."""

    interval: Duration = timedelta(minutes=2)
    servers: list[MastodonServer] = Field(default_factory=list)
    streaming: bool = Field(default=True, description="Use the streaming API on servers with a token.")


class GdeltSource(_SearchSource):
    """GDELT DOC 2.0 article list (news coverage), at most one request per 5 seconds."""

    interval: Duration = timedelta(minutes=15)
    base_url: AnyHttpUrl = AnyHttpUrl("https://api.gdeltproject.org/api/v2/doc/doc")
    min_interval: Duration = Field(default=timedelta(seconds=5))
    timespan: Duration = Field(default=timedelta(hours=1), description="Window searched on the first poll.")
    max_records: int = Field(default=250, ge=1, le=250)

    @field_validator("min_interval")
    @classmethod
    def _gdelt_limit(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=5):
            raise ValueError("GDELT allows at most one request every 5 seconds")
        return value


class RedditSource(_SearchSource):
    """Reddit search through OAuth (app credentials); off unless they are configured."""

    base_url: AnyHttpUrl = AnyHttpUrl("https://oauth.reddit.com")
    token_url: AnyHttpUrl = AnyHttpUrl("https://www.reddit.com/api/v1/access_token")
    client_id: str | None = None
    client_secret: str | None = None
    client_secret_file: Path | None = None
    subreddits: list[str] = Field(default_factory=list, description="Search only these; empty searches all.")
    username: str | None = Field(
        default=None,
        description="The Reddit account of the app's developer: the contact in the User-Agent Reddit requires.",
    )
    user_agent: str | None = Field(
        default=None,
        description="Reddit requires '<platform>:<app id>:<version> (by /u/<username>)'; derived from client_id "
        "and username when unset.",
    )
    min_interval: Duration = Field(default=timedelta(seconds=1), description="Reddit allows 100 requests a minute.")
    limit: int = Field(default=100, ge=1, le=100)

    def secret(self) -> str | None:
        """The client secret, from the value or its file."""
        return _secret(self.client_secret, self.client_secret_file)


class XSource(_SearchSource):
    """X API v2 recent search (bearer token); off unless a token is configured."""

    interval: Duration = timedelta(minutes=15)
    base_url: AnyHttpUrl = AnyHttpUrl("https://api.x.com/2")
    bearer_token: str | None = None
    bearer_token_file: Path | None = None
    max_results: int = Field(default=100, ge=10, le=100)
    min_interval: Duration = Field(default=timedelta(seconds=15), description="Recent search: 60 requests / 15 min.")

    def token(self) -> str | None:
        """The bearer token, from the value or its file."""
        return _secret(self.bearer_token, self.bearer_token_file)


class SourcesConfig(_Strict):
    """Per-source settings; a source absent here runs with its defaults or stays off."""

    rss: RssSource = Field(default_factory=RssSource)
    hackernews: HackerNewsSource = Field(default_factory=HackerNewsSource)
    bluesky: BlueskySource = Field(default_factory=BlueskySource)
    mastodon: MastodonSource = Field(default_factory=MastodonSource)
    gdelt: GdeltSource = Field(default_factory=GdeltSource)
    reddit: RedditSource = Field(default_factory=RedditSource)
    x: XSource = Field(default_factory=XSource)


class SeverityPolicy(_Strict):
    """How severe a watch's alerts are: what is at stake grows from one negative mention to a large negative surge.

    A single negative mention is ``negative_mention`` (``info`` by default: it is one voice). A surge is
    at least its kind's level (``volume_spike``, ``negative_spike``: ``warning``) and becomes
    ``critical`` when it is *large* (at least ``critical_ratio`` times its expected count and at least
    ``critical_excess`` mentions above it) and *negative* (a ``negative_spike``, or a ``volume_spike``
    whose mentions are at least ``critical_negative_share`` negative). A level set to ``critical`` makes
    every alert of that kind critical; ``critical_ratio: null`` turns the escalation off.
    """

    negative_mention: Literal["info", "warning", "critical"] = Field(
        default="info", description="Severity of one negative mention."
    )
    volume_spike: Literal["info", "warning", "critical"] = Field(
        default="warning", description="Severity of a surge of mentions that is not large and negative."
    )
    negative_spike: Literal["info", "warning", "critical"] = Field(
        default="warning", description="Severity of a surge of negative mentions that is not large."
    )
    critical_ratio: float | None = Field(
        default=3.0, ge=1.0, description="Observed/expected ratio making a negative surge critical (null: never)."
    )
    critical_excess: float = Field(
        default=30.0, ge=0.0, description="Fewest mentions above the expected count for a critical surge."
    )
    critical_negative_share: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Negative share from which a surge of all mentions counts as negative."
    )


class Watch(_Strict):
    """Something to watch for: a query, the languages and sources it applies to, its thresholds."""

    name: Name
    query: str = Field(min_length=1, description="Lucene-style query, e.g. '\"Acme Corp\" OR acme.com'.")
    languages: list[str] = Field(default_factory=list, description="Empty means every language.")
    sources: list[str] = Field(default_factory=list, description="Empty means every source.")
    negative_alerts: bool = Field(default=True, description="Raise an alert for each negative mention.")
    negative_threshold: float = Field(
        default=-0.3, ge=-1.0, le=0.0, description="Sentiment score at or below which a mention alerts."
    )
    spike: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of the spike detector's defaults for this watch (veille.spikes.DetectorSettings); "
        "durations are written as everywhere else (5m, 2h, 1d).",
    )
    labels: dict[str, str] = Field(default_factory=dict)
    severity: SeverityPolicy = Field(
        default_factory=SeverityPolicy, description="Severity of this watch's alerts (see SeverityPolicy)."
    )

    @field_validator("languages")
    @classmethod
    def _lang_codes(cls, value: list[str]) -> list[str]:
        for code in value:
            if normalise_language_tag(code) != code:
                raise ValueError(
                    f"{code!r} is not a language code: two lower-case letters of ISO 639-1, such as en or fr"
                )
        return value

    @field_validator("query")
    @classmethod
    def _query_parses(cls, value: str) -> str:
        check = _query_checker()
        if check is not None:
            check(value)
        return value


def _query_checker() -> Any:
    try:
        from veille.query import parse_query
    except ImportError:  # pragma: no cover - the query package always ships
        return None
    return parse_query


MatchOp = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*$')


@dataclass(frozen=True)
class Matcher:
    """An Alertmanager-style label matcher: ``severity="critical"``, ``watch=~"acme.*"``."""

    label: str
    op: MatchOp
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """Parse ``label<op>value``; raise ValueError with the expected form on a mistake."""
        match = _MATCHER.match(text)
        if not match:
            raise ValueError(f'{text!r} is not a matcher such as severity="critical" or watch=~"acme.*"')
        label, op, quoted, bare = match.groups()
        value = quoted.replace('\\"', '"') if quoted is not None else (bare or "")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression in {text!r}: {exc}") from exc
        return cls(label, op, value)  # type: ignore[arg-type]

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether the labels satisfy this matcher (a missing label is the empty string)."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


class EmailReceiver(_Strict):
    """Send notifications by SMTP."""

    to: list[str] = Field(min_length=1)
    sender: str = Field(alias="from", default="veille@localhost")
    smarthost: str = Field(default="127.0.0.1:1025", description="host:port of the SMTP server.")
    security: Literal["none", "starttls", "tls"] = "none"
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) to trust for the SMTP server's certificate (a private CA); "
        "the system's CAs otherwise.",
    )
    insecure_skip_verify: bool = Field(
        default=False,
        description="DANGEROUS: accept any server certificate (no CA or hostname check) under starttls/tls. "
        "The connection is still encrypted but anyone on the path can read the mail and the password. "
        "Prefer ca_file.",
    )
    username: str | None = None
    password: str | None = None
    password_file: Path | None = None
    subject_template: str | None = None
    html_template: Path | None = None
    text_template: Path | None = None
    digest: Duration | None = Field(default=None, description="Send one email per group per interval.")

    @model_validator(mode="after")
    def _password_file_readable(self) -> EmailReceiver:
        if self.password is None and self.password_file is not None:  # what the notifier reads at start
            _read_file_field("password_file", self.password_file)
        return self

    @field_validator("to")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            if not re.fullmatch(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+", address):
                raise ValueError(f"{address!r} is not an email address")
        return value


class WebhookReceiver(_Strict):
    """POST a signed JSON body (Standard Webhooks) to a URL."""

    url: AnyHttpUrl
    secret: str | None = Field(default=None, description="Signing secret, 'whsec_' + base64.")
    secret_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = timedelta(seconds=10)
    format: Literal["veille", "alertmanager"] = "veille"
    body_template: str | None = None

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: str | None) -> str | None:
        if value:
            webhook_secret_key(value)
        return value

    @model_validator(mode="after")
    def _secret_file_holds_a_secret(self) -> WebhookReceiver:
        if self.secret is None and self.secret_file is not None:  # what the notifier reads at start
            text = _read_file_field("secret_file", self.secret_file)
            try:
                webhook_secret_key(text)
            except ValueError as exc:
                raise ValueError(f"secret_file {self.secret_file}: {exc}") from None
        return self

    @field_validator("headers")
    @classmethod
    def _no_header_injection(cls, value: dict[str, str]) -> dict[str, str]:
        return _no_line_breaks(value)


def _no_line_breaks(value: dict[str, str]) -> dict[str, str]:
    for key, val in value.items():
        if any(c in key + val for c in "\r\n\0"):
            raise ValueError(f"header {key!r} contains a line break")
    return value


class BasicAuth(_Strict):
    """HTTP basic authentication: a user name and a password (given, or read from a file)."""

    username: str = Field(min_length=1)
    password: str | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if (self.password is None) == (self.password_file is None):
            raise ValueError("basic_auth needs exactly one of password and password_file")
        if self.password_file is not None:  # what the notifier reads at start
            _read_file_field("password_file", self.password_file)
        return self

    def secret(self) -> str:
        """The password, from the value or its file."""
        if self.password is not None:
            return self.password
        assert self.password_file is not None  # the validator wants one of them
        return read_secret_file(self.password_file)


ALERTS_API_PATH = "/api/v2/alerts"


class AlertmanagerReceiver(_Strict):
    """Post alerts to an existing Alertmanager's ``/api/v2/alerts``, as Prometheus does.

    Each alert gets its own label set (``alert_id``), so Alertmanager keeps every mention apart and
    a resolution closes the alert it resolves. A firing alert is posted with ``endsAt`` =
    now + ``ends_after`` and re-posted every ``resend_interval`` while it fires, so Alertmanager
    keeps it active for as long as veille does and resolves it by itself only if veille stops
    telling it (Prometheus' ``resend_delay`` and its 4x rule). A resolved alert is posted with
    ``endsAt`` = now.
    """

    url: AnyHttpUrl = Field(
        description="Alertmanager's base URL (http://alertmanager:9093, with its --web.route-prefix if any); "
        "alerts are posted to <url>/api/v2/alerts."
    )
    timeout: Duration = timedelta(seconds=10)
    resend_interval: Duration = Field(
        default=timedelta(minutes=1), description="Firing alerts are posted again this often (renewing endsAt)."
    )
    ends_after: Duration | None = Field(
        default=None,
        description="endsAt of a firing alert, from the time it is posted; 4 x resend_interval when unset. "
        "Alertmanager resolves an alert veille stopped renewing (veille down) this long after its last post.",
    )
    basic_auth: BasicAuth | None = None
    bearer_token: str | None = None
    bearer_token_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers_one_line(cls, value: dict[str, str]) -> dict[str, str]:
        return _no_line_breaks(value)

    @field_validator("resend_interval")
    @classmethod
    def _resend_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("resend_interval must be at least 1s")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertmanagerReceiver:
        if self.ends_after is not None and self.ends_after <= self.resend_interval:
            raise ValueError(
                f"ends_after ({self.ends_after}) must be longer than resend_interval ({self.resend_interval}), "
                "or Alertmanager resolves firing alerts between two posts (4 x resend_interval is the default)"
            )
        tokens = self.bearer_token is not None or self.bearer_token_file is not None
        if self.basic_auth is not None and tokens:
            raise ValueError("use basic_auth or a bearer token, not both")
        if self.bearer_token is None and self.bearer_token_file is not None:  # what the notifier reads at start
            _read_file_field("bearer_token_file", self.bearer_token_file)
        return self

    def alerts_url(self) -> str:
        """The URL alerts are posted to: ``<url>/api/v2/alerts`` (``url`` may already end with it)."""
        base = str(self.url).rstrip("/")
        return base if base.endswith(ALERTS_API_PATH) else base + ALERTS_API_PATH

    def lifetime(self) -> timedelta:
        """How far past a post a firing alert's ``endsAt`` lies."""
        return self.ends_after if self.ends_after is not None else 4 * self.resend_interval

    def authorization(self) -> str | None:
        """The ``Authorization`` header value, from the credentials (read from their files now), or None."""
        import base64 as b64

        if self.basic_auth is not None:
            pair = f"{self.basic_auth.username}:{self.basic_auth.secret()}".encode()
            return "Basic " + b64.b64encode(pair).decode()
        token = _secret(self.bearer_token, self.bearer_token_file)
        return f"Bearer {token}" if token else None


class ChatReceiver(_Strict):
    """Post to a Slack incoming webhook or a Microsoft Teams workflow webhook."""

    url: AnyHttpUrl
    timeout: Duration = timedelta(seconds=10)


class QuietHours(_Strict):
    """Hours during which a receiver is not disturbed, except by critical alerts if allowed."""

    start: ClockTime
    end: ClockTime
    timezone: str = "UTC"
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(default_factory=list)
    critical_bypass: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class Receiver(_Strict):
    """A named destination: any number of email, webhook, Slack, Teams and Alertmanager integrations."""

    name: Name
    email: list[EmailReceiver] = Field(default_factory=list)
    webhook: list[WebhookReceiver] = Field(default_factory=list)
    slack: list[ChatReceiver] = Field(default_factory=list)
    teams: list[ChatReceiver] = Field(default_factory=list)
    alertmanager: list[AlertmanagerReceiver] = Field(default_factory=list)
    send_resolved: bool = True
    quiet_hours: QuietHours | None = None


class Route(_Strict):
    """A node of the route tree, as in Alertmanager: matchers, receiver, grouping, children."""

    receiver: str | None = None
    matchers: list[str] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)

    @field_validator("matchers")
    @classmethod
    def _matchers_parse(cls, value: list[str]) -> list[str]:
        for text in value:
            Matcher.parse(text)
        return value

    def parsed_matchers(self) -> list[Matcher]:
        """The matchers of this node, parsed."""
        return [Matcher.parse(text) for text in self.matchers]


DEFAULT_ROUTE = Route(
    group_by=["watch", "kind"],
    group_wait=timedelta(seconds=30),
    group_interval=timedelta(minutes=5),
    repeat_interval=timedelta(hours=4),
)


class ArchiveConfig(_Strict):
    """The mention archive (``services/archive``): where it writes, how long it keeps, how it batches."""

    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL: sqlite+aiosqlite:///path/archive.db or postgresql+asyncpg://user@host/db; "
            "default: archive.sqlite3 in the data directory (VEILLE_DATA_DIR). VEILLE_ARCHIVE_DATABASE_URL wins."
        ),
    )
    password_file: Path | None = Field(
        default=None, description="File holding the database password (VEILLE_ARCHIVE_DATABASE_PASSWORD wins)."
    )
    retention: Duration = Field(default=timedelta(days=400), description="Mentions and alerts older than this go.")
    batch_size: int = Field(default=500, ge=1, le=10_000, description="Most messages written in one transaction.")
    writers: int = Field(
        default=2,
        ge=1,
        le=4,
        description=(
            "Batches written at once, each in its own transaction on its own connection (PostgreSQL: the "
            "server works on them side by side). SQLite takes one writer at a time, so it writes one batch at a time."
        ),
    )

    @field_validator("retention")
    @classmethod
    def _at_least_a_day(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise ValueError("keep mentions at least 1d (retention works by day and by month)")
        return value


_HTTP_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl)


def _url_as_written(value: str) -> str:
    """Check ``value`` is an http(s) URL and keep it as the user wrote it.

    pydantic's ``AnyHttpUrl`` normalises ``https://veille.example.org`` to ``https://veille.example.org/``,
    and a link built from it (``…/alerts``) then reads ``…org//alerts``; people's URLs go out unchanged.
    """
    _HTTP_URL.validate_python(value)
    return value


HttpUrlAsWritten = Annotated[str, AfterValidator(_url_as_written)]


class VeilleConfig(_Strict):
    """The whole configuration file."""

    version: Literal[1] = 1
    external_url: HttpUrlAsWritten | None = Field(
        default=None,
        description="The http(s) URL at which people reach veille (its console or a dashboard): linked from "
        "email, Slack and Teams notifications ('…and N more' included), sent as external_url in veille "
        "webhooks, externalURL in Alertmanager-format webhooks and generatorURL of alerts posted to an "
        "Alertmanager.",
    )
    watches: list[Watch] = Field(default_factory=list)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    receivers: list[Receiver] = Field(default_factory=list)
    route: Route = DEFAULT_ROUTE
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)

    @model_validator(mode="after")
    def _references(self) -> VeilleConfig:
        problems = [f"@{_dotted(loc)}: {message}" for loc, message in cross_problems(self.model_dump(by_alias=True))]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def watch(self, name: str) -> Watch:
        """Return the watch called ``name`` or raise KeyError."""
        for watch in self.watches:
            if watch.name == name:
                return watch
        raise KeyError(name)


ALERT_LABELS = ("watch", "kind", "severity", "lang", "language", "source")
"""Labels every alert carries (besides its watch's own ``labels``): what routes group and match on."""

_Loc = tuple[str | int, ...]


def _items(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list) else []


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def cross_problems(data: Any) -> list[tuple[_Loc, str]]:
    """Mistakes that span fields, found on the plain data (even where other fields are wrong).

    Duplicate watch and receiver names, references to undefined watches and receivers, spike
    settings the detector refuses, ``group_by`` labels no alert carries, and quiet hours on a receiver
    that posts to an Alertmanager. Run by
    :class:`VeilleConfig` itself and, when other fields fail, by :func:`parse_config` on the raw file,
    so that every mistake is told in one pass.
    """
    data = _dict(data)
    problems: list[tuple[_Loc, str]] = []
    watches = [(i, w) for i, w in _items(data.get("watches")) if isinstance(w, dict)]
    receivers = [(i, r) for i, r in _items(data.get("receivers")) if isinstance(r, dict)]
    known_watches = _no_duplicates(watches, "watches", problems)
    known_receivers = _no_duplicates(receivers, "receivers", problems)
    for index, receiver in receivers:
        if receiver.get("alertmanager") and receiver.get("quiet_hours") is not None:
            problems.append(
                (
                    ("receivers", index, "quiet_hours"),
                    "a receiver posting to an Alertmanager cannot wait for quiet hours (its firing alerts would "
                    "expire there unrenewed): mute in Alertmanager (time_intervals), or put the alertmanager "
                    "entry in a receiver of its own",
                )
            )
    for index, watch in watches:
        spike = watch.get("spike")
        if isinstance(spike, dict) and spike:
            problems.extend((("watches", index, "spike", *loc), msg) for loc, msg in _spike_problems(spike))
    sources = _dict(data.get("sources"))
    rss = _dict(sources.get("rss"))
    for index, feed in _items(rss.get("feeds")):
        name = _dict(feed).get("watch")
        if isinstance(name, str) and name not in known_watches:
            problems.append((("sources", "rss", "feeds", index, "watch"), _undefined("watch", name, known_watches)))
    for index, search in _items(rss.get("google_news")):
        name = _dict(search).get("watch")
        if isinstance(name, str) and name not in known_watches:
            problems.append(
                (("sources", "rss", "google_news", index, "watch"), _undefined("watch", name, known_watches))
            )
    for section in ("hackernews", "bluesky", "mastodon", "gdelt", "reddit", "x"):
        for index, name in _items(_dict(sources.get(section)).get("watches")):
            if isinstance(name, str) and name not in known_watches:
                problems.append((("sources", section, "watches", index), _undefined("watch", name, known_watches)))
    labels = set(ALERT_LABELS)
    for _, watch in watches:
        labels.update(str(key) for key in _dict(watch.get("labels")))
    route = data.get("route")
    if isinstance(route, dict):
        if receivers and route.get("receiver") is None:
            problems.append((("route", "receiver"), "the root route needs a receiver"))
        _check_route(route, known_receivers, labels, ("route",), problems)
    return problems


def _undefined(what: str, name: str, known: set[str]) -> str:
    choices = ", ".join(sorted(known)[:10]) or "none is defined"
    return f"{name!r} is not a defined {what} ({what}s: {choices})"


def _no_duplicates(
    entries: list[tuple[int, dict[Any, Any]]], section: str, problems: list[tuple[_Loc, str]]
) -> set[str]:
    seen: set[str] = set()
    for index, entry in entries:
        name = entry.get("name")
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(((section, index, "name"), f"another entry is already called {name!r}"))
        seen.add(name)
    return seen


def _spike_problems(spike: dict[Any, Any]) -> list[tuple[_Loc, str]]:
    try:
        DetectorSettings.model_validate(spike)
    except ValidationError as exc:
        known = ", ".join(DetectorSettings.model_fields)
        out: list[tuple[_Loc, str]] = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            if error["type"] == "extra_forbidden":
                out.append((loc, f"unknown spike setting {loc[-1]!r} (known: {known})"))
            else:
                out.append((loc, error["msg"].removeprefix("Value error, ")))
        return out
    except (ArithmeticError, TypeError, ValueError) as exc:  # a check the detector lacks: still a mistake, told
        return [((), f"the spike detector refuses these settings: {exc}")]
    return []


def _check_route(
    route: dict[Any, Any], receivers: set[str], labels: set[str], where: _Loc, problems: list[tuple[_Loc, str]]
) -> None:
    receiver = route.get("receiver")
    if isinstance(receiver, str) and receiver not in receivers:
        problems.append(((*where, "receiver"), _undefined("receiver", receiver, receivers)))
    for index, label in _items(route.get("group_by")):
        if isinstance(label, str) and label != "..." and label not in labels:
            problems.append(
                (
                    (*where, "group_by", index),
                    f"{label!r} is not a label alerts carry ({', '.join(sorted(labels))}, or '...' for all)",
                )
            )
    for index, child in _items(route.get("routes")):
        if isinstance(child, dict):
            _check_route(child, receivers, labels, (*where, "routes", index), problems)


# ---------------------------------------------------------------- loading with line numbers


@dataclass(frozen=True)
class ConfigProblem:
    """One mistake in a configuration file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class ConfigError(Exception):
    """The configuration has one or more mistakes; ``problems`` lists them all."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


# Bounds on what a configuration file may make the loader do. Measured (PyYAML's pure-Python
# composer, 2 cores): examples/veille.yaml is 1.5 KB; a rich generated config of 1,000 watches
# (query, languages, sources, labels each), 1,000 feeds, 20 receivers and 41 routes is 463 KB and
# checks in about 3 s. 1 MiB is twice that, and keeps the worst case to seconds, not minutes.
MAX_CONFIG_BYTES = 1024 * 1024
# Values (mappings, lists, keys, scalars): that config has 32,725; a 1 MiB list of one-digit
# numbers would have 524,000 and take 25 s and 500 MB. 200,000 is six times the former.
MAX_NODES = 200_000
# Nesting: the deepest real path (route.routes[i].routes[j]..., receivers[i].email[j].to[k]) is
# about a dozen levels; 64 leaves room for route trees 30 levels deep and stays far from
# Python's recursion limit.
MAX_DEPTH = 64
# Aliases may repeat a shared block (a list of sources, labels) in every watch: 100 nodes each for
# 1,000 watches. Beyond that it is an alias bomb, which would otherwise grow without bound.
MAX_ALIAS_NODES = 100_000
# ${VAR} values are secrets, URLs, tokens: 64 KiB each is plenty; all of them together may add
# no more than a whole file's worth of text.
MAX_ENV_VALUE = 64 * 1024
MAX_ENV_TOTAL = MAX_CONFIG_BYTES

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Refused(yaml.YAMLError):
    """The file is refused before it is fully read: ``problem`` says why, ``mark`` where."""

    def __init__(self, problem: str, mark: yaml.Mark | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer caps nesting depth and alias expansion and refuses alias loops.

    For every finished node it records how many nodes it stands for once aliases are expanded,
    and how tall it is; an alias then adds that many nodes, and that height to its depth, so a
    "billion laughs" or a chain of aliases building depth is refused at the alias that crosses a
    bound, before anything is expanded.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._measure: dict[yaml.Node, tuple[int, int]] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            node = super().compose_node(parent, index)
            if node is None:  # pragma: no cover - an alias always names a node
                raise _Refused("this alias names nothing", mark)
            if node not in self._measure:
                raise _Refused(f"the alias *{_anchor_name(node, self)} refers to itself (a loop)", mark)
            size, height = self._measure[node]
            self._alias_nodes += size
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _Refused(
                    f"aliases expand to more than {MAX_ALIAS_NODES:,} values (an alias bomb?); "
                    "write the repeated part out or alias less",
                    mark,
                )
            if self._depth + height > MAX_DEPTH:
                raise _Refused(f"this alias nests the data deeper than {MAX_DEPTH} levels", mark)
            return node
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"the data is nested deeper than {MAX_DEPTH} levels", mark)
        if len(self._measure) >= MAX_NODES:
            raise _Refused(f"the file holds more than {MAX_NODES:,} values (keys, items, scalars)", mark)
        node = super().compose_node(parent, index)
        if node is None:  # pragma: no cover - the composer always returns a node here
            raise _Refused("the data could not be composed", mark)
        self._depth -= 1
        size, height = 1, 1
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        for child in children:
            child_size, child_height = self._measure[child]
            size += child_size
            height = max(height, child_height + 1)
        self._measure[node] = (size, height)
        return node


def _anchor_name(node: yaml.Node, loader: _BoundedLoader) -> str:
    return next((name for name, anchored in loader.anchors.items() if anchored is node), "?")


@dataclass
class _EnvBudget:
    """What ``${VAR}`` substitution may still add, for the whole file."""

    left: int = MAX_ENV_TOTAL
    exhausted: bool = False


def _interpolate(text: str, env: dict[str, str], missing: list[str], budget: _EnvBudget | None = None) -> str:
    budget = _EnvBudget() if budget is None else budget

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            value = env[name]
            if len(value) > MAX_ENV_VALUE:
                raise ValueError(
                    f"environment variable {name} is {len(value):,} characters long, "
                    f"more than the {MAX_ENV_VALUE:,} a substituted value may be"
                )
        elif default is not None:
            value = default
        else:
            missing.append(name)
            return ""
        budget.left -= len(value)
        if budget.left < 0:
            budget.exhausted = True
            raise ValueError(
                f"${{...}} substitutions add more than {MAX_ENV_TOTAL:,} characters to the file in all; stopped here"
            )
        return value

    return _ENV.sub(repl, text)


def _scalar(node: yaml.Node) -> tuple[Any, str | None]:
    """Construct one scalar node the way yaml.safe_load would; (raw text, reason) when it cannot."""
    try:
        return yaml.SafeLoader("").construct_object(node, deep=True), None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        return str(getattr(node, "value", "")), f"cannot read this value: {getattr(exc, 'problem', None) or exc}"


def _to_python(
    node: yaml.Node,
    lines: dict[tuple[str | int, ...], int],
    path: tuple[str | int, ...],
    env: dict[str, str],
    budget: _EnvBudget | None = None,
) -> tuple[Any, list[tuple[tuple[str | int, ...], str]]]:
    """Turn a composed YAML node into plain data, recording each path's line number."""
    budget = _EnvBudget() if budget is None else budget
    lines[path] = node.start_mark.line + 1
    errors: list[tuple[tuple[str | int, ...], str]] = []
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                lines[(*path, "?")] = key_node.start_mark.line + 1
                errors.append(((*path, "?"), "a key must be a plain name, not a list or a mapping"))
                continue
            key, problem = _scalar(key_node)
            if problem:
                errors.append(((*path, str(key)), problem))
            if key in out:
                errors.append(((*path, key), f"key {key!r} appears twice"))
            value, errs = _to_python(value_node, lines, (*path, key), env, budget)
            out[key] = value
            errors.extend(errs)
            lines[(*path, key)] = key_node.start_mark.line + 1
        return out, errors
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, child in enumerate(node.value):
            value, errs = _to_python(child, lines, (*path, index), env, budget)
            items.append(value)
            errors.extend(errs)
        return items, errors
    value, problem = _scalar(node)
    if problem:
        errors.append((path, problem))
    if isinstance(value, str) and "${" in value and not budget.exhausted:
        missing: list[str] = []
        try:
            value = _interpolate(value, env, missing, budget)
        except ValueError as exc:
            value = ""
            errors.append((path, str(exc)))
        for name in missing:
            errors.append((path, f"environment variable {name} is not set"))
    return value, errors


def _line_for(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_LOCATED = re.compile(r"^@([A-Za-z0-9_.\[\]]+): (.*)$")


def parse_config(text: str, *, filename: str = "<config>", env: dict[str, str] | None = None) -> VeilleConfig:
    """Validate configuration text; raise :class:`ConfigError` naming line and field of each mistake."""
    env = dict(os.environ) if env is None else env
    if len(text) > MAX_CONFIG_BYTES:
        end = text.count("\n", 0, MAX_CONFIG_BYTES) + 1
        raise ConfigError([ConfigProblem(filename, end, "", _too_big(f"{len(text):,} characters"))])
    try:
        loader = _BoundedLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except _Refused as exc:
        where = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        raise ConfigError([ConfigProblem(filename, where, "", exc.problem)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigProblem(filename, line, "", f"not valid YAML: {problem}")]) from exc
    if root is None:
        data: Any = {}
        lines: dict[tuple[str | int, ...], int] = {}
        pre_errors: list[tuple[tuple[str | int, ...], str]] = []
    else:
        lines = {}
        data, pre_errors = _to_python(root, lines, (), env, _EnvBudget())
    problems = [ConfigProblem(filename, _line_for(lines, loc), _dotted(loc), msg) for loc, msg in pre_errors]
    if not isinstance(data, dict):
        problems.append(ConfigProblem(filename, 1, "", "the file must be a mapping (watches:, receivers:, ...)"))
        raise ConfigError(problems)
    try:
        config = VeilleConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = f"unknown field {loc[-1]!r}"
            for part in message.split("\n"):
                located = _LOCATED.match(part)
                here, text = (tuple(_split_dotted(located.group(1))), located.group(2)) if located else (loc, part)
                problems.append(ConfigProblem(filename, _line_for(lines, here), _dotted(here), text))
        # Field mistakes stop pydantic before the checks that span fields: run those on the raw data too.
        told = {(p.field, p.message) for p in problems}
        for loc, text in cross_problems(data):
            if (_dotted(loc), text) not in told:
                problems.append(ConfigProblem(filename, _line_for(lines, loc), _dotted(loc), text))
        problems.sort(key=lambda p: p.line or 0)
        raise ConfigError(problems) from exc
    if problems:
        raise ConfigError(problems)
    return config


def _split_dotted(dotted: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\[\d+\]", dotted):
        out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


def load_config(path: str | Path, *, env: dict[str, str] | None = None) -> VeilleConfig:
    """Read and validate a configuration file."""
    path = Path(path)
    try:
        with path.open("rb") as file:  # at most one byte too many: /dev/zero or a pipe is bounded too
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", f"cannot read the file: {exc.strerror}")]) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        size = _size_of(path)
        what = f"{size:,} bytes" if size > MAX_CONFIG_BYTES else f"more than {MAX_CONFIG_BYTES:,} bytes"
        raise ConfigError([ConfigProblem(str(path), raw.count(b"\n") + 1, "", _too_big(what))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigProblem(str(path), None, "", "the file is not UTF-8 text")]) from exc
    return parse_config(text, filename=str(path), env=env)


def _too_big(what: str) -> str:
    return (
        f"the file is {what}; a configuration may be at most {MAX_CONFIG_BYTES:,} bytes (1 MiB), "
        "a limit reached on this line"
    )


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
