"""Backtesting a watch from the archive (both databases): the same alerts as the stream replay's code
path over the same mentions, a new watch's query classified afresh, and where the stream begins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest
from click.testing import CliRunner
from nats.js import JetStreamContext
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.archive.backtest import archived_mentions, replay_archive, stream_start
from services.archive.db import make_engine, migrate
from services.archive.store import ArchiveStore
from services.classifier.backtest import WatchReplay
from services.classifier.logic import Classifier
from services.classifier.surges import mention_terms
from veille import bus
from veille.config import VeilleConfig, Watch
from veille.language import detect_language
from veille.models import MentionClassified, MentionIngested
from veille.natsserver import NatsServerProcess
from veille.sentiment import make_backend
from veille_cli.backtest_cmd import backtest

NOW = datetime.now(UTC).replace(microsecond=0)
START = (NOW - timedelta(days=40)).replace(minute=0, second=0)  # far older than any stream keeps
CONFIG = VeilleConfig(watches=[Watch(name="dupre", query="dupre"), Watch(name="rappel", query="rappel")])


def raw_mentions() -> list[MentionIngested]:
    """Three days of two mentions an hour about Dupré, and a burst of 80 recall mentions on the third."""
    out = []
    for hour in range(72):
        for k in range(2):
            moment = START + timedelta(hours=hour, minutes=20 * k + 5)
            out.append(
                MentionIngested(
                    id=f"rss:{hour}-{k}",
                    source="rss",
                    text=f"La brasserie Dupré ouvre sa terrasse, épisode {hour}",
                    published_at=moment,
                    ingested_at=moment + timedelta(seconds=40),
                )
            )
    burst = START + timedelta(hours=60)
    for k in range(80):
        moment = burst + timedelta(seconds=30 * k)
        out.append(
            MentionIngested(
                id=f"bluesky:{k}",
                source="bluesky",
                text=f"Rappel massif de la bière Dupré, lot {k}",
                published_at=moment,
                ingested_at=moment + timedelta(seconds=10),
            )
        )
    # about something else: never read when replaying dupre (the full-text index narrows first)
    out += [
        MentionIngested(id=f"hn:{k}", source="hackernews", text="Acme ships a new router", published_at=START)
        for k in range(30)
    ]
    return out


@pytest.fixture
async def archive(db_url: str) -> AsyncIterator[AsyncEngine]:
    reader = await _archive(db_url)
    try:
        yield reader
    finally:
        await reader.dispose()


async def _archive(db_url: str) -> AsyncEngine:
    """The mentions archived as they were classified then (only the dupre watch existed); a read engine."""
    engine = make_engine(make_url(db_url))
    await migrate(engine)
    store = ArchiveStore(engine, retention=timedelta(days=400))
    await store.prepare()
    await store.write_mentions(
        [
            MentionClassified(
                mention=m,
                lang="fr",
                sentiment="neutral",
                sentiment_score=0.0,
                watches=["dupre"] if "Dupré" in m.text else [],
            )
            for m in raw_mentions()
        ]
    )
    await engine.dispose()
    return make_engine(make_url(db_url), write=False)


def stream_replay(watch: str) -> WatchReplay:
    """What the stream's replay does with the same raw mentions (services.classifier.backtest)."""
    backend = make_backend()
    classifier = Classifier(
        CONFIG,
        lambda body, lang: (backend.analyze(body, lang).label, backend.analyze(body, lang).score),
        detect_language,
    )
    replay = WatchReplay(next(w for w in CONFIG.watches if w.name == watch))
    for mention in raw_mentions():
        classified = classifier.classify(mention)
        if watch in classified.mention.watches:
            replay.add(classified.mention, mention_terms(classified.body))
    return replay


async def test_archive_replay_raises_what_the_stream_replay_raises(archive: AsyncEngine) -> None:
    result = await replay_archive(archive, CONFIG, "dupre", timedelta(days=90), now=NOW)
    assert result.mentions_read == 144 + 80  # the 30 Acme mentions were never read
    expected = stream_replay("dupre").finish()
    assert sum(s.total for s in result.steps) == 224
    assert [s.total for s in result.steps] == [s.total for s in expected.steps]
    fired = [a for a in result.alerts if a.kind == "volume_spike" and a.status == "firing"]
    assert fired, "the burst of recalls fires a volume spike"
    assert abs(fired[0].started_at - (START + timedelta(hours=60))) < timedelta(hours=3)
    assert [(a.id, a.status) for a in result.alerts] == [(a.id, a.status) for a in expected.alerts]


async def test_a_new_watch_is_classified_afresh(archive: AsyncEngine) -> None:
    """'rappel' did not exist when the mentions were archived: the replay finds its 80 mentions."""
    result = await replay_archive(archive, CONFIG, "rappel", timedelta(days=90), now=NOW)
    assert sum(s.total for s in result.steps) == 80
    with pytest.raises(KeyError):
        await replay_archive(archive, CONFIG, "nobody", timedelta(days=90), now=NOW)


async def test_archived_mentions_come_back_as_published(archive: AsyncEngine) -> None:
    got = [m async for m in archived_mentions(archive, START, START + timedelta(hours=1))]
    assert [m.id for m in got][:2] == ["hn:0", "hn:1"] and len(got) == 32
    dupre = next(m for m in got if m.id == "rss:0-0")
    assert dupre.text == "La brasserie Dupré ouvre sa terrasse, épisode 0"
    assert dupre.ingested_at == START + timedelta(minutes=5, seconds=40)


async def test_stream_start(js: JetStreamContext) -> None:
    await bus.ensure_topology(js)
    assert await stream_start(js) is None
    before = datetime.now(UTC) - timedelta(seconds=5)
    mention = MentionIngested(id="rss:1", source="rss", text="x")
    await js.publish(f"{bus.PREFIX}.mentions.ingested.rss", mention.model_dump_json().encode())
    started = await stream_start(js)
    assert started is not None and before <= started <= datetime.now(UTC) + timedelta(seconds=5)


def test_veille_backtest_reads_the_archive_when_the_stream_is_short(
    nats_server: NatsServerProcess, db_url: str, tmp_path: Path
) -> None:
    """`veille backtest --since 90d` over an empty stream and a 40-day-old archive: the archive's surge."""

    async def fill() -> None:
        engine = await _archive(db_url)
        await engine.dispose()
        client = await nats.connect(nats_server.url)
        await bus.ensure_topology(client.jetstream())  # the streams exist, empty (a young deployment)
        await client.close()

    asyncio.run(fill())
    config = tmp_path / "veille.yaml"
    config.write_text("watches:\n  - name: dupre\n    query: dupre\n", encoding="utf-8")
    args = ["--config", str(config), "--watch", "dupre", "--since", "90d", "--nats-url", nats_server.url]
    env = {"VEILLE_ARCHIVE_DATABASE_URL": db_url, "VEILLE_DATA_DIR": str(tmp_path)}
    runner = CliRunner()
    result = runner.invoke(backtest, [*args, "--plot", str(tmp_path / "p.png")], env=env)
    assert result.exit_code == 0, result.output
    assert "reading the archive" in result.output
    assert "volume_spike" in result.output and "firing" in result.output
    # told to read the stream, it finds nothing there
    result = runner.invoke(backtest, [*args, "--from", "stream", "--plot", str(tmp_path / "q.png")], env=env)
    assert result.exit_code == 0, result.output
    assert "reading the archive" not in result.output and "volume_spike" not in result.output
