"""Who may use the console: argon2 password hashes, signed session cookies, CSRF tokens, login throttling.

- Passwords: argon2id (``argon2-cffi``), stored in ``console_users`` (``veille users add``).
- Session: the cookie ``veille_session`` holds ``base64(json{u, r, exp}).hmac``, signed with the
  console's secret (HMAC-SHA256); HttpOnly, SameSite=Lax, Secure when the console is served over https.
- CSRF: every POST carries ``csrf``, the HMAC of a random per-browser value kept in the cookie
  ``veille_csrf``; a form from another site cannot know it.
- Roles: viewer < responder < admin; every action is checked on the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["LoginThrottle", "Signer", "User", "hash_password", "load_secret", "verify_password"]

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
    """Whether ``password`` matches ``stored`` (a dummy check when there is no user, same cost)."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
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
