"""Who may use the console: argon2 password hashes, signed session cookies, CSRF tokens, login throttling.

- Passwords: argon2id (``argon2-cffi``), stored in ``console_users`` (``veille users add``).
- Session: the cookie ``veille_session`` holds ``base64(json{u, r, exp}).hmac``, signed with the
  console's secret (HMAC-SHA256); HttpOnly, SameSite=Lax, Secure when the console is served over https.
- CSRF: every POST carries ``csrf``, the HMAC of a random per-browser value kept in the cookie
  ``veille_csrf``; a form from another site cannot know it.
- Roles: viewer < responder < admin; every action is checked on the server, with the role the
  database holds now (a role change or a disabled account takes effect at the session's next request).
- Single sign-on (:class:`TrustedProxy`): a reverse proxy such as oauth2-proxy authenticates people and
  passes who they are in headers (``X-Forwarded-User``, ``-Email``, ``-Groups``). Those headers are
  believed only on connections from the configured proxy addresses; anyone can type them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "LoginThrottle",
    "Signer",
    "SsoIdentity",
    "TrustedProxy",
    "User",
    "hash_password",
    "load_secret",
    "parse_role_map",
    "verify_password",
]

_hasher = PasswordHasher()
RANK = {"viewer": 0, "responder": 1, "admin": 2}
_DUMMY = _hasher.hash("not a password")


@dataclass(frozen=True)
class User:
    """A logged-in person (or ``local`` when no account exists and the console is loopback only)."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this user has at least ``role``."""
        return RANK.get(self.role, -1) >= RANK[role]


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (a dummy check when there is no user or no password, same cost).

    An empty ``stored`` (a single-sign-on account has no password) never matches.
    """
    try:
        return _hasher.verify(stored or _DUMMY, password) and bool(stored)
    except (VerificationError, InvalidHashError):
        return False


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """The signing secret: configured, else kept in ``<data_dir>/console.secret`` (made once, mode 0600)."""
    if configured:
        return configured.encode()
    path = Path(data_dir) / "console.secret"
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32).encode()
    with open(path, "xb") as handle:
        path.chmod(0o600)
        handle.write(value)
    return value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: bytes, session_seconds: float = 12 * 3600) -> None:
        self.secret = secret
        self.session_seconds = session_seconds

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.new(self.secret, f"{purpose}:{data}".encode(), hashlib.sha256).digest())

    def session(self, user: User, now: float | None = None) -> str:
        """A cookie value for ``user``."""
        exp = int((now or time.time()) + self.session_seconds)
        body = _b64(json.dumps({"u": user.name, "r": user.role, "exp": exp}, separators=(",", ":")).encode())
        return f"{body}.{self._mac('session', body)}"

    def user(self, cookie: str | None, now: float | None = None) -> User | None:
        """The user a cookie names, if its signature holds and it has not expired."""
        if not cookie or "." not in cookie:
            return None
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            data = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("exp", 0) < (now or time.time()) or data.get("r") not in RANK:
            return None
        return User(str(data["u"]), str(data["r"]))

    def csrf(self, browser: str) -> str:
        """The CSRF token for the browser holding ``browser`` in its ``veille_csrf`` cookie."""
        return self._mac("csrf", browser)

    def csrf_ok(self, browser: str | None, token: str | None) -> bool:
        """Whether ``token`` is this browser's CSRF token."""
        return bool(browser and token) and hmac.compare_digest(self.csrf(browser or ""), token or "")


class LoginThrottle:
    """At most ``limit`` failed logins per client address in ``window`` seconds; memory bounded."""

    def __init__(self, limit: int = 10, window: float = 300.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self.failures.get(client, deque())
        while times and times[0] < now - self.window:
            times.popleft()
        return times

    def blocked(self, client: str, now: float | None = None) -> bool:
        """Whether ``client`` has failed too often lately."""
        return len(self._recent(client, now or time.monotonic())) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        """Count a failed login from ``client``."""
        now = now or time.monotonic()
        if client not in self.failures and len(self.failures) >= self.max_clients:
            self.failures.pop(next(iter(self.failures)))
        times = self._recent(client, now)
        times.append(now)
        self.failures[client] = times


@dataclass(frozen=True)
class SsoIdentity:
    """Who a trusted proxy says is asking: name, e-mail, groups, and the role they map to (None: no role)."""

    name: str
    email: str | None
    groups: tuple[str, ...]
    role: str | None


class TrustedProxy:
    """Single sign-on by a reverse proxy's headers, believed from ``trusted`` addresses only.

    ``role_map`` maps a group to a role; a person in several groups gets the highest of their roles,
    one in none of them ``default_role`` (``None``: refused).
    """

    def __init__(
        self,
        *,
        user_header: str,
        email_header: str = "X-Forwarded-Email",
        groups_header: str = "X-Forwarded-Groups",
        role_map: dict[str, str] | None = None,
        default_role: str | None = "viewer",
        trusted: list[str] | tuple[str, ...] = (),
        logout_url: str = "/oauth2/sign_out",
    ) -> None:
        for role in [*(role_map or {}).values(), *([default_role] if default_role else [])]:
            if role not in RANK:
                raise ValueError(f"single sign-on: role {role!r} is not one of {', '.join(RANK)}")
        if not trusted:
            raise ValueError(
                "single sign-on needs the proxy's addresses (VEILLE_CONSOLE_SSO_TRUSTED_IPS, e.g. 127.0.0.1/32): "
                "without them anyone could send the header"
            )
        self.user_header = user_header
        self.email_header = email_header
        self.groups_header = groups_header
        self.role_map = dict(role_map or {})
        self.default_role = default_role
        self.logout_url = logout_url
        try:
            self.trusted = [ipaddress.ip_network(cidr.strip(), strict=False) for cidr in trusted]
        except ValueError as exc:
            raise ValueError(f"single sign-on: trusted address {exc}") from None

    def trusts(self, remote: str | None) -> bool:
        """Whether a connection from ``remote`` comes from the proxy."""
        if not remote:
            return False
        try:
            address = ipaddress.ip_address(remote.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.trusted)

    def identity(self, name: str, email: str | None, group_values: list[str]) -> SsoIdentity:
        """The identity in the headers' values (groups: one per header line or comma-separated)."""
        groups = tuple(dict.fromkeys(g.strip() for value in group_values for g in value.split(",") if g.strip()))
        roles = [self.role_map[g] for g in groups if g in self.role_map]
        role = max(roles, key=RANK.__getitem__) if roles else self.default_role
        return SsoIdentity(name.strip()[:200], (email or "").strip()[:320] or None, groups[:100], role)


def parse_role_map(text: str) -> dict[str, str]:
    """``group=role,group=role`` (or a JSON object) as a dict; ValueError in words."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the role map must be an object of group: role")
        return {str(k): str(v) for k, v in data.items()}
    result: dict[str, str] = {}
    for part in text.split(","):
        group, sep, role = part.strip().rpartition("=")
        if not sep or not group.strip():
            raise ValueError(f"role map entry {part.strip()!r} is not group=role")
        result[group.strip()] = role.strip()
    return result
