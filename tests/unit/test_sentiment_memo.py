"""The sentiment scorers' bounded memo (veille.sentiment.memo): a stream's frequent words stay
remembered when it fills up, and it never holds more than twice its limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veille.sentiment.memo import Memo, key_length


def test_a_key_used_in_every_generation_is_never_recomputed() -> None:
    """A frequent word seen among a flood of new ones is computed once: filling the memo does not
    throw it away (the earlier policy cleared everything, frequent words included)."""
    computed: list[str] = []

    def compute(key: str) -> str:
        computed.append(key)
        return key.upper()

    memo: Memo[str, str] = Memo(compute, limit=10)
    for i in range(1_000):
        assert memo.get("the") == "THE"
        assert memo.get(f"rare{i}") == f"RARE{i}"
        assert len(memo) <= 2 * memo.limit
    assert computed.count("the") == 1
    assert len(computed) == 1_001


def test_a_key_not_used_for_two_generations_is_dropped_and_recomputed() -> None:
    """What the stream stopped using goes (memory stays bounded), and comes back computed again."""
    computed: list[str] = []
    memo: Memo[str, int] = Memo(lambda key: computed.append(key) or len(computed), limit=4)
    first = memo.get("old")
    for i in range(8):  # two generations of other keys
        memo.get(f"k{i}")
    assert "old" not in memo.young and "old" not in memo.old
    assert memo.get("old") != first and computed.count("old") == 2


def test_a_memo_needs_room() -> None:
    """A limit below one is refused with a message (it could remember nothing)."""
    with pytest.raises(ValueError, match="at least 1"):
        Memo(str, limit=0)


def test_a_long_key_is_computed_every_time_and_never_held() -> None:
    calls: list[str] = []
    memo: Memo[str, int] = Memo(lambda key: calls.append(key) or len(key), limit=8, max_key=16)
    long = "x" * 17
    assert memo.get(long) == 17
    assert memo.get(long) == 17
    assert calls == [long, long]
    assert long not in memo.young and long not in memo.old
    assert memo.get("short") == 5 and "short" in memo.young


def test_a_flood_of_long_unique_texts_leaves_the_scorers_memos_small() -> None:
    """Hostile input: texts of one 20,000-character 'word' each, all different. Before, each one stayed in
    the chunk, piece and token memos (tens of thousands of entries a generation): gigabytes at full size."""
    from veille.sentiment.linear import LinearBackend

    backend = LinearBackend()
    model = backend.models.models["en"]
    model.clear_memos()  # the models (and their memos) are shared by every backend of the process
    for i in range(30):
        text = f"{i:05d}" + "a" * 20_000
        assert backend.analyze(text, "en").label in ("negative", "neutral", "positive")
    held = sum(len(k) for memo in (model.chunks, model.pieces, model.tokens) for k in (*memo.young, *memo.old))
    assert held < 10_000, held


@pytest.mark.parametrize("compiled", [True, False], ids=["as-installed", "pure-python"])
def test_a_flood_of_long_punctuation_runs_leaves_the_token_memo_small(compiled: bool) -> None:
    """Hostile input: runs of '!' and '.' hundreds long, each text's a different length. A run is one token
    (a 'bang' or a 'stop'), remembered in the tokens memo under a (kind, text) key; before, every run stayed
    there (about 740 characters a text here; with 20,000-character runs, gigabytes at the memo's full size).
    Scores are unchanged: the runs are computed every time instead."""
    from veille.sentiment.linear import LinearBackend, LinearModels

    model_file = Path(__file__).resolve().parents[2] / "shared" / "veille" / "sentiment" / "model" / "linear.json"
    data = json.loads(model_file.read_text(encoding="utf-8"))
    backend = LinearBackend(LinearModels.from_json(data, compiled=compiled))
    model = backend.models.models["en"]
    texts = [f"wow {'!' * (300 + i)} and ....{'.' * (400 + i)}" for i in range(30)]
    first = [backend.analyze(text, "en") for text in texts]
    held = sum(
        key_length(key) for memo in (model.chunks, model.pieces, model.tokens) for key in (*memo.young, *memo.old)
    )
    assert held < 1_000, held
    assert [backend.analyze(text, "en") for text in texts] == first


def test_a_tuple_key_counts_the_characters_of_its_strings() -> None:
    calls: list[tuple[str, str]] = []
    memo: Memo[tuple[str, str], int] = Memo(lambda key: calls.append(key) or len(key[1]), limit=8, max_key=16)
    long = ("bang", "!" * 13)  # 4 + 13 characters
    assert memo.get(long) == 13 and memo.get(long) == 13
    assert calls == [long, long] and long not in memo.young
    assert memo.get(("bang", "!!!")) == 3 and ("bang", "!!!") in memo.young
