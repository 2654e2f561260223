"""Train the linear sentiment model (``shared/veille/sentiment/model/linear.json``): ``make train``.

    python scripts/train_sentiment.py                 # fit with the chosen settings, write the model
    python scripts/train_sentiment.py --cv all        # cross-validate the settings, write model/cv.json
    python scripts/train_sentiment.py --check FILE    # fit, and exit 1 unless FILE is byte-identical

Data (never copied into the repository): ``../shared/data/sentiment/en_tweets_train.csv`` (48,273
English tweets, SemEval 2013-2016) and ``fr_tweets_dev.csv`` (2,163 French tweets, UMSAB/DEFT-2017).
``en_tweets_dev.csv`` is NOT read here: it is the English development check (bench/sentiment_eval.py).

Protocol. Features are :func:`veille.sentiment.linear.sparse_features`; each language gets its own
model. For each fold of a stratified k-fold split, the vocabulary (n-grams seen in at least
``min_df`` training texts of the fold) and the model are fitted on the other folds only, and the
fold is predicted. English: the inverse regularisation ``C`` with the best 5-fold CV macro recall on
the English training file. French: 5-fold CV on the French file, each fold's model trained on the
other French folds alone or together with all the English tweets (French weighted 1 or 4); the
best by CV macro recall is the shipped setting. Each language's model is then fitted on all its
data with the chosen settings. Deterministic: sorted vocabulary, single-threaded lbfgs, weights
rounded to 4 decimals.

Needs scikit-learn (``pip install -e '.[train]'``); the runtime does not.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "shared"))

import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold  # noqa: E402

from veille.sentiment.base import LABELS  # noqa: E402
from veille.sentiment.evaluation import evaluate  # noqa: E402
from veille.sentiment.lexicon import LexiconBackend  # noqa: E402
from veille.sentiment.linear import sparse_features  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "sentiment"
MODEL_DIR = REPO / "shared" / "veille" / "sentiment" / "model"
MODEL_FILE = MODEL_DIR / "linear.json"
CV_FILE = MODEL_DIR / "cv.json"
SEED = 20260601
FOLDS = 5
MIN_DF = 5
DECIMALS = 3
# The settings chosen by the last cross-validation (``--cv``; its figures are in model/cv.json).
DEFAULTS: dict[str, Any] = {"en": {"C": 1.0}, "fr": {"C": 1.0, "data": "French only"}}
FR_C = 1.0
C_GRID = (0.5, 1.0, 2.0)
FR_WEIGHT_GRID = (1.0, 4.0)


def load(name: str) -> tuple[list[str], np.ndarray]:
    """Read ``name`` (text,label,...) from the shared data folder."""
    texts: list[str] = []
    labels: list[int] = []
    with (DATA / name).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            texts.append(row["text"])
            labels.append(int(row["label"]))
    return texts, np.array(labels, dtype=np.int64)


class Features:
    """Every text's named features, and a column index over all names (sorted: deterministic)."""

    def __init__(self, rows: Sequence[dict[str, float]]) -> None:
        names = sorted({name for row in rows for name in row})
        self.names = names
        index = {name: i for i, name in enumerate(names)}
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        for row in rows:
            for name in sorted(row):
                indices.append(index[name])
                values.append(row[name])
            indptr.append(len(indices))
        self.matrix = sparse.csr_matrix(
            (np.array(values), np.array(indices, dtype=np.int64), np.array(indptr, dtype=np.int64)),
            shape=(len(rows), len(names)),
        )
        self.always = np.array([name[0] not in "ubc" for name in names])
        """Columns kept whatever their document frequency (lexicon evidence, language)."""
        spread = np.sqrt(np.asarray(self.matrix.multiply(self.matrix).mean(axis=0)).ravel())
        self.scale = np.where(self.always & (spread > 0), spread, 1.0)
        """Root mean square of each dense column (1 for the sparse n-gram columns)."""


def keep_columns(features: Features, rows: np.ndarray) -> np.ndarray:
    """Columns seen in at least MIN_DF of ``rows`` (plus the dense ones), as sorted indices."""
    df = np.asarray((features.matrix[rows] != 0).sum(axis=0)).ravel()
    return np.flatnonzero((df >= MIN_DF) | features.always)


def fit(features: Features, rows: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float) -> tuple[Any, np.ndarray]:
    """Fit class-balanced multinomial logistic regression on ``rows``; return it and its columns."""
    columns = keep_columns(features, rows)
    x = features.matrix[rows][:, columns]
    # The few dense columns (lexicon evidence, language) are brought to unit spread for the solver
    # (it converges in far fewer steps); the scaling is folded back into their weights below.
    scale = features.scale[columns]
    x = x @ sparse.diags(1.0 / scale)
    # Balance classes (the metric is macro recall) on top of the per-sample (language) weights.
    counts = np.bincount(y[rows], weights=weights[rows], minlength=3)
    balance = weights[rows] * (weights[rows].sum() / (3 * counts))[y[rows]]
    model = LogisticRegression(C=c, max_iter=1000, tol=1e-3, solver="lbfgs")
    model.fit(x, y[rows], sample_weight=balance)
    model.coef_ = model.coef_ / scale
    return model, columns


def predict(model: Any, features: Features, columns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Most probable class of ``rows``."""
    return np.asarray(model.predict(features.matrix[rows][:, columns]))


def scores_of(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Macro recall, negative precision and recall (percent)."""
    s = evaluate([LABELS[int(g)] for g in gold], [LABELS[int(p)] for p in predicted])
    return {
        "macro_recall": round(s.macro_recall, 2),
        "negative_precision": round(s.negative_precision, 2),
        "negative_recall": round(s.negative_recall, 2),
        "accuracy": round(s.accuracy, 2),
    }


def cross_validate(
    features: Features, y: np.ndarray, weights: np.ndarray, target: np.ndarray, always: np.ndarray, c: float
) -> dict[str, float]:
    """k-fold CV over the ``target`` rows (each fold trained on the other folds plus ``always`` rows)."""
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    predicted = np.empty(len(target), dtype=np.int64)
    for train_at, test_at in folds.split(target, y[target]):
        rows = np.concatenate([always, target[train_at]])
        model, columns = fit(features, rows, y, weights, c)
        predicted[test_at] = predict(model, features, columns, target[test_at])
    return scores_of(y[target], predicted)


def _weights_json(model: Any, names: list[str], lexicon_size: int) -> str:
    """One language's weights: intercept, lexicon size, then one rounded weight triple per line."""
    # Softmax is unchanged when a feature's three weights move together: store each relative to the
    # neutral class (negative - neutral, positive - neutral), two numbers instead of three.
    coef = np.round(model.coef_[[0, 2]] - model.coef_[1], DECIMALS)
    intercept = ", ".join(_num(float(v)) for v in model.intercept_[[0, 2]] - model.intercept_[1])
    lines = []
    for j, name in enumerate(names):
        pair = [float(v) for v in coef[:, j]]
        if any(pair):
            lines.append(f"   {json.dumps(name, ensure_ascii=False)}: [{', '.join(_num(v) for v in pair)}]")
    head = f'{{\n  "intercept": [{intercept}],\n  "lexicon_features": {lexicon_size},\n  "weights": {{\n'
    return head + ",\n".join(lines) + "\n  }\n }"


def model_json(models: dict[str, str], meta: dict[str, Any]) -> str:
    """The model file: sorted keys, weights rounded, one weight triple per line (diffs stay readable)."""
    head = json.dumps(
        {"format": "veille-sentiment-linear-2", "labels": list(LABELS), "meta": meta},
        sort_keys=True,
        ensure_ascii=False,
        indent=1,
    )
    body = ",\n".join(f" {json.dumps(lang)}: {text}" for lang, text in sorted(models.items()))
    return head[: head.rindex("}")].rstrip() + ',\n "models": {\n' + body + "\n }\n}\n"


def _num(value: float) -> str:
    text = f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0", "-") else text


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cv", choices=("en", "fr", "all"), help="cross-validate the settings (writes model/cv.json)")
    parser.add_argument("--check", type=Path, help="exit 1 unless the trained model equals this file byte for byte")
    parser.add_argument("--output", type=Path, default=MODEL_FILE, help="where to write the model")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N texts of each file (tests)")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"no training data at {DATA}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    en_texts, en_y = load("en_tweets_train.csv")
    fr_texts, fr_y = load("fr_tweets_dev.csv")
    if args.limit:
        en_texts, en_y, fr_texts, fr_y = (
            en_texts[: args.limit],
            en_y[: args.limit],
            fr_texts[: args.limit],
            fr_y[: args.limit],
        )
    lexicon = LexiconBackend()
    rows = [sparse_features(t, "en", lexicon) for t in en_texts] + [sparse_features(t, "fr", lexicon) for t in fr_texts]
    features = Features(rows)
    y = np.concatenate([en_y, fr_y])
    en_rows = np.arange(len(en_texts))
    fr_rows = np.arange(len(en_texts), len(en_texts) + len(fr_texts))
    none = np.array([], dtype=np.int64)
    print(f"{len(rows)} texts, {len(features.names)} distinct features ({time.perf_counter() - started:.0f} s)")

    if args.cv:
        ones = np.ones(len(y))
        report: dict[str, Any] = {}
        if args.cv in ("en", "all"):
            en_cv = {}
            for c in C_GRID:
                en_cv[f"C={c}"] = cross_validate(features, y, ones, en_rows, none, c)
                print(f"en  C={c}: {en_cv[f'C={c}']}  ({time.perf_counter() - started:.0f} s)", flush=True)
            best_c = max(C_GRID, key=lambda c: en_cv[f"C={c}"]["macro_recall"])
            report["en"] = {"rows": len(en_rows), "folds": FOLDS, "seed": SEED, "by_setting": en_cv, "chosen_C": best_c}
        if args.cv in ("fr", "all"):
            c = FR_C
            fr_cv: dict[str, Any] = {"French only": cross_validate(features, y, ones, fr_rows, none, c)}
            print(f"fr  French only: {fr_cv['French only']}", flush=True)
            for weight in FR_WEIGHT_GRID:
                weights = np.where(np.arange(len(y)) >= len(en_texts), weight, 1.0)
                name = f"English + French, French weight {weight:g}"
                fr_cv[name] = cross_validate(features, y, weights, fr_rows, en_rows, c)
                print(f"fr  {name}: {fr_cv[name]}  ({time.perf_counter() - started:.0f} s)", flush=True)
            best = max(fr_cv, key=lambda name: fr_cv[name]["macro_recall"])
            report["fr"] = {
                "rows": len(fr_rows),
                "folds": FOLDS,
                "seed": SEED,
                "C": c,
                "by_setting": fr_cv,
                "chosen": best,
            }
        # Read just before writing: the English and French parts may run at the same time.
        merged = json.loads(CV_FILE.read_text(encoding="utf-8")) if CV_FILE.exists() else {}
        CV_FILE.write_text(json.dumps(merged | report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {CV_FILE}: set DEFAULTS in this script to the chosen settings, then run it without --cv")
        return 0

    settings = DEFAULTS
    lexicon_sizes = {"en": len(lexicon.features("", "en")), "fr": len(lexicon.features("", "fr"))}
    models = {}
    for lang, own in (("en", en_rows), ("fr", fr_rows)):
        chosen = settings[lang]
        if chosen.get("data") == "English + French":
            weights = np.where(np.arange(len(y)) >= len(en_texts), chosen["fr_weight"], 1.0)
            rows_used = np.arange(len(y))
        else:
            weights, rows_used = np.ones(len(y)), own
        model, columns = fit(features, rows_used, y, weights, chosen["C"])
        models[lang] = _weights_json(model, [features.names[j] for j in columns], lexicon_sizes[lang])
        print(f"fitted {lang} on {len(rows_used)} texts ({time.perf_counter() - started:.0f} s)", flush=True)
    meta = {
        "trained_on": {
            "en_tweets_train.csv": len(en_texts),
            "fr_tweets_dev.csv": len(fr_texts),
        },
        "not_used": "en_tweets_dev.csv (the English development check), TweetEval test, UMSAB test",
        "settings": settings,
        "min_df": MIN_DF,
        "seed": SEED,
    }
    text = model_json(models, meta)
    if args.check:
        same = args.check.read_bytes() == text.encode("utf-8")
        print("identical" if same else f"differs from {args.check}")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text.encode()) / 1e6:.2f} MB) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
