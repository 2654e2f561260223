"""The linear model's batch path (``LinearBackend.analyze_many``, what the classifier calls per fetched
batch): the same label and score (to the bit) as ``analyze`` text by text, whatever the batch holds, with bounded
memory."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.shared_data import requires_shared_data, shared_data
from veille.sentiment.evaluation import load_labelled
from veille.sentiment.linear import BATCH_MIN, ChunkRows, LinearBackend, load_model

EDGE_TEXTS = [
    "",
    "_",
    "_ _ _",
    "not good",
    "I don't like it , not bad though",
    "@someone http://x.example",
    "a _ b",
    "!!!",
    "😡😡😡 :-( :)",
    "x" * 5000,  # a chunk longer than the memos hold
    "not " * 300,
    "Je ne suis pas content du tout",
    "#NotHappy #BestDayEver",
    "It's sooooo GOOD!!! &amp; \\u2019 www.example.org",
]


def _same(backend: LinearBackend, texts: list[str], langs: list[str | None]) -> None:
    expected = [backend.analyze(text, lang) for text, lang in zip(texts, langs, strict=True)]
    got = backend.analyze_many(texts, langs)
    assert len(got) == len(texts)
    for text, want, have in zip(texts, expected, got, strict=True):
        assert have.label == want.label, text
        assert have.score == want.score, text  # the same float: alerts must not depend on the batch


@pytest.fixture()
def fresh() -> Iterator[LinearBackend]:
    """A backend whose models' memos and batch rows start empty (and are emptied after)."""
    for model in load_model().models.values():
        model.clear_memos()
    yield LinearBackend()
    for model in load_model().models.values():
        model.clear_memos()


def test_a_batch_gets_what_each_text_gets(fresh: LinearBackend) -> None:
    """Edge cases, mixed languages (English, French, unknown, a language the model lacks) in one batch."""
    texts = EDGE_TEXTS * 3
    langs: list[str | None] = (["en", "fr", None, "de"] * len(texts))[: len(texts)]
    _same(fresh, texts, langs)
    assert fresh.analyze_many([], []) == []
    with pytest.raises(ValueError, match="languages"):
        fresh.analyze_many(["a", "b"], ["en"])


def test_small_batches_and_tiny_memos_give_the_same_scores(fresh: LinearBackend) -> None:
    """Rows dropped and reused as the bounded memo turns over (a limit of 3 chunks) change nothing."""
    backend = fresh
    for model in backend.models.models.values():
        model.batch = ChunkRows(model, 3)
    texts = [f"word{i % 7} is {'not ' if i % 3 else ''}good at all, really {i % 5}" for i in range(4 * BATCH_MIN)]
    used = []
    for _ in range(4):
        _same(backend, texts + EDGE_TEXTS, ["en"] * (len(texts) + len(EDGE_TEXTS)))
        rows = backend.models.models["en"].batch
        assert rows is not None and len(rows) <= 6  # two generations of 3 chunks
        used.append(rows.used)
    assert used[3] == used[1]  # the dropped generations' rows are reused: no growth batch after batch


@requires_shared_data("sentiment", "en_tweets_train.csv")
@requires_shared_data("sentiment", "fr_tweets_dev.csv")
def test_real_tweets_in_batches_match_text_by_text(fresh: LinearBackend) -> None:
    """Real English and French tweets, cold then warm, in batches of 500: the same labels and scores, to the bit."""
    for lang, name in (("en", "en_tweets_train.csv"), ("fr", "fr_tweets_dev.csv")):
        texts = [text for text, _ in load_labelled(shared_data("sentiment", name))][:2_000]
        for _ in range(2):
            for at in range(0, len(texts), 500):
                part = texts[at : at + 500]
                _same(fresh, part, [lang] * len(part))
