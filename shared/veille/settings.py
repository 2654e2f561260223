"""Deployment settings from the environment (``VEILLE_*``), read only at composition roots.

Every setting can also be given as ``VEILLE_<NAME>_FILE`` pointing to a file holding the value
(Docker secrets, Kubernetes secret volumes): the file wins over nothing, loses to the plain variable.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "MAX_SECRET_BYTES",
    "ServiceSettings",
    "SettingsError",
    "load_settings",
    "nats_inbox_prefix",
    "read_secret_file",
]


MAX_SECRET_BYTES = 64 * 1024
"""Largest secret file read: passwords, tokens and keys are far smaller."""


def read_secret_file(path: Path) -> str:
    """The stripped text of a secret file (``VEILLE_*_FILE``, ``*_file`` in the configuration).

    Raises ``ValueError`` in words for anything but a regular file of at most 64 KiB: a device
    (``/dev/zero``), a pipe or a wrong path must not hang or fill memory.
    """
    if not stat.S_ISREG(path.stat().st_mode):
        raise ValueError(f"{path} is not a regular file; a secret file holds only the secret")
    with path.open("rb") as handle:
        data = handle.read(MAX_SECRET_BYTES + 1)
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"{path} is larger than {MAX_SECRET_BYTES // 1024} KiB; a secret file holds only the secret")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start})") from exc


class ServiceSettings(BaseSettings):
    """Settings shared by every service; localhost defaults so a laptop needs none."""

    model_config = SettingsConfigDict(env_prefix="VEILLE_", extra="ignore", frozen=True, env_ignore_empty=True)

    nats_url: str = Field(default="nats://127.0.0.1:4222", description="Comma-separated NATS server URLs.")
    nats_user: str | None = Field(default=None, description="NATS user (with VEILLE_NATS_PASSWORD).")
    nats_password: SecretStr | None = None
    nats_token: SecretStr | None = Field(default=None, description="NATS token (instead of a user).")
    config: Path = Field(default=Path("veille.yaml"), description="The YAML file of watches and routes.")
    http_host: str = Field(default="127.0.0.1", description="Address of /metrics, /healthz, /readyz.")
    http_port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    data_dir: Path = Path("var")
    stream_replicas: int = Field(default=1, ge=1, le=5)
    instance: str = Field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    user_agent: str = "veille/0.1 (+https://github.com/veille/veille)"

    @model_validator(mode="before")
    @classmethod
    def _read_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for name in cls.model_fields:
            key = f"VEILLE_{name.upper()}_FILE"
            if name not in data and key in os.environ:
                try:
                    data[name] = read_secret_file(Path(os.environ[key]))
                except (OSError, ValueError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                    raise ValueError(f"{key}={os.environ[key]}: {reason}") from None
        return data

    def nats_servers(self) -> list[str]:
        """The NATS server URLs as a list."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    def nats_connect_options(self) -> dict[str, Any]:
        """Keyword arguments of ``nats.connect`` for these settings: servers, credentials, inbox prefix.

        The one place that turns settings into connection options; the services' broker
        (``messaging.make_broker``) and every CLI command use it. A user gets the inbox prefix
        ``_INBOX_<user>`` so that the NATS permissions can let it read only its own replies
        (``veille.natsauth``).
        """
        options: dict[str, Any] = {"servers": self.nats_servers()}
        if self.nats_user:
            options["user"] = self.nats_user
            options["password"] = self.nats_password.get_secret_value() if self.nats_password else ""
            options["inbox_prefix"] = nats_inbox_prefix(self.nats_user)
        elif self.nats_token:
            options["token"] = self.nats_token.get_secret_value()
        return options

    def nats_identity(self) -> str:
        """Who these settings connect as, for messages (never the secret itself)."""
        if self.nats_user:
            return f"user {self.nats_user!r}"
        if self.nats_token:
            return "a token"
        return "no credentials"


def nats_inbox_prefix(user: str) -> str:
    """The reply-subject prefix of NATS ``user``: ``_INBOX_<user>`` with unsafe characters as ``_``."""
    token = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in user)
    return f"_INBOX_{token}"


class SettingsError(ValueError):
    """The ``VEILLE_*`` environment has mistakes; the message names each variable, in words."""


def load_settings(**overrides: Any) -> ServiceSettings:
    """The deployment settings from the environment (and ``overrides``), or :class:`SettingsError` in words."""
    try:
        return ServiceSettings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            lines.append(f"  VEILLE_{field.upper()}: {message}" if field else f"  {message}")
        raise SettingsError(
            "the deployment settings (VEILLE_* environment variables) have mistakes:\n" + "\n".join(lines)
        ) from None
