"""The near-duplicate stories' compiled loops (``story_sketch``, ``story_compare``, ``story_ranked`` in
``_speedups.c``): the same sketches, overlaps, candidates and story ids as :mod:`veille.stories`' own
Python, refused when they differ, and safe on bad input."""

from __future__ import annotations

import csv
import random
from array import array
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest

from tests.helpers.shared_data import requires_shared_data, shared_data
from veille import stories
from veille.sentiment import speedups
from veille.stories import MAX_CANDIDATES, SKETCH_SIZE, StoryIndex, _compare, _ranked, _sketch_of_hashes

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def compiled() -> Iterator[ModuleType]:
    if stories._compiled is None:
        pytest.skip(f"the compiled module is not in use here: {speedups.STATUS}")
    yield stories._compiled


@pytest.fixture
def pure_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stories, "_compiled", None)


def _hashes(rng: random.Random, n: int, vocabulary: int) -> list[int]:
    """``n`` word hashes drawn from a small vocabulary, so 3-grams repeat (and hashes of both signs occur)."""
    words = [rng.getrandbits(64) for _ in range(vocabulary)]
    return [rng.choice(words) for _ in range(n)]


def test_an_install_with_a_compiler_sketches_stories_in_c() -> None:
    """Where the sentiment scorer's module is compiled, stories use its loops too (checked at import)."""
    if speedups.MODULE is None:
        pytest.skip(f"the compiled module is not in use here: {speedups.STATUS}")
    assert stories._compiled is speedups.MODULE


def test_sketches_are_the_python_ones(compiled: ModuleType) -> None:
    """Random texts of 3 to 600 words, many with repeated 3-grams, at sketch sizes 0 to 1,000."""
    rng = random.Random(7)
    for _ in range(3_000):
        words = _hashes(rng, rng.randint(3, 600), rng.choice((2, 5, 50, 10_000)))
        size = rng.choice((0, 1, 12, SKETCH_SIZE, 1_000))
        mine = _sketch_of_hashes(words, size)
        assert compiled.story_sketch(words, size) == (mine.hashes, mine.size)


def test_a_3gram_whose_tuple_hash_would_be_minus_one_is_hashed_as_python_hashes_it(compiled: ModuleType) -> None:
    """CPython never returns -1 as a hash: a tuple whose hash would be -1 hashes to 1546275796."""
    words = [7, 7, 50486940502069109]
    assert hash(tuple(words)) == 1546275796
    assert compiled.story_sketch(words, SKETCH_SIZE) == ((1546275796,), 1)


def test_overlaps_are_the_python_ones(compiled: ModuleType) -> None:
    """Jaccard and containment of complete and partial sketches, sharing nothing, some or all."""
    rng = random.Random(11)
    base = _hashes(rng, 400, 10_000)
    sketches = []
    for _ in range(300):
        start, length = rng.randint(0, 390), rng.randint(3, 400)
        text = base[start : start + length] + _hashes(rng, rng.randint(0, 30), 10_000)
        sketches.append(_sketch_of_hashes(text, rng.choice((4, SKETCH_SIZE))))
    sketches.append(stories.Sketch((), 0))
    for one in sketches:
        for other in rng.sample(sketches, 30):
            expected = _compare(one.hashes, set(one.hashes), one.size, other.hashes, other.size)
            found = compiled.story_compare(array("Q", one.hashes), one.size, array("Q", other.hashes), other.size)
            assert found == expected


def test_candidates_are_ranked_as_in_python(compiled: ModuleType) -> None:
    """Most shared hashes first, the oldest entry first among equals, at most ``most``."""
    rng = random.Random(3)
    keys = [rng.getrandbits(64) for _ in range(60)]
    for _ in range(2_000):
        ids = [rng.randrange(2**62) for _ in range(rng.choice((3, 40)))]  # few ids: many ties
        postings = {key: [rng.choice(ids) for _ in range(rng.randint(0, 32))] for key in rng.sample(keys, 30)}
        asked = tuple(rng.sample(keys, 12))
        most = rng.choice((0, 1, 5, MAX_CANDIDATES, 100))
        assert compiled.story_ranked(postings, asked, most) == _ranked(postings, asked, most)


def _story_ids(texts: list[str]) -> tuple[list[str], object]:
    index = StoryIndex(max_entries=500)
    ids = [index.assign(f"m{i}", text, T0 + timedelta(seconds=i)) for i, text in enumerate(texts)]
    return ids, index.stats()


def _syndicated(texts: list[str], seed: int) -> list[str]:
    """The texts, with a third of them repeated later: verbatim, truncated, or with a word changed."""
    rng = random.Random(seed)
    out = list(texts)
    for _ in range(len(texts) // 3):
        words = rng.choice(texts).split()
        if rng.random() < 0.5:
            words = words[: max(3, len(words) * 3 // 4)]
        elif words:
            words[rng.randrange(len(words))] = "changed"
        out.insert(rng.randrange(len(out) + 1), " ".join(words))
    return out


def test_story_ids_are_the_same_with_or_without_the_compiled_loops(
    compiled: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas must agree on story ids whatever their build: the same ids, and the same new stories and
    evictions (a small index evicts), for syndicated, truncated and edited copies."""
    rng = random.Random(5)
    vocabulary = [f"w{i}" for i in range(300)]
    texts = _syndicated([" ".join(rng.choices(vocabulary, k=rng.randint(1, 60))) for _ in range(1_500)], 5)
    with_c = _story_ids(texts)
    monkeypatch.setattr(stories, "_compiled", None)
    assert _story_ids(texts) == with_c
    assert len(set(with_c[0])) < len(texts)  # some copies did join a story


@requires_shared_data("sentiment", "en_tweets_dev.csv")
def test_story_ids_agree_on_real_tweets(compiled: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = []
    for name in ("en_tweets_dev.csv", "fr_tweets_dev.csv"):
        with shared_data("sentiment", name).open(encoding="utf-8", newline="") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)][:3_000]
    texts = _syndicated(texts, 9)
    with_c = _story_ids(texts)
    monkeypatch.setattr(stories, "_compiled", None)
    assert _story_ids(texts) == with_c


def test_bad_input_raises_instead_of_crashing(compiled: ModuleType) -> None:
    with pytest.raises(TypeError, match="ints"):
        compiled.story_sketch([1, 2, "3"], 4)
    with pytest.raises(TypeError):
        compiled.story_sketch((1, 2, 3), 4)
    with pytest.raises(ValueError, match="three words"):
        compiled.story_sketch([1, 2], 4)
    with pytest.raises(ValueError, match="negative"):
        compiled.story_sketch([1, 2, 3], -1)
    with pytest.raises(TypeError, match="'Q'"):
        compiled.story_compare(array("i", [1, 2]), 2, array("Q", [1]), 1)
    with pytest.raises(TypeError):
        compiled.story_compare([1, 2], 2, array("Q", [1]), 1)
    with pytest.raises(TypeError, match="ints"):
        compiled.story_ranked({1: [2]}, ("x",), 4)
    with pytest.raises(TypeError, match="list"):
        compiled.story_ranked({1: (2,)}, (1,), 4)
    with pytest.raises(ValueError, match="negative"):
        compiled.story_ranked({1: [2]}, (1,), -1)
    with pytest.raises(TypeError, match="ids must be ints"):
        compiled.story_ranked({1: [2.0]}, (1,), 4)


def test_a_posting_replaced_during_a_lookup_is_not_read(compiled: ModuleType) -> None:
    """A dict key that collides with a looked-up hash runs its own ``__eq__`` during that look-up, which
    could replace (and free) a posting looked up before: the function holds what it looked up, and
    never crashes."""
    first, second = 12345, 67890
    postings: dict[object, object] = {}
    armed = swapped = False

    class Colliding:
        def __hash__(self) -> int:
            return hash(second)

        def __eq__(self, other: object) -> bool:
            nonlocal swapped
            if armed and not swapped:
                swapped = True
                postings[first] = b"x" * 64  # the list looked up first loses its last other reference
            return False

    postings[first] = [1, 2, 3]
    postings[Colliding()] = []
    postings[second] = [4]
    armed = True
    assert compiled.story_ranked(postings, (first, second), 4) == [1, 2, 3, 4]
    assert swapped


def test_a_module_giving_other_sketches_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """A module whose 3-gram hash is not this Python's tuple hash (a later CPython could change it) would
    give other story ids than replicas running the Python code: it is refused, and Python runs."""

    class Other:
        def story_sketch(self, words: list[int], size: int) -> tuple[tuple[int, ...], int]:
            found = _sketch_of_hashes(words, size)
            return tuple(h ^ 1 for h in found.hashes), found.size

        def story_compare(self, *args: object) -> tuple[float, float]:
            raise AssertionError("not reached")

        def story_ranked(self, *args: object) -> list[int]:
            raise AssertionError("not reached")

    monkeypatch.setattr(speedups, "MODULE", Other())
    assert stories._accept_compiled() is None
    monkeypatch.setattr(speedups, "MODULE", None)
    assert stories._accept_compiled() is None


def test_the_python_path_still_finds_stories(pure_python: None) -> None:
    """Without the module (no compiler, VEILLE_PURE_PYTHON=1), copies still join their story."""
    text = "Acme cancelled my order for the third time this month and support hung up on me again today"
    index = StoryIndex()
    first = index.assign("a", text, T0)
    assert index.assign("b", text.replace("today", "yesterday"), T0) == first
    assert index.assign("c", "Globex opens a new plant in Lyon with two hundred jobs announced on Monday", T0) != first
