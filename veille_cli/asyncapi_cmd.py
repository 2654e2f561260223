"""``veille asyncapi``: print or write the AsyncAPI document of the bus."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["asyncapi"]


@click.command()
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write to this file.")
def asyncapi(output: Path | None) -> None:
    """Print the AsyncAPI 3.0 document of every message on the bus (YAML), generated from the code."""
    from veille.asyncapi import render_yaml

    text = render_yaml()
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
