"""`veille sentiment FILE.csv`: adds lang, sentiment and score columns, and explains bad input."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner

from veille_cli.sentiment_cmd import sentiment


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_round_trip_adds_columns_and_keeps_the_declared_language(tmp_path: Path) -> None:
    """Each row comes back with its columns, a language (declared one kept), a label and a score."""
    source = _write(
        tmp_path / "in.csv",
        "id,text,lang\n"
        '1,"I love this, best service ever!",\n'
        "2,Je suis très déçu par ce service vraiment nul,\n"
        "3,The parcel arrived today,fr-FR\n",
    )
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(sentiment, [str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert [r["lang"] for r in rows] == ["en", "fr", "fr"]
    assert [r["sentiment"] for r in rows[:2]] == ["positive", "negative"]
    assert all(-1.0 <= float(r["score"]) <= 1.0 for r in rows)


def test_without_output_the_csv_goes_to_stdout(tmp_path: Path) -> None:
    """With no -o the result is written to standard output, header first."""
    source = _write(tmp_path / "in.csv", 'text\n"What a disaster, I hate it"\n')
    result = CliRunner().invoke(sentiment, [str(source)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert rows == [
        {"text": "What a disaster, I hate it", "lang": "en", "sentiment": "negative", "score": rows[0]["score"]}
    ]


def test_a_missing_text_column_is_named(tmp_path: Path) -> None:
    """A CSV without a `text` column fails with a message naming line 1 and the columns found."""
    source = _write(tmp_path / "in.csv", "body,lang\nhello,en\n")
    result = CliRunner().invoke(sentiment, [str(source)])
    assert result.exit_code != 0
    assert "line 1" in result.output and "'text'" in result.output and "body" in result.output


def test_a_ragged_row_is_reported_with_its_line(tmp_path: Path) -> None:
    """A row with the wrong number of fields is reported with its line number."""
    source = _write(tmp_path / "in.csv", "text,lang\nfine,en\ntoo,many,fields\n")
    result = CliRunner().invoke(sentiment, [str(source)])
    assert result.exit_code != 0
    assert "line 3" in result.output


def test_an_unknown_backend_or_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    """Bad backend choices fail with a message, not a traceback."""
    source = _write(tmp_path / "in.csv", "text\nhello\n")
    result = CliRunner().invoke(sentiment, [str(source), "--backend", "magic"])
    assert result.exit_code != 0 and "unknown sentiment backend" in result.output
    result = CliRunner().invoke(sentiment, [str(source), "--backend", "transformer"])
    assert result.exit_code != 0 and "model path" in result.output
