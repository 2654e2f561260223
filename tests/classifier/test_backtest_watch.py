"""``veille backtest --config --watch --since`` replays the mentions stream through the classifier's code."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import click
import nats
from click.testing import CliRunner

from tests.classifier.conftest import CONFIG, END_MINUTES, T0, publish_mentions, series
from veille import bus
from veille.models import utcnow
from veille.natsserver import NatsServerProcess
from veille_cli.backtest_cmd import backtest


async def _publish(url: str) -> None:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        await bus.ensure_topology(js)
        start = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(minutes=END_MINUTES + 60)
        await publish_mentions(js, series(start=start))
    finally:
        await client.close()


def test_backtest_of_a_watch_shows_progress_a_table_and_writes_a_png(
    nats_server: NatsServerProcess, tmp_path: Path
) -> None:
    """Over a stream holding one surge, the backtest reports progress, one fired volume spike and its plot."""
    asyncio.run(_publish(nats_server.url))
    config = tmp_path / "veille.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    png = tmp_path / "acme.png"
    args = ["--config", str(config), "--watch", "acme", "--since", "30d", "--nats-url", nats_server.url]
    result = CliRunner().invoke(backtest, [*args, "--plot", str(png)], env={"TTY_COMPATIBLE": "1", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = click.unstyle(result.output)  # a terminal: colours
    assert "replaying mentions" in shown
    assert "volume_spike" in shown and "firing" in shown and "resolved" in shown
    assert "alert(s) fired" in shown
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    assert T0  # the series shape is the one the service tests use

    piped = CliRunner().invoke(backtest, [*args, "--plot", str(tmp_path / "again.png")])  # not a terminal
    assert piped.exit_code == 0, piped.output
    assert "replaying mentions" not in piped.output and "volume_spike" in piped.stdout


def test_unknown_watch_is_a_clear_error(nats_server: NatsServerProcess, tmp_path: Path) -> None:
    """A watch the configuration does not define is named in the error, with the known ones."""
    config = tmp_path / "veille.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    args = ["--config", str(config), "--watch", "globex", "--nats-url", nats_server.url]
    result = CliRunner().invoke(backtest, args)
    assert result.exit_code != 0
    assert "globex" in result.output and "acme" in result.output


def test_series_and_watch_modes_do_not_mix(tmp_path: Path) -> None:
    """--series with --watch is a usage error, and so is neither mode."""
    runner = CliRunner()
    assert runner.invoke(backtest, ["--series", "x.csv", "--watch", "acme"]).exit_code == 2
    assert runner.invoke(backtest, []).exit_code == 2
