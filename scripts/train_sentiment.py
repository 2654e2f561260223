"""Train the linear sentiment model (``shared/veille/sentiment/model/linear.json``): ``make train``.

    python scripts/train_sentiment.py                 # fit with the chosen settings, write the model
    python scripts/train_sentiment.py --cv all        # cross-validate the settings, write model/cv.json
    python scripts/train_sentiment.py --check FILE    # fit, and exit 1 unless FILE is byte-identical

Data (never copied into the repository): ``../shared/data/sentiment/en_tweets_train.csv`` (48,273
English tweets, SemEval 2013-2016) and ``fr_tweets_dev.csv`` (2,163 French tweets, UMSAB/DEFT-2017).
``en_tweets_dev.csv`` is NOT read here: it is the English development check (bench/sentiment_eval.py).

Protocol. Features are :func:`veille.sentiment.linear.sparse_features`; each language gets its own
class-balanced model, its vocabulary (n-grams seen in at least ``MIN_DF`` training texts) fitted with
it. ``C`` and the French data ("French only") come from an earlier cross-validation (model/README.md).
``--cv`` runs the nested cross-validation of the decision rule (a bias on the negative class's
log-odds, maximising min(macro recall, negative recall, negative precision at equal class shares)):
see :func:`nested_cv`; set ``DEFAULTS``' ``negative_bias`` to the ``chosen_bias`` it writes to
model/cv.json. Each language's model is then fitted on all its data with its settings, the bias
added to its intercept. Deterministic: sorted vocabulary, single-threaded lbfgs, weights rounded to
3 decimals.

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
from veille.sentiment.lexicon import load_profile  # noqa: E402
from veille.sentiment.linear import FORMAT, lexicon_feature_names, sparse_features  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "sentiment"
MODEL_DIR = REPO / "shared" / "veille" / "sentiment" / "model"
MODEL_FILE = MODEL_DIR / "linear.json"
CV_FILE = MODEL_DIR / "cv.json"
SEED = 20260601
FOLDS = 5
MIN_DF = 5
DECIMALS = 3
# The settings: C and the French data by an earlier cross-validation (model/README.md); the
# negative bias (the decision rule) by the last ``--cv`` (its figures are in model/cv.json).
DEFAULTS: dict[str, Any] = {
    "en": {"C": 1.0, "negative_bias": 0.35},
    "fr": {"C": 1.0, "data": "French only", "negative_bias": 0.2},
}
BIAS_GRID = tuple(round(-1.0 + 0.05 * i, 2) for i in range(51))
"""Candidate biases added to the negative class's logit (log-odds): -1.0 to 1.5."""
ALERT_THRESHOLD = -0.3
"""The watches' default ``negative_threshold``: a mention alerts when its score is at or below it."""


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


def probabilities(model: Any, features: Features, columns: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """P(negative), P(neutral), P(positive) of ``rows``."""
    return np.asarray(model.predict_proba(features.matrix[rows][:, columns]))


def decide(probs: np.ndarray, bias: float) -> np.ndarray:
    """The decision rule: the most probable class after adding ``bias`` to the negative log-odds."""
    logits = np.log(np.clip(probs, 1e-300, None))
    logits[:, 0] += bias
    return np.asarray(np.argmax(logits, axis=1))


def alert(probs: np.ndarray, bias: float) -> np.ndarray:
    """Whether a watch with the default threshold alerts: score P(pos) - P(neg) <= ALERT_THRESHOLD,
    the probabilities taken after the bias (the shipped model holds it in its intercept)."""
    odds = probs * np.array([np.exp(bias), 1.0, 1.0])
    odds /= odds.sum(axis=1, keepdims=True)
    return np.asarray(odds[:, 2] - odds[:, 0] <= ALERT_THRESHOLD)


def scores_of(gold: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Macro recall, negative precision (at the file's class shares and at equal shares) and recall."""
    recall = [float(np.mean(predicted[gold == c] == c)) if np.any(gold == c) else 0.0 for c in range(3)]
    said_negative = [float(np.mean(predicted[gold == c] == 0)) if np.any(gold == c) else 0.0 for c in range(3)]
    s = evaluate([LABELS[int(g)] for g in gold], [LABELS[int(p)] for p in predicted])
    return {
        "macro_recall": round(s.macro_recall, 2),
        "negative_precision": round(s.negative_precision, 2),
        "negative_precision_equal_shares": round(100.0 * recall[0] / sum(said_negative), 2)
        if any(said_negative)
        else 0.0,
        "negative_recall": round(s.negative_recall, 2),
        "accuracy": round(s.accuracy, 2),
    }


def alert_scores(gold: np.ndarray, alerts: np.ndarray) -> dict[str, float]:
    """Precision and recall of the default alert rule for negative tweets (file shares, equal shares)."""
    negative = gold == 0
    recall = float(np.mean(alerts[negative])) if negative.any() else 0.0
    precision = float(np.mean(negative[alerts])) if alerts.any() else 0.0
    rates = [float(np.mean(alerts[gold == c])) if np.any(gold == c) else 0.0 for c in range(3)]
    equal = recall / sum(rates) if any(rates) else 0.0
    return {
        "precision": round(100 * precision, 2),
        "precision_equal_shares": round(100 * equal, 2),
        "recall": round(100 * recall, 2),
    }


def objective(gold: np.ndarray, predicted: np.ndarray) -> float:
    """What the decision rule maximises: the least of macro recall, negative recall and negative
    precision at equal class shares (the deployment's class shares are unknown: model/README.md)."""
    s = scores_of(gold, predicted)
    return min(s["macro_recall"], s["negative_recall"], s["negative_precision_equal_shares"])


def choose_bias(gold: np.ndarray, probs: np.ndarray) -> float:
    """The bias of BIAS_GRID with the best objective (ties: the smallest in size, then the lower)."""
    return max(BIAS_GRID, key=lambda b: (objective(gold, decide(probs, b)), -abs(b), -b))


def nested_cv(
    features: Features, y: np.ndarray, weights: np.ndarray, target: np.ndarray, always: np.ndarray, c: float
) -> dict[str, Any]:
    """k-fold CV of the model and of its decision rule over the ``target`` rows (each model trained on
    other folds plus the ``always`` rows).

    For each outer fold k, the bias is chosen on inner out-of-fold probabilities of the other folds:
    fold j (j != k) scored by a model trained on the folds other than j and k. So no tweet's label
    touches the model or the rule that score it. (The model trained without folds j and k scores j
    for outer fold k and k for outer fold j: one fit per pair.) Also returns the plain out-of-fold
    probabilities (each fold by a model trained on the others), on which the shipped bias is chosen.
    """
    splitter = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=SEED)
    folds = [target[test_at] for _, test_at in splitter.split(target, y[target])]
    position = {int(row): at for at, row in enumerate(target)}
    oof = np.empty((len(target), 3))
    pair_probs: dict[tuple[int, int], np.ndarray] = {}  # (outer k, scored j) -> probabilities of fold j
    for k, held in enumerate(folds):
        rows = np.concatenate([always, *[f for i, f in enumerate(folds) if i != k]])
        model, columns = fit(features, rows, y, weights, c)
        oof[[position[int(r)] for r in held]] = probabilities(model, features, columns, held)
        print(f"  outer fold {k + 1}/{FOLDS} fitted", flush=True)
    for k in range(FOLDS):
        for j in range(k + 1, FOLDS):
            rows = np.concatenate([always, *[f for i, f in enumerate(folds) if i not in (j, k)]])
            model, columns = fit(features, rows, y, weights, c)
            pair_probs[(k, j)] = probabilities(model, features, columns, folds[j])
            pair_probs[(j, k)] = probabilities(model, features, columns, folds[k])
            print(f"  inner pair ({k + 1}, {j + 1}) fitted", flush=True)
    gold = y[target]
    nested_pred = np.empty(len(target), dtype=np.int64)
    nested_alert = np.empty(len(target), dtype=bool)
    inner_biases = []
    for k, held in enumerate(folds):
        others = [j for j in range(FOLDS) if j != k]
        inner_gold = np.concatenate([y[folds[j]] for j in others])
        inner_probs = np.concatenate([pair_probs[(k, j)] for j in others])
        bias = choose_bias(inner_gold, inner_probs)
        inner_biases.append(bias)
        at = [position[int(r)] for r in held]
        nested_pred[at] = decide(oof[at], bias)
        nested_alert[at] = alert(oof[at], bias)
    chosen = choose_bias(gold, oof)
    return {
        "rows": len(target),
        "folds": FOLDS,
        "seed": SEED,
        "C": c,
        "no_bias": scores_of(gold, decide(oof, 0.0)) | {"alert": alert_scores(gold, alert(oof, 0.0))},
        "nested": scores_of(gold, nested_pred) | {"alert": alert_scores(gold, nested_alert)},
        "nested_biases": inner_biases,
        "chosen_bias": chosen,
        "chosen_bias_in_sample": scores_of(gold, decide(oof, chosen))
        | {"alert": alert_scores(gold, alert(oof, chosen))},
        "class_shares": [round(float(np.mean(gold == c)), 4) for c in range(3)],
    }


def _weights_json(model: Any, names: list[str], lexicon_size: int, bias: float) -> str:
    """One language's weights: intercept (plus the decision rule's bias on the negative class),
    lexicon size, then one rounded weight pair per line."""
    # Softmax is unchanged when a feature's three weights move together: store each relative to the
    # neutral class (negative - neutral, positive - neutral), two numbers instead of three.
    coef = np.round(model.coef_[[0, 2]] - model.coef_[1], DECIMALS)
    relative = model.intercept_[[0, 2]] - model.intercept_[1] + np.array([bias, 0.0])
    intercept = ", ".join(_num(float(v)) for v in relative)
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
        {"format": FORMAT, "labels": list(LABELS), "meta": meta},
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
    parser.add_argument("--cv-output", type=Path, default=CV_FILE, help="where --cv writes its figures")
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
    rows = [sparse_features(t, "en") for t in en_texts] + [sparse_features(t, "fr") for t in fr_texts]
    features = Features(rows)
    y = np.concatenate([en_y, fr_y])
    en_rows = np.arange(len(en_texts))
    fr_rows = np.arange(len(en_texts), len(en_texts) + len(fr_texts))
    none = np.array([], dtype=np.int64)
    print(f"{len(rows)} texts, {len(features.names)} distinct features ({time.perf_counter() - started:.0f} s)")

    if args.cv:
        ones = np.ones(len(y))
        report: dict[str, Any] = {}
        for lang, own in (("en", en_rows), ("fr", fr_rows)):
            if args.cv not in (lang, "all"):
                continue
            chosen = DEFAULTS[lang]
            if chosen.get("data") == "English + French":
                weights = np.where(np.arange(len(y)) >= len(en_texts), chosen["fr_weight"], 1.0)
                report[lang] = nested_cv(features, y, weights, own, en_rows, chosen["C"])
            else:
                report[lang] = nested_cv(features, y, ones, own, none, chosen["C"])
            report[lang]["settings"] = {k: v for k, v in chosen.items() if k != "negative_bias"}
            print(f"{lang}: {json.dumps(report[lang])}  ({time.perf_counter() - started:.0f} s)", flush=True)
        # Read just before writing: the English and French parts may run at the same time.
        merged = json.loads(args.cv_output.read_text(encoding="utf-8")) if args.cv_output.exists() else {}
        args.cv_output.write_text(json.dumps(merged | report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {args.cv_output}: set each negative_bias in DEFAULTS to its chosen_bias, then run without --cv")
        return 0

    settings = DEFAULTS
    lexicon_sizes = {lang: len(lexicon_feature_names(load_profile(lang))) for lang in ("en", "fr")}
    models = {}
    for lang, own in (("en", en_rows), ("fr", fr_rows)):
        chosen = settings[lang]
        if chosen.get("data") == "English + French":
            weights = np.where(np.arange(len(y)) >= len(en_texts), chosen["fr_weight"], 1.0)
            rows_used = np.arange(len(y))
        else:
            weights, rows_used = np.ones(len(y)), own
        model, columns = fit(features, rows_used, y, weights, chosen["C"])
        names = [features.names[j] for j in columns]
        models[lang] = _weights_json(model, names, lexicon_sizes[lang], float(chosen["negative_bias"]))
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
