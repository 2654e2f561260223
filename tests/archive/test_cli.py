"""`veille db upgrade`, `mentions search` and `alerts list` (services.archive.cli) on a real SQLite archive."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy.engine import make_url

from services.archive.cli import alerts, db, mentions
from services.archive.db import head_revision, make_engine
from services.archive.store import ArchiveStore
from veille.models import MentionClassified, MentionIngested


def fill(url: str) -> None:
    async def run() -> None:
        engine = make_engine(make_url(url))
        store = ArchiveStore(engine, retention=timedelta(days=400))
        await store.write_mentions(
            [
                MentionClassified(
                    mention=MentionIngested(
                        id=f"rss:{i}",
                        source="rss",
                        title=f"Dupré, épisode {i}",
                        text="La bière Dupré, rappel" if i % 2 else "Autre sujet",
                        published_at=datetime.now(UTC) - timedelta(hours=i),
                    ),
                    lang="fr",
                    sentiment="negative",
                    sentiment_score=-0.5,
                    watches=["dupre"],
                )
                for i in range(10)
            ]
        )
        await engine.dispose()

    asyncio.run(run())


def test_upgrade_then_search_in_every_format(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'archive.sqlite3'}"
    runner = CliRunner()
    result = runner.invoke(db, ["upgrade", "--database-url", url], env={"VEILLE_CONFIG": str(tmp_path / "none.yaml")})
    assert result.exit_code == 0, result.output
    assert f"revision {head_revision()}" in result.output
    fill(f"sqlite+aiosqlite:///{tmp_path / 'archive.sqlite3'}")
    common = ["--database-url", url, "--since", "2d"]
    result = runner.invoke(mentions, ["search", "rappel", *common, "--format", "json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert [m["id"] for m in found["mentions"]] == ["rss:1", "rss:3", "rss:5", "rss:7", "rss:9"]
    assert found["next_cursor"] is None
    result = runner.invoke(mentions, ["search", "rappel", *common, "--format", "csv", "--limit", "2"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id"] for r in rows] == ["rss:1", "rss:3"] and rows[0]["watches"] == "dupre"
    result = runner.invoke(mentions, ["search", "dupre", *common])
    assert result.exit_code == 0 and result.output.count("negative") == 10


def test_bad_searches_are_one_clear_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'archive.sqlite3'}"
    runner = CliRunner()
    assert runner.invoke(db, ["upgrade", "--database-url", url]).exit_code == 0
    for args, message in [
        (['"unbalanced', "--database-url", url], "the query is not valid"),
        (["acme", "--since", "2999-01-01", "--database-url", url], "in the future"),
        (["acme", "--since", "yesterday-ish", "--database-url", url], "neither a duration"),
        (["acme", "--cursor", "zzz", "--database-url", url], "cursor"),
    ]:
        result = runner.invoke(mentions, ["search", *args])
        assert result.exit_code != 0, args
        assert message in result.output, result.output
        assert "Traceback" not in result.output


def test_alerts_list_filters_and_formats(tmp_path: Path) -> None:
    """veille alerts list over a real archive: newest first, --watch/--status/--since, table/csv/json."""
    from tests.archive.dataset import H0, load

    db_file = tmp_path / "archive.sqlite3"

    async def fill_alerts() -> None:
        engine = await load(f"sqlite+aiosqlite:///{db_file}")
        await engine.dispose()

    asyncio.run(fill_alerts())
    runner = CliRunner()
    common = ["--database-url", f"sqlite:///{db_file}", "--since", "7d"]
    result = runner.invoke(alerts, ["list", *common, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["alerts"]
    assert [(r["id"], r["status"]) for r in rows] == [
        ("dupre-volume-1", "resolved"),
        ("dupre-volume-1", "firing"),
        ("acme-neg-1", "firing"),
    ]
    result = runner.invoke(alerts, ["list", *common, "--watch", "dupre", "--status", "firing"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "volume_spike" in lines[0] and "6/1.5" in lines[0] and "critical" in lines[0]
    result = runner.invoke(alerts, ["list", *common, "--format", "csv"])
    parsed = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["watch"] for r in parsed] == ["dupre", "dupre", "acme"] and parsed[1]["observed"] == "6.0"
    later = (H0 + timedelta(hours=1)).isoformat()
    result = runner.invoke(alerts, ["list", "--database-url", f"sqlite:///{db_file}", "--since", later])
    assert result.exit_code == 0 and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(alerts, ["list", "--database-url", f"sqlite:///{db_file}", "--since", "2999-01-01"])
    assert result.exit_code != 0 and "in the future" in result.output and "Traceback" not in result.output
