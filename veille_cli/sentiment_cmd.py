"""``veille sentiment FILE.csv``: add language and sentiment columns to a CSV of texts.

The CSV may come from a spreadsheet as people save it: comma-, semicolon- (French Excel), tab- or
pipe-separated, in UTF-8 (with or without a byte-order mark), UTF-16 (Excel's "Unicode text") or
Windows-1252/Latin-1 (Excel's "CSV" on a French Windows). The separator is the one that makes a
``text`` column out of the header line, the encoding the first of these that decodes the file;
``--delimiter`` and ``--encoding`` say them outright. The output keeps the input's separator and
encoding, so that the spreadsheet opens it as it opened the input.

The sentiment model and the language detector are loaded once per run; texts go through them in
chunks, with a progress bar on standard error when it is a terminal.
"""

from __future__ import annotations

import codecs
import csv
import io
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

if TYPE_CHECKING:  # pragma: no cover - typing only
    from veille.sentiment.base import SentimentBackend

__all__ = ["CHUNK", "DELIMITERS", "CsvInput", "read_csv", "sentiment"]

DELIMITERS: dict[str, str] = {",": ",", ";": ";", "tab": "\t", "\\t": "\t", "\t": "\t", "|": "|"}
"""What ``--delimiter`` accepts, and the separators tried when it is not given (in this order)."""
_TRIED = (",", ";", "\t", "|")
_FALLBACK_ENCODING = "cp1252"
"""Windows-1252: Latin-1 plus the printable characters Windows puts in 0x80-0x9F (€, œ, ', …)."""
CHUNK = 256
"""Rows per call to the sentiment backend (the progress bar moves once per chunk)."""


@dataclass(frozen=True)
class CsvInput:
    """A CSV file as read: its header, rows, separator and encoding (the output uses the same)."""

    header: list[str]
    rows: list[dict[str, str]]
    delimiter: str
    encoding: str
    guessed_encoding: bool = False


def _decode(path: Path, raw: bytes, encoding: str | None) -> tuple[str, str, bool]:
    """(text, encoding, guessed) of ``raw``: ``encoding`` if given, else UTF-16/UTF-8 by BOM, UTF-8, Windows-1252."""
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise click.BadParameter(f"unknown encoding {encoding!r} (try utf-8, cp1252 or latin-1)") from None
        try:
            return raw.decode(encoding), encoding, False
        except UnicodeDecodeError as exc:
            raise click.ClickException(
                f"{path}: not {encoding} text ({exc.reason} at byte {exc.start}); try another --encoding"
            ) from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), "utf-16", False
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"{path}: not UTF-16 text ({exc.reason} at byte {exc.start})") from None
    if raw.startswith(codecs.BOM_UTF8):
        try:
            return raw.decode("utf-8-sig"), "utf-8-sig", False
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return raw.decode("utf-8"), "utf-8", False
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode(_FALLBACK_ENCODING), _FALLBACK_ENCODING, True
    except UnicodeDecodeError:  # one of the five bytes Windows-1252 leaves undefined: plain Latin-1
        return raw.decode("latin-1"), "latin-1", True


def _header_fields(first_line: str, delimiter: str) -> list[str]:
    try:
        fields = next(csv.reader([first_line], delimiter=delimiter), [])
    except csv.Error:
        return []
    return [name.strip() for name in fields]


def _choose_delimiter(text: str) -> str:
    """The separator that makes a ``text`` column out of the header line (else the one that splits it most)."""
    first_line = text.split("\n", 1)[0].rstrip("\r")
    with_text = [d for d in _TRIED if "text" in _header_fields(first_line, d)]
    candidates = with_text or list(_TRIED)
    return max(candidates, key=lambda d: (len(_header_fields(first_line, d)), -_TRIED.index(d)))


def read_csv(path: Path, *, delimiter: str | None = None, encoding: str | None = None) -> CsvInput:
    """Read a CSV with a header; raise a ClickException naming the line of any problem."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read ({exc.strerror})") from exc
    text, used_encoding, guessed = _decode(path, raw, encoding)
    if text.startswith("\ufeff"):  # a BOM the chosen codec kept
        text = text[1:]
    sep = delimiter if delimiter is not None else _choose_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    shown = "tab" if sep == "\t" else repr(sep)
    try:
        header = next(reader, None)
        if header is None:
            raise click.ClickException(f"{path}: empty file (expected a header line with a 'text' column)")
        header = [name.strip() for name in header]
        if "text" not in header:
            hint = "" if delimiter is not None else " (separators tried: , ; tab |; say it with --delimiter)"
            raise click.ClickException(
                f"{path}, line 1: no 'text' column in the header split on {shown} "
                f"(found: {', '.join(header) or 'nothing'}){hint}"
            )
        rows: list[dict[str, str]] = []
        for record in reader:
            if not record or record == [""]:
                continue
            if len(record) != len(header):
                raise click.ClickException(
                    f"{path}, line {reader.line_num}: {len(record)} fields separated by {shown}, "
                    f"but the header has {len(header)}"
                )
            rows.append(dict(zip(header, record, strict=True)))
    except csv.Error as exc:
        raise click.ClickException(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from exc
    return CsvInput(header, rows, sep, used_encoding, guessed)


def _chunks(rows: Sequence[dict[str, str]], size: int) -> Iterator[Sequence[dict[str, str]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


class _Progress:
    """A progress bar on standard error when it is a terminal; nothing otherwise."""

    def __init__(self, total: int, label: str) -> None:
        self._bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn(label),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("rows"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def advance(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _label(data: CsvInput, engine: SentimentBackend, handle: IO[str], progress: _Progress) -> None:
    """Detect languages and score sentiment chunk by chunk with one engine; write each chunk."""
    from veille.language import detect_languages

    columns = data.header + [name for name in ("lang", "sentiment", "score") if name not in data.header]
    writer = csv.DictWriter(handle, fieldnames=columns, delimiter=data.delimiter, lineterminator="\n")
    writer.writeheader()
    for chunk in _chunks(data.rows, CHUNK):
        texts = [row["text"] for row in chunk]
        langs = detect_languages(texts, [row.get("lang") or None for row in chunk])
        results = engine.analyze_many(texts, langs)
        for row, lang, result in zip(chunk, langs, results, strict=True):
            writer.writerow(row | {"lang": lang or "", "sentiment": result.label, "score": f"{result.score:.4f}"})
        progress.advance(len(chunk))


def _delimiter(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    if value.lower() in DELIMITERS:
        return DELIMITERS[value.lower()]
    if len(value) == 1 and value not in '"\r\n':
        return value
    raise click.BadParameter(f"{value!r}: give one character such as , or ; (or 'tab')")


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
@click.option(
    "--delimiter",
    default=None,
    callback=_delimiter,
    help="Field separator: , ; tab or | (default: the one that gives the header a 'text' column).",
)
@click.option(
    "--encoding",
    default=None,
    help="Text encoding, e.g. utf-8, cp1252, latin-1 (default: UTF-8, UTF-16 with a BOM, else Windows-1252).",
)
def sentiment(
    file: Path,
    output: Path | None,
    backend: str,
    model_path: Path | None,
    delimiter: str | None,
    encoding: str | None,
) -> None:
    """Add `lang`, `sentiment` and `score` columns to FILE.csv.

    FILE.csv needs a `text` column; an optional `lang` column (ISO 639-1, e.g. `fr`, `en-GB`)
    is kept where it is set, otherwise the language is detected. `sentiment` is negative,
    neutral or positive; `score` is in [-1, 1]. Comma- or semicolon-separated files, in UTF-8 or
    in Windows-1252 (French Excel), are recognised; the output keeps the input's separator and
    encoding. A progress bar shows on a terminal.
    """
    from veille.sentiment import make_backend
    from veille.sentiment.transformer import BackendUnavailableError

    data = read_csv(file, delimiter=delimiter, encoding=encoding)
    if data.guessed_encoding:
        click.echo(f"veille sentiment: {file} is not UTF-8; read as {data.encoding} (--encoding to choose)", err=True)
    try:
        engine = make_backend(backend, str(model_path) if model_path else None)
    except (ValueError, FileNotFoundError, BackendUnavailableError) as exc:
        raise click.ClickException(str(exc)) from exc

    progress = _Progress(len(data.rows), "sentiment")
    handle = output.open("w", encoding=data.encoding, newline="") if output else sys.stdout
    try:
        _label(data, engine, handle, progress)
    finally:
        progress.close()
        if output:
            handle.close()
    if output:
        click.echo(f"wrote {len(data.rows)} rows to {output}", err=True)
