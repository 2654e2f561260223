"""The console's database work: users, alert timeline and history, corrections (tables from migration 0004)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.schema import alerts, mentions

__all__ = [
    "ACTIONS",
    "ROLES",
    "AlertView",
    "ConsoleStore",
    "alert_actions",
    "console_users",
    "corrections",
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
        async with self.reader.connect() as conn:
            row = (
                await conn.execute(
                    select(console_users.c.role, console_users.c.password_hash).where(console_users.c.name == name)
                )
            ).first()
        return (row.role, row.password_hash) if row else None

    async def put_user(self, name: str, role: str, password_hash: str) -> None:
        """Add ``name``, or change its role and password."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        async with self.engine.begin() as conn:
            await conn.execute(console_users.delete().where(console_users.c.name == name))
            await conn.execute(
                insert(console_users).values(
                    name=name, role=role, password_hash=password_hash, created_at=datetime.now(UTC)
                )
            )

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
