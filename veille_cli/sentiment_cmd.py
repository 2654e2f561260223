"""``veille sentiment FILE.csv``: add language and sentiment columns to a CSV of texts."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import click

__all__ = ["sentiment"]


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV with a header; raise a ClickException naming the line of any problem."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read ({exc.strerror})") from exc
    reader = csv.reader(io.StringIO(raw, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise click.ClickException(f"{path}: empty file (expected a header line with a 'text' column)")
        header = [name.strip() for name in header]
        if "text" not in header:
            raise click.ClickException(
                f"{path}, line 1: no 'text' column in the header (found: {', '.join(header) or 'nothing'})"
            )
        rows: list[dict[str, str]] = []
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                raise click.ClickException(
                    f"{path}, line {reader.line_num}: {len(record)} fields, but the header has {len(header)}"
                )
            rows.append(dict(zip(header, record, strict=True)))
    except csv.Error as exc:
        raise click.ClickException(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from exc
    return header, rows


@click.command("sentiment")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the CSV here instead of to standard output.",
)
@click.option(
    "--backend",
    default="linear",
    show_default=True,
    help="Sentiment backend: 'linear' (built in, learned), 'lexicon' (built in, rules) or 'transformer' "
    "(needs --model-path).",
)
@click.option(
    "--model-path",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Local model directory for the transformer backend (ONNX or transformers format).",
)
def sentiment(file: Path, output: Path | None, backend: str, model_path: Path | None) -> None:
    """Add `lang`, `sentiment` and `score` columns to FILE.csv.

    FILE.csv needs a `text` column; an optional `lang` column (ISO 639-1, e.g. `fr`, `en-GB`)
    is kept where it is set, otherwise the language is detected. `sentiment` is negative,
    neutral or positive; `score` is in [-1, 1].
    """
    from veille.language import detect_language
    from veille.sentiment import make_backend
    from veille.sentiment.transformer import BackendUnavailableError

    header, rows = _read_rows(file)
    try:
        engine = make_backend(backend, str(model_path) if model_path else None)
    except (ValueError, FileNotFoundError, BackendUnavailableError) as exc:
        raise click.ClickException(str(exc)) from exc

    langs = [detect_language(row["text"], row.get("lang") or None) for row in rows]
    results = engine.analyze_many([row["text"] for row in rows], langs)

    columns = header + [name for name in ("lang", "sentiment", "score") if name not in header]
    handle = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row, lang, result in zip(rows, langs, results, strict=True):
            writer.writerow(row | {"lang": lang or "", "sentiment": result.label, "score": f"{result.score:.4f}"})
    finally:
        if output:
            handle.close()
    if output:
        click.echo(f"wrote {len(rows)} rows to {output}", err=True)
