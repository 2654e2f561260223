"""``veille backtest``: run the spike detector over past data and list the alerts it would have fired.

Two modes:

* ``--series FILE``: a CSV of values per bucket (like the NAB files) through the default detector;
  one CSV row per alert.
* ``--config FILE --watch NAME --since 30d``: the raw mentions kept in the stream, replayed through
  the classifier's own matching, bucketing and detector code with that configuration (see
  :mod:`services.classifier.backtest`); a progress bar while it reads, a table of the alerts, and a
  PNG plot of volume, baseline and alerts. When the stream no longer holds mentions that far back,
  they are read from the archive's database instead (:mod:`services.archive.backtest`; ``--from``).
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

import click

if TYPE_CHECKING:  # pragma: no cover - typing only
    from collections.abc import Callable

    from services.classifier.backtest import BacktestResult
    from veille.config import VeilleConfig
    from veille.spikes.backtest import OnDuplicate

__all__ = ["backtest"]


@click.command()
@click.option(
    "--series",
    "series",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of values per time bucket (counts, or any numbers) with a header 'timestamp,value' (like NAB files).",
)
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Configuration file whose watch is replayed over the mentions in the stream.",
)
@click.option("--watch", "watch", default=None, help="Name of the watch to backtest (with --config).")
@click.option("--since", "since", default="30d", show_default=True, help="How far back to replay: 30d, 12h ...")
@click.option("--nats-url", envvar="VEILLE_NATS_URL", default=None, help="NATS server URL(s) (with --config).")
@click.option(
    "--from",
    "origin",
    type=click.Choice(["auto", "stream", "archive"]),
    default="auto",
    show_default=True,
    help="Where the mentions come from (with --config): the stream, the archive's database, or the archive "
    "when the stream does not reach --since back.",
)
@click.option(
    "--plot",
    "plot",
    default=None,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the PNG plot (with --config; default backtest-WATCH.png).",
)
@click.option(
    "--on-duplicate",
    "on_duplicate",
    type=click.Choice(["error", "sum", "skip"]),
    default="error",
    show_default=True,
    help=(
        "With --series, what to do with a timestamp that is not after the previous one (a repeat, or a step "
        "back after a daylight-saving change): stop with the file and line, add a repeat's value to its "
        "bucket, or drop the row."
    ),
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the alerts to this CSV file instead of standard output (with --series).",
)
def backtest(
    series: Path | None,
    config_path: Path | None,
    watch: str | None,
    since: str,
    nats_url: str | None,
    origin: str,
    plot: Path | None,
    output: Path | None,
    on_duplicate: str,
) -> None:
    """Replay past mention counts through the spike detector and show the alerts it would have fired.

    With --series, the detector's defaults are fitted to the file's format: the bucket is its
    sampling period, and values that are all whole non-negative numbers are counts (surges alert);
    otherwise (negative or fractional values) they are measurements, where rises and drops alert.
    It writes one CSV row per alert fired: the bucket at which it fired (`timestamp`),
    its `severity` (info, warning or critical), and the `observed` and `expected` mention counts
    over the last `window_minutes` that made it fire.

    With --config and --watch, replays the mentions kept in the stream since --since ago through the
    classifier's code (matching, buckets, detector), shows the alerts as a table and writes a PNG plot
    of volume, baseline and alerts.

    \b
    Examples:
      veille backtest --series Twitter_volume_AAPL.csv -o alerts.csv
      veille backtest --series export.csv --on-duplicate sum
      veille backtest --config veille.yaml --watch acme --since 30d
    """
    if series is not None:
        if config_path is not None or watch is not None:
            raise click.UsageError("--series cannot be combined with --config/--watch")
        _series_mode(series, output, on_duplicate)
        return
    if config_path is None or watch is None:
        raise click.UsageError("give --series FILE, or --config FILE and --watch NAME")
    _watch_mode(config_path, watch, since, nats_url, plot, origin)


def _series_mode(series: Path, output: Path | None, on_duplicate: str = "error") -> None:
    from veille.spikes.backtest import SeriesFormatError, backtest_series, write_alerts_csv

    if not series.is_file():
        raise click.BadParameter(f"no such file: {series}", param_hint="--series")
    try:
        rows = backtest_series(series, on_duplicate=cast("OnDuplicate", on_duplicate))
    except SeriesFormatError as exc:
        raise click.ClickException(str(exc)) from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{series}: not a UTF-8 text CSV file") from None
    if output is None:
        write_alerts_csv(rows, sys.stdout)
    else:
        with output.open("w", newline="", encoding="utf-8") as fh:
            write_alerts_csv(rows, fh)
        click.echo(f"{len(rows)} alert(s) written to {output}", err=True)


def _watch_mode(
    config_path: Path, watch: str, since: str, nats_url: str | None, plot: Path | None, origin: str = "auto"
) -> None:
    from veille.config import ConfigError, load_config
    from veille.durations import parse_duration

    try:
        span = parse_duration(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    if span <= timedelta(0):
        raise click.BadParameter("must be a positive duration such as 30d", param_hint="--since")
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    names = [w.name for w in config.watches]
    if watch not in names:
        raise click.BadParameter(
            f"no watch named {watch!r} (known: {', '.join(names) or 'none'})", param_hint="--watch"
        )
    import asyncio

    result = asyncio.run(_replay(nats_url, config, watch, span, origin, config_path))
    _print_table(result)
    from services.classifier.backtest import plot_result

    target = plot or Path(f"backtest-{watch}.png")
    plot_result(result, target)
    click.echo(f"plot written to {target}", err=True)


async def _replay(
    url: str | None,
    config: VeilleConfig,
    watch: str,
    span: timedelta,
    origin: str = "stream",
    config_path: Path | None = None,
) -> BacktestResult:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from services.classifier.backtest import replay_stream
    from veille.natsauth import connect_cli

    console = Console(stderr=True)  # stdout is the table (or the JSON) of the alerts
    with Progress(
        TextColumn("replaying mentions"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
        console=console,
        disable=not console.is_terminal,  # a terminal (or TTY_COMPATIBLE=1), not a pipe or a log
    ) as bar:
        task = bar.add_task("replay", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        if origin == "archive":
            return await _replay_archive(config_path, config, watch, span, progress)
        client = await connect_cli(url)
        try:
            if origin == "auto":
                from datetime import UTC, datetime

                from services.archive.backtest import archive_reaches, stream_start
                from services.archive.cli import archive_engine

                first = await stream_start(client.jetstream())
                since = datetime.now(UTC) - span
                if first is None or first > since + timedelta(minutes=1):
                    # the stream does not reach that far back: the archive, if it holds what the stream lost
                    engine = archive_engine(config_path, existing=True)
                    reaches = engine is not None and await archive_reaches(engine, since, first)
                    if engine is not None:
                        await engine.dispose()
                    if reaches:
                        held = f"mentions from {first:%Y-%m-%d %H:%M} UTC on" if first else "no mention"
                        click.echo(f"the stream holds {held}: reading the archive", err=True)
                        return await _replay_archive(config_path, config, watch, span, progress)
            return await replay_stream(client.jetstream(), config, watch, span, progress=progress)
        finally:
            await client.close()


async def _replay_archive(
    config_path: Path | None, config: VeilleConfig, watch: str, span: timedelta, progress: Callable[[int, int], None]
) -> BacktestResult:
    from services.archive.backtest import replay_archive
    from services.archive.cli import archive_engine

    engine = archive_engine(config_path)
    try:
        return cast("BacktestResult", await replay_archive(engine, config, watch, span, progress=progress))
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(f"reading the archive: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        await engine.dispose()


def _print_table(result: BacktestResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped or captured: do not squeeze the table into 80 columns
    table = Table(title=f"Alerts the classifier would have raised for {result.watch}")
    for column in ("raised at", "kind", "status", "severity", "observed", "expected", "stat/threshold", "stories"):
        table.add_column(column)
    for alert in result.alerts:
        stat = (
            f"{alert.statistic:.1f}/{alert.threshold:.1f}"
            if alert.statistic is not None and alert.threshold is not None
            else ""
        )
        table.add_row(
            alert.raised_at.strftime("%Y-%m-%d %H:%M"),
            alert.kind,
            alert.status,
            alert.severity,
            f"{alert.observed:g}" if alert.observed is not None else "",
            f"{alert.expected:.1f}" if alert.expected is not None else "",
            stat,
            str(alert.story_count),
        )
    console.print(table)
    fired = sum(1 for a in result.alerts if a.status == "firing")
    console.print(
        f"{result.mentions_read} mentions read, {sum(s.total for s in result.steps)} matched {result.watch} "
        f"in {len(result.steps)} buckets; {fired} alert(s) fired."
    )
