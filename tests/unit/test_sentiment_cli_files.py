"""`veille sentiment` on CSV files as spreadsheets save them, its progress bar, and one model per run.

French Excel's "CSV (séparateur : point-virgule)" writes `;` between fields and Windows-1252
(a superset of Latin-1: é, è, ç, œ, € ...) bytes, with CRLF line ends; "CSV UTF-8" writes a UTF-8
byte-order mark first; "Texte Unicode" writes UTF-16 with a BOM and tabs. The files below are
built byte for byte that way. The lexicon backend is used so that these tests do not depend on the
learned model's weights (the reading and writing of the file is what is under test).
"""

from __future__ import annotations

import csv
import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from veille_cli import sentiment_cmd
from veille_cli.sentiment_cmd import sentiment

ROWS = [
    ("1", "Très déçu par ce service, vraiment nul. Une honte !", "fr"),
    ("2", "Merci beaucoup, l'équipe est géniale ; je recommande", "fr"),
    ("3", "Le colis coûte 15 € de plus, c'est scandaleux", "fr"),
    ("4", "I love this, best service ever!", "en"),
]


def excel_csv(path: Path, *, delimiter: str = ";", encoding: str = "cp1252", bom: bytes = b"") -> Path:
    """Write ROWS as Excel does: CRLF line ends, fields quoted when they hold the separator."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(["id", "text", "source"])
    for ident, text, _ in ROWS:
        writer.writerow([ident, text, "twitter"])
    path.write_bytes(bom + buffer.getvalue().encode(encoding))
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(sentiment, ["--backend", "lexicon", *args])
    return result.exit_code, result.stdout, result.stderr


def check_rows(rows: list[dict[str, str]]) -> None:
    assert [r["id"] for r in rows] == [ident for ident, _, _ in ROWS]
    assert [r["text"] for r in rows] == [text for _, text, _ in ROWS]  # accents, €, ; and , intact
    assert [r["lang"] for r in rows] == [lang for _, _, lang in ROWS]
    assert [r["sentiment"] for r in rows] == ["negative", "positive", "negative", "positive"]
    assert all(r["source"] == "twitter" for r in rows)


def test_a_french_excel_csv_semicolons_and_windows_1252_is_read_and_written_back_alike(tmp_path: Path) -> None:
    source = excel_csv(tmp_path / "export.csv")
    out = tmp_path / "out.csv"
    code, _, stderr = run(str(source), "-o", str(out))
    assert code == 0, stderr
    assert "read as cp1252" in stderr  # said once, on stderr
    raw = out.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # written back in the input's encoding, for the same spreadsheet
    text = raw.decode("cp1252")
    assert text.splitlines()[0] == "id;text;source;lang;sentiment;score"
    check_rows(list(csv.DictReader(io.StringIO(text), delimiter=";")))


def test_delimiter_and_encoding_can_be_given(tmp_path: Path) -> None:
    source = excel_csv(tmp_path / "export.csv")
    code, stdout, stderr = run(str(source), "--delimiter", ";", "--encoding", "cp1252")
    assert code == 0, stderr
    assert "read as" not in stderr
    check_rows(list(csv.DictReader(io.StringIO(stdout), delimiter=";")))
    code, stdout, stderr = run(str(source), "--delimiter", "tab")
    assert code != 0
    assert "no 'text' column in the header split on tab" in stderr


def test_utf8_with_a_bom_and_utf16_tab_separated(tmp_path: Path) -> None:
    source = excel_csv(tmp_path / "utf8.csv", encoding="utf-8", bom=b"\xef\xbb\xbf")
    code, stdout, stderr = run(str(source))
    assert code == 0, stderr
    check_rows(list(csv.DictReader(io.StringIO(stdout), delimiter=";")))

    source = excel_csv(tmp_path / "unicode.txt", encoding="utf-16", delimiter="\t")
    out = tmp_path / "out.txt"
    code, _, stderr = run(str(source), "-o", str(out))
    assert code == 0, stderr
    check_rows(list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-16")), delimiter="\t")))


def test_an_unknown_encoding_or_delimiter_is_a_clear_error(tmp_path: Path) -> None:
    source = excel_csv(tmp_path / "export.csv")
    code, _, stderr = run(str(source), "--encoding", "klingon")
    assert code == 2 and "unknown encoding 'klingon'" in stderr
    code, _, stderr = run(str(source), "--delimiter", ";;")
    assert code == 2 and "give one character" in stderr
    code, _, stderr = run(str(source), "--encoding", "utf-8")
    assert code == 1 and "not utf-8 text" in stderr and "try another --encoding" in stderr


def test_the_backend_is_made_once_for_a_file_of_many_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file longer than a chunk: one backend, one language detector, every row labelled in order."""
    import veille.language
    import veille.sentiment

    made: list[str] = []
    real_make = veille.sentiment.make_backend

    def counting_make(name: str, model_path: str | None = None) -> object:
        made.append(name)
        return real_make(name, model_path)

    built: list[int] = []
    real_detector = veille.language._get_detector

    def counting_detector() -> object:
        if veille.language._detector is None:
            built.append(1)
        return real_detector()

    monkeypatch.setattr(veille.sentiment, "make_backend", counting_make)
    monkeypatch.setattr(veille.language, "_get_detector", counting_detector)
    monkeypatch.setattr(veille.language, "_detector", None)
    monkeypatch.setattr(sentiment_cmd, "CHUNK", 3)
    lines = ["text"] + [f"row {i} the weather is lovely today really" for i in range(10)]
    source = tmp_path / "many.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, stdout, stderr = run(str(source))
    assert code == 0, stderr
    rows = list(csv.DictReader(io.StringIO(stdout)))
    assert [r["text"] for r in rows] == lines[1:]
    assert made == ["lexicon"]
    assert len(built) <= 1


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``veille ARGS`` with stderr on a pseudo-terminal; return (exit code, what the terminal showed)."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
    child = subprocess.Popen(
        [sys.executable, "-m", "veille_cli", *args], cwd=cwd, stderr=secondary, stdout=subprocess.DEVNULL, env=env
    )
    os.close(secondary)
    shown = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(primary, 4096)
        except OSError:  # the child closed its end
            break
        if not data:
            break
        shown += data
    os.close(primary)
    return child.wait(timeout=120), shown.decode("utf-8", "replace")


def test_a_progress_bar_on_a_terminal_and_none_otherwise(tmp_path: Path) -> None:
    source = excel_csv(tmp_path / "export.csv")
    code, shown = _run_on_a_terminal(
        ["sentiment", "--backend", "lexicon", str(source), "-o", str(tmp_path / "out.csv")], tmp_path
    )
    assert code == 0, shown
    assert "sentiment" in shown and f"{len(ROWS)}/{len(ROWS)}" in shown, shown  # the bar, finished

    piped = subprocess.run(
        [sys.executable, "-m", "veille_cli", "sentiment", "--backend", "lexicon", str(source), "-o", "out2.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert f"{len(ROWS)}/{len(ROWS)}" not in piped.stderr
    assert piped.stderr.splitlines()[-1] == "wrote 4 rows to out2.csv"
