"""The console's database work: users, alert timeline and history, corrections (tables from migration 0004)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Integer, MetaData, Table, Text, false, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.schema import alerts, mentions

__all__ = [
    "ACTIONS",
    "ROLES",
    "Account",
    "AlertView",
    "ConsoleStore",
    "alert_actions",
    "console_users",
    "corrections",
    "user_actions",
]

ROLES = ("viewer", "responder", "admin")
ACTIONS = ("acknowledge", "assign", "comment", "resolve", "silence")
LABELS = ("negative", "neutral", "positive")

_meta = MetaData()
_TIME = DateTime(timezone=True)
console_users = Table(
    "console_users",
    _meta,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("created_at", _TIME, nullable=False),
    Column("source", Text, nullable=False, server_default="local"),
    Column("email", Text),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("last_login", _TIME),
)
user_actions = Table(
    "user_actions",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", _TIME, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("target", Text, nullable=False),
    Column("detail", Text, nullable=False),
)
alert_actions = Table(
    "alert_actions",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Text, nullable=False),
    Column("at", _TIME, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("detail", Text, nullable=False),
    Column("silence_id", Text),
)
corrections = Table(
    "corrections",
    _meta,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mention_id", Text, nullable=False),
    Column("at", _TIME, nullable=False),
    Column("actor", Text, nullable=False),
    Column("predicted", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("lang", Text),
    Column("text", Text, nullable=False),
)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")


@dataclass(frozen=True)
class Account:
    """A console account as stored."""

    name: str
    role: str
    source: str
    email: str | None
    disabled: bool
    created_at: datetime
    last_login: datetime | None
    password_hash: str


def _account(row: Any) -> Account:
    return Account(
        name=row["name"],
        role=row["role"],
        source=row["source"],
        email=row["email"],
        disabled=bool(row["disabled"]),
        created_at=_utc(row["created_at"]),  # type: ignore[arg-type]
        last_login=_utc(row["last_login"]),
        password_hash=row["password_hash"],
    )


@dataclass(frozen=True)
class UserAction:
    """One recorded change to an account."""

    at: datetime
    actor: str
    action: str
    target: str
    detail: str


@dataclass
class Action:
    """One recorded action on an alert."""

    at: datetime
    actor: str
    action: str
    detail: str
    silence_id: str | None


@dataclass
class AlertView:
    """An alert as the console shows it: the archived message and the state its actions give it."""

    id: str
    watch: str
    kind: str
    severity: str
    summary: str
    raised_at: datetime
    payload: dict[str, Any]
    resolved_at: datetime | None = None
    history: list[Action] = field(default_factory=list)

    @property
    def acknowledged_by(self) -> str | None:
        """Who acknowledged it last (None: nobody)."""
        acks = [a for a in self.history if a.action == "acknowledge"]
        return acks[-1].actor if acks else None

    @property
    def assignee(self) -> str | None:
        """Who it is assigned to now."""
        assigns = [a for a in self.history if a.action == "assign"]
        return assigns[-1].detail or None if assigns else None

    @property
    def resolved_by(self) -> str | None:
        """Who resolved it in the console (None: not resolved there)."""
        done = [a for a in self.history if a.action == "resolve"]
        return done[-1].actor if done else None

    @property
    def silence_id(self) -> str | None:
        """The silence the acknowledgement put in place, if any."""
        ids = [a.silence_id for a in self.history if a.silence_id]
        return ids[-1] if ids else None

    @property
    def state(self) -> str:
        """``resolved``, ``acknowledged`` or ``open``."""
        if self.resolved_by or self.resolved_at:
            return "resolved"
        return "acknowledged" if self.acknowledged_by else "open"


class ConsoleStore:
    """Reads the archive's alerts and mentions; writes the console's own tables."""

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        """``engine`` writes; ``reader`` (default: the same) reads, without SQLite's write lock."""
        self.engine = engine
        self.reader = reader or engine

    # ---------------------------------------------------------------- users

    async def user_count(self) -> int:
        async with self.reader.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(console_users))).scalar() or 0)

    async def user(self, name: str) -> tuple[str, str] | None:
        """(role, password hash) of ``name``, or None."""
        account = await self.account(name)
        return (account.role, account.password_hash) if account else None

    async def account(self, name: str) -> Account | None:
        """The account ``name``, or None."""
        async with self.reader.connect() as conn:
            row = (await conn.execute(select(console_users).where(console_users.c.name == name))).mappings().first()
        return _account(row) if row else None

    async def accounts(self) -> list[Account]:
        """Every account, by name."""
        async with self.reader.connect() as conn:
            rows = (await conn.execute(select(console_users).order_by(console_users.c.name))).mappings().all()
        return [_account(row) for row in rows]

    async def put_user(self, name: str, role: str, password_hash: str, *, actor: str | None = None) -> None:
        """Add the local account ``name``, or change its role and password (its creation date and state kept)."""
        _check_role(role)
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            found = (
                await conn.execute(
                    select(console_users.c.role, console_users.c.source).where(console_users.c.name == name)
                )
            ).first()
            if found is not None and found.source != "local":
                raise ValueError(f"{name} signs in through single sign-on; a local account needs another name")
            if found is None:
                await conn.execute(
                    insert(console_users).values(
                        name=name, role=role, password_hash=password_hash, created_at=now, source="local"
                    )
                )
                detail = role
            else:
                await conn.execute(
                    update(console_users)
                    .where(console_users.c.name == name)
                    .values(role=role, password_hash=password_hash)
                )
                detail = role if found.role == role else f"{found.role} -> {role}"
            if actor:
                await conn.execute(
                    insert(user_actions).values(
                        at=now, actor=actor, action="add" if found is None else "update", target=name, detail=detail
                    )
                )

    async def put_sso_user(self, name: str, role: str, email: str | None) -> None:
        """Create or update the single-sign-on account ``name`` (no password) and note it logged in now."""
        _check_role(role)
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            found = (await conn.execute(select(console_users.c.role).where(console_users.c.name == name))).first()
            if found is None:
                await conn.execute(
                    insert(console_users).values(
                        name=name,
                        role=role,
                        password_hash="",
                        created_at=now,
                        source="sso",
                        email=email,
                        last_login=now,
                    )
                )
                await conn.execute(
                    insert(user_actions).values(at=now, actor="sso", action="add", target=name, detail=role)
                )
                return
            await conn.execute(
                update(console_users)
                .where(console_users.c.name == name, console_users.c.source == "sso")
                .values(role=role, email=email, last_login=now)
            )
            if found.role != role:
                await conn.execute(
                    insert(user_actions).values(
                        at=now, actor="sso", action="role", target=name, detail=f"{found.role} -> {role}"
                    )
                )

    async def logged_in(self, name: str) -> None:
        """Note that ``name`` logged in now."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(console_users).where(console_users.c.name == name).values(last_login=datetime.now(UTC))
            )

    async def set_role(self, name: str, role: str, actor: str) -> Account:
        """Give ``name`` the role ``role`` (recorded); ValueError when it cannot be done."""
        _check_role(role)
        account = await self.account(name)
        if account is None:
            raise LookupError(f"no account named {name}")
        if account.source == "sso":
            raise ValueError(
                f"{name} signs in through single sign-on: its role follows its groups (VEILLE_CONSOLE_SSO_ROLE_MAP)"
            )
        if account.role != role:
            await self._change(name, actor, "role", f"{account.role} -> {role}", role=role)
        return account

    async def set_disabled(self, name: str, disabled: bool, actor: str) -> Account:
        """Disable (or enable again) ``name``, recorded; its sessions stop at their next request."""
        account = await self.account(name)
        if account is None:
            raise LookupError(f"no account named {name}")
        if account.disabled != disabled:
            await self._change(name, actor, "disable" if disabled else "enable", "", disabled=disabled)
        return account

    async def set_password(self, name: str, password_hash: str, actor: str) -> None:
        """Set the password of the local account ``name``, recorded."""
        account = await self.account(name)
        if account is None:
            raise LookupError(f"no account named {name}")
        if account.source == "sso":
            raise ValueError(f"{name} signs in through single sign-on and has no password here")
        await self._change(name, actor, "password", "", password_hash=password_hash)

    async def _change(self, name: str, actor: str, action: str, detail: str, **values: Any) -> None:
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            await conn.execute(update(console_users).where(console_users.c.name == name).values(**values))
            await conn.execute(
                insert(user_actions).values(at=now, actor=actor, action=action, target=name, detail=detail)
            )

    async def user_history(self, limit: int = 100) -> list[UserAction]:
        """The latest changes to accounts, newest first."""
        async with self.reader.connect() as conn:
            rows = (
                await conn.execute(
                    select(user_actions).order_by(user_actions.c.at.desc(), user_actions.c.id.desc()).limit(limit)
                )
            ).mappings()
            return [
                UserAction(_utc(r["at"]), r["actor"], r["action"], r["target"], r["detail"])  # type: ignore[arg-type]
                for r in rows
            ]

    # ---------------------------------------------------------------- alerts

    async def alerts(self, limit: int = 200, watch: str | None = None) -> list[AlertView]:
        """The newest alerts (firing rows), each with its resolution and its history."""
        query = select(alerts).where(alerts.c.status == "firing")
        if watch:
            query = query.where(alerts.c.watch == watch)
        query = query.order_by(alerts.c.raised_at.desc()).limit(limit)
        async with self.reader.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            ids = [r["id"] for r in rows]
            resolved: dict[str, datetime] = {}
            history: dict[str, list[Action]] = {}
            if ids:
                for r in (
                    await conn.execute(
                        select(alerts.c.id, alerts.c.raised_at).where(
                            alerts.c.id.in_(ids), alerts.c.status == "resolved"
                        )
                    )
                ).all():
                    resolved[r.id] = _utc(r.raised_at)  # type: ignore[assignment]
                for a in (
                    await conn.execute(
                        select(alert_actions)
                        .where(alert_actions.c.alert_id.in_(ids))
                        .order_by(alert_actions.c.at, alert_actions.c.id)
                    )
                ).mappings():
                    history.setdefault(a["alert_id"], []).append(
                        Action(_utc(a["at"]), a["actor"], a["action"], a["detail"], a["silence_id"])  # type: ignore[arg-type]
                    )
        return [
            AlertView(
                id=r["id"],
                watch=r["watch"],
                kind=r["kind"],
                severity=r["severity"],
                summary=r["summary"],
                raised_at=_utc(r["raised_at"]),  # type: ignore[arg-type]
                payload=dict(r["payload"] or {}),
                resolved_at=resolved.get(r["id"]),
                history=history.get(r["id"], []),
            )
            for r in rows
        ]

    async def alert(self, alert_id: str) -> AlertView | None:
        """One alert with its history, or None."""
        async with self.reader.connect() as conn:
            row = (
                (await conn.execute(select(alerts).where(alerts.c.id == alert_id, alerts.c.status == "firing")))
                .mappings()
                .first()
            )
            if row is None:
                return None
            resolved = (
                await conn.execute(
                    select(alerts.c.raised_at).where(alerts.c.id == alert_id, alerts.c.status == "resolved")
                )
            ).scalar()
            acts = (
                (
                    await conn.execute(
                        select(alert_actions)
                        .where(alert_actions.c.alert_id == alert_id)
                        .order_by(alert_actions.c.at, alert_actions.c.id)
                    )
                )
                .mappings()
                .all()
            )
        return AlertView(
            id=row["id"],
            watch=row["watch"],
            kind=row["kind"],
            severity=row["severity"],
            summary=row["summary"],
            raised_at=_utc(row["raised_at"]),  # type: ignore[arg-type]
            payload=dict(row["payload"] or {}),
            resolved_at=_utc(resolved),
            history=[
                Action(_utc(a["at"]), a["actor"], a["action"], a["detail"], a["silence_id"])  # type: ignore[arg-type]
                for a in acts
            ],
        )

    async def record(
        self, alert_id: str, actor: str, action: str, detail: str = "", silence_id: str | None = None
    ) -> None:
        """Record one action on an alert (who, when, what)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(alert_actions).values(
                    alert_id=alert_id,
                    at=datetime.now(UTC),
                    actor=actor,
                    action=action,
                    detail=detail,
                    silence_id=silence_id,
                )
            )

    # ---------------------------------------------------------------- corrections

    async def mention(self, mention_id: str) -> dict[str, Any] | None:
        """The archived mention ``mention_id`` (id, text, title, sentiment, lang), or None."""
        async with self.reader.connect() as conn:
            row = (
                (
                    await conn.execute(
                        select(
                            mentions.c.id, mentions.c.title, mentions.c.text, mentions.c.sentiment, mentions.c.lang
                        ).where(mentions.c.id == mention_id)
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    async def correct(
        self, mention_id: str, actor: str, label: str, *, predicted: str, text: str, lang: str | None
    ) -> None:
        """Store that ``mention_id``'s sentiment is ``label``, not ``predicted``."""
        if label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}")
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(corrections).values(
                    mention_id=mention_id,
                    at=datetime.now(UTC),
                    actor=actor,
                    predicted=predicted,
                    label=label,
                    lang=lang,
                    text=text,
                )
            )

    async def corrections(self) -> list[dict[str, Any]]:
        """Every mention's latest correction, oldest first."""
        async with self.reader.connect() as conn:
            rows = (
                (await conn.execute(select(corrections).order_by(corrections.c.at, corrections.c.id))).mappings().all()
            )
        latest: dict[str, dict[str, Any]] = {}
        for row in rows:
            latest.pop(row["mention_id"], None)
            latest[row["mention_id"]] = dict(row)
        return list(latest.values())
