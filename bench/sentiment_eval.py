"""Sentiment quality and speed on real labelled tweets (English SemEval/TweetEval, French DEFT/UMSAB).

    python bench/sentiment_eval.py                # quality (CV estimates, dev figures, baselines), throughput
    python bench/sentiment_eval.py --speed-only   # throughput only: no look at the English dev figure
    python bench/sentiment_eval.py --fit          # re-fit the lexicon backend's calibrations (tuning half)

Data: ``<repo>/../shared/data/sentiment/`` (never copied into the repo). Protocol of the default
backend, the linear model (``veille.sentiment.linear``, trained by ``make train``):

* English: trained on ``en_tweets_train.csv`` only; its decision rule (a bias on the negative class)
  chosen by nested 5-fold cross-validation on that file (the CV estimate, from ``model/cv.json``).
  ``en_tweets_dev.csv`` (2,000 tweets) was never trained on; its figure here is shown with the
  number of times it was looked at (``bench/sentiment_looks.txt``: every run that prints it appends
  a line), since every look can steer a choice. ``--speed-only`` does not look.
* French: only 2,163 labelled tweets (``fr_tweets_dev.csv``), all used to train the shipped model, so
  there is no French dev figure: the estimate is nested 5-fold CV on that file (``model/cv.json``).
* Negative precision depends on the share of negative tweets, which differs between files; it is
  also given at equal class shares (what macro recall assumes), see ``model/README.md``.

Side by side, on the same dev files: the old default (lexicon + rules + calibration, whose figures
there are IN SAMPLE: it was shaped on those files) and the PyPI packages ``vadersentiment`` /
``vadersentiment-fr`` as they are (compound score, neutral band ±0.05), untouched by this project.
Metric: macro-averaged recall over the three classes (TweetEval's), plus negative precision and
recall.

Throughput (``--speed-only`` measures only this): texts per second of CPU time (``process_time``,
one process, one core), the linear model, the lexicon backend and VADER measured in turns, round
after round, on the same texts, with the load average recorded beside. Texts: English, the SemEval
training tweets (``en_tweets_train.csv``; no label is read, and never the dev file); French, the
2,163 French tweets. Three figures per system, each round on slices of tweets the round has not
used before:

* **steady state**, the figure a user gets from a running classifier: every memo (tokens, pieces,
  chunks, word-list lookups) emptied, then warmed by a stream of real tweets (English 30,000; French
  1,000: all it has), then one pass over DISJOINT tweets, never seen; new texts, known words;
* **cold**: memos emptied, one pass over tweets never seen (a service's first seconds);
* **warm**: the steady-state slice again (texts seen before: retweets, replays), best of three passes.

The linear model runs twice, in turns: as installed (with its compiled loops when they were built,
``veille.sentiment.speedups``) and as ``linear_python``, the same model on its own Python code: the
side-by-side peer of the compiled loops (equal scores). Medians over the rounds. Also language
detection alone, and detection + linear as the classifier's hot path runs them (warm). Writes
``bench/results/sentiment.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "shared"))

from veille.language import detect_language, preload  # noqa: E402
from veille.sentiment import (  # noqa: E402
    LABELS,
    Label,
    LexiconBackend,
    label_for_score,
    speedups,
)
from veille.sentiment.calibration import Calibration, fit  # noqa: E402
from veille.sentiment.evaluation import Scores, evaluate, load_labelled, split_labelled  # noqa: E402
from veille.sentiment.linear import LinearBackend, LinearModels  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "sentiment"
RESULTS = REPO / "bench" / "results" / "sentiment.json"
CALIBRATION_FILE = REPO / "shared" / "veille" / "sentiment" / "_calibration_data.py"
MODEL_DIR = REPO / "shared" / "veille" / "sentiment" / "model"
LANGS = ("en", "fr")
GOALS = {"en": 65.0, "fr": 62.0}
LOOKS = REPO / "bench" / "sentiment_looks.txt"
"""One line per look at the linear model's figure on en_tweets_dev.csv (each look is one more
chance to fit that file by hand); its line count is the number of looks reported."""


def _record_look(note: str) -> int:
    with LOOKS.open("a", encoding="utf-8") as handle:
        handle.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {note}\n")
    return sum(1 for line in LOOKS.read_text(encoding="utf-8").splitlines() if line.strip())


def _rows(lang: str, part: str) -> list[tuple[str, Label]]:
    return split_labelled(load_labelled(DATA / f"{lang}_tweets_dev.csv"), part)


def _vader(lang: str) -> Callable[[str], float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if lang == "fr":
            from vaderSentiment_fr.vaderSentiment import SentimentIntensityAnalyzer as FrAnalyzer

            fr = FrAnalyzer()
            return lambda text: float(fr.polarity_scores(text)["compound"])
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer as EnAnalyzer

        en = EnAnalyzer()
        return lambda text: float(en.polarity_scores(text)["compound"])


def _rate(func: Callable[[str], object], texts: list[str], min_seconds: float = 0.5, repeats: int = 3) -> float:
    """Texts per second of CPU time (one core): the best of ``repeats`` runs of at least
    ``min_seconds`` each. CPU time, not wall-clock time: the machine may be shared, and other
    processes stretch wall-clock time far more than this process's CPU time."""
    best = 0.0
    for _ in range(repeats):
        done, start = 0, time.process_time()
        while True:
            for text in texts:
                func(text)
            done += len(texts)
            elapsed = time.process_time() - start
            if elapsed >= min_seconds:
                break
        best = max(best, done / elapsed)
    return best


SPEED_ROUNDS = 4
"""Rounds of the throughput measurement: each system once per round, in turns."""
SPEED_PLAN = {"en": (30_000, 2_000), "fr": (1_000, 140)}
"""Per language: the tweets that warm the memos for the steady-state figure, and the tweets of each
timed slice (two new slices per round: one cold, one steady state)."""


_OTHER_MODELS: list[Any] = []
"""Linear models of the bench's own other backends (the pure-Python peer), emptied with the rest."""


def forget_memos() -> None:
    """Empty every memo the scorers keep (linear: chunks, pieces, tokens; tokenizer; word lists)."""
    from veille.sentiment import lexicon as lexicon_module
    from veille.sentiment import linear as linear_module
    from veille.sentiment import text as text_module

    for model in [*linear_module.load_model().models.values(), *_OTHER_MODELS]:
        model.clear_memos()
    for memo in text_module._CHUNK_MEMOS.values():
        memo.clear()
    text_module.fold.cache_clear()
    for lang in ("en", "fr", "*"):
        lexicon_module.load_profile(lang)._lookups.clear()


def _pass_rate(func: Callable[[str], object], texts: list[str]) -> float:
    """Texts per second of CPU time of one pass over ``texts``."""
    start = time.process_time()
    for text in texts:
        func(text)
    return len(texts) / max(time.process_time() - start, 1e-9)


def speed_in_turns(
    funcs: dict[str, Callable[[str], object]], pool: list[str], warm_size: int, slice_size: int, rounds: int
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, list[int]]]]:
    """Cold, steady-state and warm texts/s of CPU time of each function (see the module docstring),
    measured in turns on the same slices: the medians over ``rounds``, and each round's figures."""
    warm_texts, rest = pool[:warm_size], pool[warm_size:]
    need = 2 * rounds * slice_size
    if len(rest) < need:
        raise SystemExit(f"throughput needs {warm_size + need} tweets, the file has {len(pool)}")
    runs: dict[str, dict[str, list[float]]] = {name: {"cold": [], "steady": [], "warm": []} for name in funcs}
    for r in range(rounds):
        cold_slice = rest[2 * r * slice_size : (2 * r + 1) * slice_size]
        steady_slice = rest[(2 * r + 1) * slice_size : (2 * r + 2) * slice_size]
        order = list(funcs) if r % 2 == 0 else list(reversed(funcs))
        for name in order:
            func = funcs[name]
            forget_memos()
            runs[name]["cold"].append(_pass_rate(func, cold_slice))
            forget_memos()
            for text in warm_texts:
                func(text)
            runs[name]["steady"].append(_pass_rate(func, steady_slice))
            runs[name]["warm"].append(max(_pass_rate(func, steady_slice) for _ in range(3)))
    medians = {
        name: {kind: round(statistics.median(values)) for kind, values in per.items()} for name, per in runs.items()
    }
    each = {name: {kind: [round(v) for v in values] for kind, values in per.items()} for name, per in runs.items()}
    return medians, each


def _speed_texts(lang: str) -> list[str]:
    """The tweets the throughput is measured on (texts only; English: the training file, not dev)."""
    name = "en_tweets_train.csv" if lang == "en" else "fr_tweets_dev.csv"
    return [text for text, _ in load_labelled(DATA / name)]


def _scores_json(scores: Scores, gold: list[Label], predicted: list[Label]) -> dict[str, object]:
    said = [
        sum(1 for g, p in zip(gold, predicted, strict=True) if g == label and p == "negative")
        / max(1, sum(1 for g in gold if g == label))
        for label in LABELS
    ]
    return {
        "n": scores.n,
        "macro_recall": round(scores.macro_recall, 2),
        "negative_precision": round(scores.negative_precision, 2),
        "negative_precision_equal_shares": round(100.0 * said[0] / sum(said), 2) if sum(said) else 0.0,
        "negative_recall": round(scores.negative_recall, 2),
        "accuracy": round(scores.accuracy, 2),
        "recall": {k: round(v, 2) for k, v in scores.recall.items()},
    }


def fit_calibrations() -> dict[str, Calibration]:
    """Fit one calibration per language on the tune half and write ``_calibration_data.py``."""
    backend = LexiconBackend(calibrations={lang: None for lang in LANGS})
    fitted: dict[str, Calibration] = {}
    for lang in LANGS:
        rows = _rows(lang, "tune")
        vectors = [backend.features(text, lang) for text, _ in rows]
        fitted[lang] = fit(vectors, [label for _, label in rows])
        print(f"fitted {lang} on {len(rows)} tuning tweets")
    lines = [
        '"""Lexicon calibrations, generated by ``bench/sentiment_eval.py --fit``: do not edit.',
        "",
        "Fitted on the tuning half of the development tweets only (see veille.sentiment.evaluation).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from veille.sentiment.calibration import Calibration",
        "",
        "# fmt: off",
        "CALIBRATIONS: dict[str, Calibration] = {",
    ]
    for lang, calibration in fitted.items():
        lines.append(f'    "{lang}": Calibration(')
        lines.append("        weights=(")
        for label, row in zip(LABELS, calibration.weights, strict=True):
            lines.append(f"            # {label}")
            lines.append("            (")
            for at in range(0, len(row), 8):
                lines.append("                " + ", ".join(f"{w:.4f}" for w in row[at : at + 8]) + ",")
            lines.append("            ),")
        lines.append("        ),")
        lines.append("        bias=(" + ", ".join(f"{b:.4f}" for b in calibration.bias) + "),")
        lines.append("    ),")
    lines += ["}", "# fmt: on", ""]
    CALIBRATION_FILE.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {CALIBRATION_FILE.relative_to(REPO)}")
    return fitted


def _all_rows(lang: str) -> list[tuple[str, Label]]:
    return load_labelled(DATA / f"{lang}_tweets_dev.csv")


def _quality(gold: list[Label], predicted: list[Label]) -> dict[str, object]:
    return _scores_json(evaluate(gold, predicted), gold, predicted)


def _row(lang: str, name: str, on: str, sc: dict[str, object]) -> str:
    return (
        f"{lang:4} {name:30} {on:44} {sc['macro_recall']:7.1f} {sc['negative_precision']:6.1f} "
        f"{sc.get('negative_precision_equal_shares', 0.0):8.1f} {sc['negative_recall']:6.1f}"
    )


def run(speed_only: bool = False, note: str = "sentiment_eval run") -> dict[str, object]:
    """Measure every system on each language, print a table and return the JSON report."""
    linear = LinearBackend()
    # The same model run by its own Python code, side by side: what the compiled loops gain.
    model_data = json.loads((MODEL_DIR / "linear.json").read_text(encoding="utf-8"))
    linear_python = LinearBackend(LinearModels.from_json(model_data, compiled=False))
    _OTHER_MODELS.extend(linear_python.models.models.values())
    lexicon = LexiconBackend()
    cv = json.loads((MODEL_DIR / "cv.json").read_text(encoding="utf-8"))
    looks = None if speed_only else _record_look(note)
    report: dict[str, object] = {
        "python": platform.python_version(),
        "en_dev_looks": looks,
        "model_settings": linear.models.meta.get("settings", {}),
        "linear_scorer": speedups.STATUS,
        "languages": {},
    }
    languages: dict[str, object] = {}
    speeds: dict[str, object] = {}
    header = f"{'lang':4} {'system':30} {'on':44} {'macroR':>7} {'negP':>6} {'negP(eq)':>8} {'negR':>6}"
    print(header)
    print("-" * len(header))
    preload()  # build the language detector before timing it
    for lang in LANGS:
        rows = [] if speed_only else _all_rows(lang)  # --speed-only reads no dev file
        texts = [text for text, _ in rows]
        gold = [label for _, label in rows]
        langs: list[str | None] = [lang] * len(texts)
        part = cv[lang]
        entry: dict[str, object] = {
            "goal_macro_recall": GOALS[lang],
            "linear_cv": part["nested"] | {"rows": part["rows"], "folds": part["folds"]},
            "linear_cv_no_bias": part["no_bias"],
            "negative_bias": part["chosen_bias"],
            "nested_biases": part["nested_biases"],
            "class_shares": part["class_shares"],
        }
        lines = [
            ("veille linear (default)", f"{part['folds']}-fold nested CV, rule chosen inside", part["nested"]),
            ("veille linear, no bias", f"{part['folds']}-fold CV (argmax, for reference)", part["no_bias"]),
        ]
        if not speed_only:
            if lang == "en":
                dev = _quality(gold, [r.label for r in linear.analyze_many(texts, langs)])
                entry["linear_dev"] = dev | {"looks": looks}
                lines.append(("veille linear (default)", f"dev, never trained on (look {looks})", dev))
            lexicon_scores = _quality(gold, [r.label for r in lexicon.analyze_many(texts, langs)])
            entry["lexicon_dev_in_sample"] = lexicon_scores
            lines.append(("veille lexicon (old default)", "dev, IN SAMPLE (shaped on it)", lexicon_scores))
        vader = _vader(lang)
        if not speed_only:
            baseline = _quality(gold, [label_for_score(vader(text), -0.05, 0.05) for text in texts])
            entry["vader_dev"] = baseline
            lines.append(("VADER as packaged" if lang == "en" else "vadersentiment-fr as packaged", "dev", baseline))
        for name, on, sc in lines:
            print(_row(lang, name, on, sc))

        def linear_one(text: str, lang: str = lang) -> object:
            return linear.analyze(text, lang)

        def linear_python_one(text: str, lang: str = lang) -> object:
            return linear_python.analyze(text, lang)

        def lexicon_one(text: str, lang: str = lang) -> object:
            return lexicon.analyze(text, lang)

        def pipeline_one(text: str) -> object:
            return linear.analyze(text, detect_language(text))

        pool = _speed_texts(lang)
        sample = pool[-2_000:]  # language detection's figures: warm, on tweets of the same file
        load_before = os.getloadavg()
        turns, per_round = speed_in_turns(
            {"linear": linear_one, "linear_python": linear_python_one, "lexicon": lexicon_one, "vader": vader},
            pool,
            *SPEED_PLAN[lang],
            rounds=SPEED_ROUNDS,
        )
        speed: dict[str, object] = {
            **{f"{name}_{kind}": per[kind] for name, per in turns.items() for kind in ("steady", "cold", "warm")},
            "detect_language": round(_rate(detect_language, sample)),
            "detect_and_linear": round(_rate(pipeline_one, sample)),
        }
        load_after = os.getloadavg()
        entry["texts_per_second"] = speed | {
            "linear_over_lexicon_steady": round(turns["linear"]["steady"] / turns["lexicon"]["steady"], 2),
            "linear_over_linear_python_steady": round(turns["linear"]["steady"] / turns["linear_python"]["steady"], 2),
            "linear_over_vader_steady": round(turns["linear"]["steady"] / turns["vader"]["steady"], 2),
            "load_average_1min": [round(load_before[0], 2), round(load_after[0], 2)],
            "warm_tweets": SPEED_PLAN[lang][0],
            "slice_tweets": SPEED_PLAN[lang][1],
            "rounds": SPEED_ROUNDS,
            "per_round": per_round,
        }
        speeds[lang] = entry["texts_per_second"]
        print(
            f"{lang:4} texts/s of CPU time, one core (load {load_before[0]:.1f}-{load_after[0]:.1f}): "
            + ", ".join(f"{k} {v:,}" for k, v in speed.items())
        )
        ratio = turns["linear"]["steady"] / turns["lexicon"]["steady"]
        compiled_ratio = turns["linear"]["steady"] / turns["linear_python"]["steady"]
        print(f"{lang:4} linear / lexicon, steady state: {ratio:.2f}")
        print(f"{lang:4} linear ({speedups.STATUS}) / its pure Python, steady state: {compiled_ratio:.2f}")
        languages[lang] = entry
    report["languages"] = languages
    if speed_only:
        # Refresh only the throughput figures of the last full run (its quality figures stay).
        if RESULTS.exists():
            saved = json.loads(RESULTS.read_text(encoding="utf-8"))
            for lang, measured in speeds.items():
                saved.setdefault("languages", {}).setdefault(lang, {})["texts_per_second"] = measured
            RESULTS.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")
            print(f"\n--speed-only: no look; refreshed the throughput in {RESULTS.relative_to(REPO)}")
        return report
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(REPO)} (look {looks} at the English dev figure; labels: {', '.join(LABELS)})")
    return report


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", action="store_true", help="re-fit the calibrations on the tune half first")
    parser.add_argument("--speed-only", action="store_true", help="throughput only (no look at the dev figure)")
    parser.add_argument("--note", default="sentiment_eval run", help="what this look at the dev figure is for")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"no evaluation data at {DATA}", file=sys.stderr)
        return 2
    if args.fit:
        fit_calibrations()
        # The backend loads calibrations once per process: evaluate in a fresh one.
        import subprocess

        return subprocess.call([sys.executable, __file__])
    run(args.speed_only, args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
