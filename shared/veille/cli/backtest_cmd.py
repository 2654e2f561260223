"""``veille backtest``: run the spike detector over a recorded series and list the alerts it fires."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from veille.spikes.backtest import SeriesFormatError, backtest_series, write_alerts_csv

__all__ = ["backtest"]


@click.command()
@click.option(
    "--series",
    "series",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CSV of counts per time bucket with a header 'timestamp,value' (like the NAB files).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the alerts to this CSV file instead of standard output.",
)
def backtest(series: Path, output: Path | None) -> None:
    """Replay a series of mention counts through the spike detector with the default settings.

    Writes one CSV row per alert fired: the bucket at which it fired (`timestamp`), its
    `severity` (info, warning or critical), and the `observed` and `expected` mention
    counts over the last `window_minutes` that made it fire.

    \b
    Example:
      veille backtest --series Twitter_volume_AAPL.csv -o alerts.csv
    """
    if not series.is_file():
        raise click.BadParameter(f"no such file: {series}", param_hint="--series")
    try:
        rows = backtest_series(series)
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
