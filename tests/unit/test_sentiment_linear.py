"""The default sentiment backend, a linear model learned from labelled tweets: what a user sees, the
model file, its quality on tweets it never trained on, and that `make train` rebuilds it exactly."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.shared_data import requires_shared_data, shared_data
from veille.sentiment import LABELS, SentimentBackend, make_backend
from veille.sentiment.evaluation import evaluate, load_labelled
from veille.sentiment.lexicon import load_profile
from veille.sentiment.linear import (
    FORMAT,
    LinearBackend,
    LinearModels,
    lexicon_feature_names,
    load_model,
    sparse_features,
)
from veille.sentiment.memo import Memo

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "sentiment"
MODEL_DIR = ROOT / "shared" / "veille" / "sentiment" / "model"


@pytest.fixture(scope="module")
def linear() -> LinearBackend:
    """One linear backend for the module (the model file loads once)."""
    return LinearBackend()


def test_the_learned_model_is_the_default_backend() -> None:
    """`make_backend()` with no name gives the linear model; the lexicon backend stays available by name."""
    backend = make_backend()
    assert isinstance(backend, LinearBackend) and isinstance(backend, SentimentBackend)
    assert make_backend("lexicon").name == "lexicon"
    with pytest.raises(ValueError, match="no model path"):
        make_backend("linear", "/some/dir")


@pytest.mark.parametrize(
    ("text", "lang", "label"),
    [
        ("This is awful, the worst support I have ever had.", "en", "negative"),
        ("My flight got cancelled again and nobody answers the phone. Disgusting.", "en", "negative"),
        ("I love this, best service ever!", "en", "positive"),
        ("Quelle honte, un service vraiment nul.", "fr", "negative"),
        ("Je suis très déçu, c'est une catastrophe pour la région", "fr", "negative"),
        ("Merci beaucoup, c'est génial !", "fr", "positive"),
    ],
)
def test_clear_cases_get_the_obvious_label(linear: LinearBackend, text: str, lang: str, label: str) -> None:
    """Unambiguous complaints and praise, in English and French, get the label anyone would give."""
    assert linear.analyze(text, lang).label == label


def test_a_clear_complaint_would_raise_a_negative_alert(linear: LinearBackend) -> None:
    """A clearly negative text scores below the watches' default alert threshold (-0.3), as before."""
    assert linear.analyze("Worst bank ever, they stole my money and lied to me", "en").score <= -0.3
    assert linear.analyze("Service client lamentable, je suis furieux", "fr").score <= -0.3


def test_scores_are_in_range_and_follow_the_probabilities(linear: LinearBackend) -> None:
    """The score is P(positive) - P(negative), in [-1, 1], and the label is the most probable class."""
    for text in ("", "ok", "!!!", "😡😡😡", "@user http://x.example", "Great phone, awful battery"):
        result = linear.analyze(text, "en")
        probs = linear.probabilities(text, "en")
        assert math.isclose(sum(probs), 1.0)
        assert -1.0 <= result.score <= 1.0
        assert math.isclose(result.score, probs[2] - probs[0], abs_tol=1e-12)
        assert result.label == ("negative", "neutral", "positive")[probs.index(max(probs))]


def test_negation_and_emoji_move_the_score(linear: LinearBackend) -> None:
    """'not good' scores below 'good', and an angry emoji below a loving one."""
    assert linear.analyze("The service is not good", "en").score < linear.analyze("The service is good", "en").score
    neutral = "Our parcel arrived today"
    assert linear.analyze(neutral + " 😍", "en").score > linear.analyze(neutral + " 😡", "en").score


def test_other_languages_are_judged_on_emoji_only(linear: LinearBackend) -> None:
    """A German text is not misread by the English model; its emoji still count (lexicon backend)."""
    assert linear.analyze("Das ist kein Problem", "de").label == "neutral"
    assert linear.analyze("Das Paket ist da 😍", "de").label == "positive"


def test_fast_path_matches_the_training_features(linear: LinearBackend) -> None:
    """The run-time scorer computes exactly the dot product of the features training saw."""
    raw = json.loads((MODEL_DIR / "linear.json").read_text(encoding="utf-8"))["models"]
    texts = [
        ("Sooo HAPPY with #GreatService!!! 😍 @user http://t.co/x", "en"),
        ("I don't like it, but the staff were nice :)", "en"),
        ("Je n'aime pas l'écologie punitive... #nucléaire", "fr"),
        ("", "en"),
    ]
    for text, lang in texts:
        weights, intercept = raw[lang]["weights"], raw[lang]["intercept"]
        feats = sparse_features(text, lang)
        neg = intercept[0] + sum(weights.get(k, [0.0, 0.0])[0] * v for k, v in feats.items())
        pos = intercept[1] + sum(weights.get(k, [0.0, 0.0])[1] * v for k, v in feats.items())
        logits = [neg, 0.0, pos]  # neutral is the reference class
        top = max(logits)
        exps = [math.exp(z - top) for z in logits]
        expected = [e / sum(exps) for e in exps]
        assert linear.probabilities(text, lang) == pytest.approx(expected, abs=1e-9)


def test_model_file_is_small_and_says_what_it_was_trained_on() -> None:
    """The shipped weights are a few MB, name their training files, and never the English dev file."""
    path = MODEL_DIR / "linear.json"
    assert path.stat().st_size < 5_000_000
    meta = load_model().meta
    assert set(meta["trained_on"]) == {"en_tweets_train.csv", "fr_tweets_dev.csv"}
    assert "en_tweets_dev.csv" in meta["not_used"]
    readme = (MODEL_DIR / "README.md").read_text(encoding="utf-8")
    assert "licence" in readme.lower() and "make train" in readme


def test_a_file_that_is_not_a_model_is_refused() -> None:
    """Loading weights of another format or label order fails with a clear message."""
    with pytest.raises(ValueError, match="not a veille linear sentiment model"):
        LinearModels.from_json({"format": "something-else"})
    with pytest.raises(ValueError, match="make train"):  # the format before the word-list features changed
        LinearModels.from_json({"format": "veille-sentiment-linear-2"})
    with pytest.raises(ValueError, match="labels"):
        LinearModels.from_json({"format": FORMAT, "labels": ["positive", "negative"]})
    with pytest.raises(ValueError, match="no weights for fr"):
        LinearModels.from_json(
            {
                "format": FORMAT,
                "labels": ["negative", "neutral", "positive"],
                "models": {"en": {"intercept": [0, 0], "lexicon_features": 0, "weights": {}}},
            }
        )
    with pytest.raises(ValueError, match="word-list features"):
        part = {"intercept": [0, 0], "lexicon_features": 3, "weights": {}}
        LinearModels.from_json({"format": FORMAT, "labels": list(LABELS), "models": {"en": part, "fr": part}})


def test_training_settings_are_the_cross_validated_ones() -> None:
    """The model was fitted with the settings cross-validated in model/cv.json, and its decision rule
    (the bias on the negative class) is the one the cross-validation chose."""
    cv = json.loads((MODEL_DIR / "cv.json").read_text(encoding="utf-8"))
    settings = load_model().meta["settings"]
    for lang in ("en", "fr"):
        assert settings[lang]["negative_bias"] == cv[lang]["chosen_bias"]
        assert {k: v for k, v in settings[lang].items() if k != "negative_bias"} == cv[lang]["settings"]
        assert len(cv[lang]["nested_biases"]) == cv[lang]["folds"]


def test_word_list_evidence_sees_negation_until_the_clause_ends() -> None:
    """'good' counts as positive, after 'not' as negated positive, and a full stop ends the negation."""
    names = lexicon_feature_names(load_profile("en"))
    positive, negated_positive = names.index("vader_positive"), names.index("vader_negated_positive")

    def evidence(text: str) -> dict[int, float]:
        return {int(k[4:]): v for k, v in sparse_features(text, "en").items() if k.startswith("xen:")}

    assert positive in evidence("the food was good") and negated_positive not in evidence("the food was good")
    assert negated_positive in evidence("the food was not good") and positive not in evidence("the food was not good")
    assert positive in evidence("not again. the food was good")
    assert names[-3:] == ("has_link", "handles", "hashtags")
    assert evidence("@user @other see http://x.example #a")[len(names) - 2] == 2.0


@pytest.mark.skipif(not DATA.is_dir(), reason="evaluation data (../shared/data/sentiment) not present")
def test_english_dev_quality_floor(linear: LinearBackend) -> None:
    """On the 2,000 English dev tweets, which the model never trained on, macro recall and negative
    precision and recall stay at their measured level (see docs/benchmarks.md)."""
    rows = load_labelled(DATA / "en_tweets_dev.csv")
    predicted = [r.label for r in linear.analyze_many([t for t, _ in rows], ["en"] * len(rows))]
    scores = evaluate([label for _, label in rows], predicted)
    assert scores.macro_recall >= FLOOR["macro_recall"], scores
    assert scores.negative_precision >= FLOOR["negative_precision"], scores
    assert scores.negative_recall >= FLOOR["negative_recall"], scores


FLOOR = {"macro_recall": 71.5, "negative_precision": 44.5, "negative_recall": 81.0}
"""Measured 72.9 / 46.5 / 84.0 on the shipped model (look 3, docs/benchmarks.md), less a margin. Negative
precision at the dev file's class shares; 70.4 at equal shares (model/README.md on class shares)."""


@pytest.mark.skipif(not DATA.is_dir(), reason="training data (../shared/data/sentiment) not present")
def test_training_is_deterministic(tmp_path: Path) -> None:
    """`scripts/train_sentiment.py` on a slice of the data writes the same bytes twice."""
    pytest.importorskip("sklearn")
    outputs = []
    for name in ("a.json", "b.json"):
        out = tmp_path / name
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "train_sentiment.py"), "--limit", "400", "--output", str(out)],
            check=True,
            capture_output=True,
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert LinearModels.from_json(json.loads(outputs[0])).models["en"].unigrams


def _expected_probabilities(raw: dict[str, Any], text: str, lang: str) -> list[float]:
    """The softmax of the dot product of the training features (`sparse_features`) and the stored weights."""
    weights, intercept = raw[lang]["weights"], raw[lang]["intercept"]
    feats = sparse_features(text, lang)
    neg = intercept[0] + sum(weights.get(k, [0.0, 0.0])[0] * v for k, v in feats.items())
    pos = intercept[1] + sum(weights.get(k, [0.0, 0.0])[1] * v for k, v in feats.items())
    top = max(neg, 0.0, pos)
    exps = [math.exp(neg - top), math.exp(-top), math.exp(pos - top)]
    return [e / sum(exps) for e in exps]


@requires_shared_data("sentiment", "en_tweets_train.csv")
@pytest.mark.parametrize(("lang", "name", "step"), [("en", "en_tweets_train.csv", 24), ("fr", "fr_tweets_dev.csv", 1)])
def test_scores_are_the_training_features_on_real_tweets_cold_warm_and_evicted(lang: str, name: str, step: int) -> None:
    """On real tweets (2,000 English, every French one), the scorer gives the dot product of the
    features training saw (to 1e-9) whatever its memos hold: empty, warm (the same texts again), and
    so small that they fill up and drop entries between one text and the next."""
    raw = json.loads((MODEL_DIR / "linear.json").read_text(encoding="utf-8"))["models"]
    texts = [text for text, _ in load_labelled(shared_data("sentiment", name))][::step][:2_200]
    backend = LinearBackend(LinearModels.from_json(json.loads((MODEL_DIR / "linear.json").read_text(encoding="utf-8"))))
    expected = [_expected_probabilities(raw, text, lang) for text in texts]
    for _ in range(2):  # cold, then warm
        for text, probs in zip(texts, expected, strict=True):
            assert backend.probabilities(text, lang) == pytest.approx(probs, abs=1e-9), text
    model = backend.models.models[lang]
    model.clear_memos()
    model.chunks = Memo(model.chunks.compute, 7)
    model.pieces = Memo(model.pieces.compute, 5)
    model.tokens = Memo(model.tokens.compute, 3)
    for text, probs in zip(texts, expected, strict=True):
        assert backend.probabilities(text, lang) == pytest.approx(probs, abs=1e-9), text
        result = backend.analyze(text, lang)
        assert result.score == pytest.approx(probs[2] - probs[0], abs=1e-9)
    assert len(model.chunks) <= 14 and len(model.pieces) <= 10 and len(model.tokens) <= 6


def test_texts_with_emoticons_and_empty_chunks_score_as_their_features(linear: LinearBackend) -> None:
    """Emoticons kept whole (``:-)``, ``<3``, ``143``), a chunk with no token (``_``) between two words
    of a bigram, hashtags, elongations and French elisions: the dot product of the training features."""
    raw = json.loads((MODEL_DIR / "linear.json").read_text(encoding="utf-8"))["models"]
    texts = [
        ("not _ good :-) <3 143 #NotGood sooo baaad", "en"),
        ("so _ _ happy :D XD", "en"),
        ("_", "en"),
        ("pas _ terrible :( l'écologie n'est PAS géniale #FauxProgrès", "fr"),
    ]
    for text, lang in texts:
        assert linear.probabilities(text, lang) == pytest.approx(_expected_probabilities(raw, text, lang), abs=1e-9)


@requires_shared_data("sentiment", "en_tweets_train.csv")
def test_the_memos_add_nothing_to_the_garbage_collectors_work() -> None:
    """Each full collection of Python's cyclic garbage collector walks every object it tracks; in a
    classifier's process the scorer's memos (a hundred thousand entries) made each one cost 0.1-0.2 s
    of CPU. Their entries hold numbers, strings and tuples of them only, so the collector stops
    tracking them the first time it sees them."""
    import gc

    texts = [text for text, _ in load_labelled(shared_data("sentiment", "en_tweets_train.csv"))][:3_000]
    backend = LinearBackend(LinearModels.from_json(json.loads((MODEL_DIR / "linear.json").read_text(encoding="utf-8"))))
    for text in texts:
        backend.analyze(text, "en")
    for _ in range(8):  # a tuple is untracked once the tuples it holds are: nested ones take a pass a level
        gc.collect()
    model = backend.models.models["en"]
    entries = [entry for memo in (model.chunks, model.pieces, model.tokens) for entry in memo.young.values()]
    assert len(entries) > 10_000
    tracked = sum(1 for entry in entries if gc.is_tracked(entry))
    assert tracked == 0, f"{tracked} of {len(entries)} memo entries are tracked by the garbage collector"


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("see www.example.com now", "see   now"),
        ("awww.sweet", "awww.sweet"),  # no word boundary before "www": a word, not a link
        ("(www.x.fr)", "( "),
        ("via @user: great http://t.co/x", "via  : great  "),
        ("http and https, not ahttp", "  and  , not ahttp"),
        ("mail@host", "mail "),
        ("https://a.b/c?d=1#e", " "),
    ],
)
def test_links_and_handles_are_dropped_before_scoring(text: str, cleaned: str) -> None:
    """What the scorer never sees: links (with or without a scheme, only at a word's start), handles
    and a lone ``http`` (the links' regular expression was rewritten for speed; same matches)."""
    from veille.sentiment.text import clean

    assert clean(text) == cleaned
