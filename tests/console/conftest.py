"""Fixtures for the console: a real nats-server, a real archive database (SQLite, and PostgreSQL where
Debian's server is installed), the console serving HTTP on loopback, and a logged-in HTTP client."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from services.archive.db import make_engine, migrate
from services.archive.store import ArchiveStore
from services.console.app import ConsoleApp, ConsoleSettings
from services.console.auth import LoginThrottle, hash_password
from services.console.store import ConsoleStore
from tests.archive.conftest import db_url, postgres  # noqa: F401 - the archive's database fixtures
from veille.config import ArchiveConfig, VeilleConfig, Watch
from veille.models import AlertRaised, MentionClassified
from veille.natsserver import NatsServerProcess

PASSWORD = "correct horse battery"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def alert(index: int = 1, *, watch: str = "acme", title: str = "Acme recalls its kettles") -> AlertRaised:
    """A firing volume spike as the classifier raises it, with its explanation filled in."""
    now = datetime.now(UTC)
    return AlertRaised(
        id=f"alert-{index}",
        watch=watch,
        kind="volume_spike",
        severity="critical",
        summary=f"{watch}: 42 mentions in 5 min, about 6 expected",
        observed=42,
        expected=6.2,
        negative_share=0.7,
        mention_count=42,
        top_terms=["recall", "kettle", "fire"],
        top_sources=["rss", "bluesky"],
        samples=[
            {
                "id": f"rss:{index}",
                "source": "rss",
                "url": "https://news.example/1",
                "title": title,
                "text": "Acme recalls 10,000 kettles after fires",
                "sentiment": "negative",
            }
        ],
        started_at=now - timedelta(minutes=5),
        raised_at=now - timedelta(minutes=index),
    )


def classified(index: int, *, watches: list[str], text: str = "Acme kettles catch fire") -> MentionClassified:
    """A classified mention as the classifier publishes it."""
    return MentionClassified.model_validate(
        {
            "mention": {
                "id": f"rss:{index}",
                "source": "rss",
                "url": f"https://news.example/{index}",
                "title": f"Story {index}",
                "text": text,
                "site": "news.example",
                "lang": "en",
                "ingested_at": datetime.now(UTC).isoformat(),
            },
            "lang": "en",
            "sentiment": "negative",
            "sentiment_score": -0.6,
            "watches": watches,
            "story_id": f"story-{index}",
        }
    )


async def seed(
    db_url: str,  # noqa: F811 - a URL here, not the fixture
    *,
    alerts: Sequence[AlertRaised] = (),
    mentions: Sequence[MentionClassified] = (),
    users: dict[str, str] | None = None,
) -> None:
    """Write alerts and mentions with the archive's own writer, and console accounts (name -> role)."""
    engine = make_engine(make_url(db_url))
    try:
        await migrate(engine)
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.prepare()
        if alerts:
            await store.write_alerts(list(alerts))
        if mentions:
            await store.write_mentions(list(mentions))
        for name, role in (users or {}).items():
            await ConsoleStore(engine).put_user(name, role, hash_password(PASSWORD))
    finally:
        await engine.dispose()


@pytest.fixture
async def start_console(
    nats_server: NatsServerProcess,
    db_url: str,  # noqa: F811 - the archive's fixture, imported above
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Awaitable[ConsoleApp]]]:
    """Start a console on the test NATS and database (call after seeding); stopped at the end."""
    apps: list[ConsoleApp] = []

    async def start(port: int = 0, **console: Any) -> ConsoleApp:
        """``console``: more ``ConsoleSettings`` fields (single sign-on, for instance)."""
        settings = ConsoleSettings(
            nats_url=nats_server.url,
            data_dir=tmp_path,
            config=tmp_path / "veille.yaml",
            console_host="127.0.0.1",
            console_port=port,
            **console,
        )
        watches = [Watch(name="acme", query="acme"), Watch(name="globex", query="globex")]
        app = ConsoleApp(settings, VeilleConfig(archive=ArchiveConfig(database_url=db_url), watches=watches))
        app.throttle = LoginThrottle(limit=3)
        await app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.stop()


class Browser:
    """An HTTP client that keeps cookies and reads the CSRF token from the last page.

    ``source``: the loopback address it connects from (e.g. 127.0.0.2, to be another machine than a
    proxy on 127.0.0.1)."""

    def __init__(self, base: str, source: str | None = None) -> None:
        self.base = base
        connector = aiohttp.TCPConnector(local_addr=(source, 0)) if source else None
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), connector=connector)
        self.csrf = ""

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.session.get(self.base + path, **kw) as response:
            body = await response.text()
            found = CSRF.search(body)
            if found:
                self.csrf = found.group(1)
            return response.status, body

    async def post(self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True) -> tuple[int, str]:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf", self.csrf)
        async with self.session.post(self.base + path, data=form) as response:
            body = await response.text()
            found = CSRF.search(body)
            if found:
                self.csrf = found.group(1)
            return response.status, body

    async def login(self, name: str, password: str = PASSWORD) -> tuple[int, str]:
        await self.get("/login")
        return await self.post("/login", {"name": name, "password": password, "next": "/alerts"})

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def browser() -> AsyncIterator[Callable[..., Browser]]:
    made: list[Browser] = []

    def make(app: ConsoleApp, *, base: str | None = None, source: str | None = None) -> Browser:
        b = Browser(base or f"http://127.0.0.1:{app.port}", source)
        made.append(b)
        return b

    yield make
    for b in made:
        await b.close()
