"""Near-duplicate stories: one wire story syndicated to 200 sites, or one post quoted 500 times.

Every mention is assigned a *story id*. Mentions whose normalised text is nearly the same get
the same id, so alerts can count stories as well as mentions.

How it works (bottom-k MinHash, an LSH-style index, bounded memory):

1. The text is normalised: retweet/quote prefixes (``RT @bob:``), trailing ``via @bob`` and URLs
   are removed, then :func:`veille.text.normalise_for_match` folds case and accents and splits
   words; only the first :data:`MAX_WORDS` words are used (syndicated copies keep the lead).
2. The text becomes the set of its word 3-grams ("shingles"), each hashed to 64 bits with a
   stable hash (words with BLAKE2b, shingles with CPython's tuple hash of those integers, which
   unlike the hash of a string is not salted per process), and is summarised by its ``k``
   smallest hashes: a bottom-k MinHash sketch. Two sketches estimate the Jaccard similarity of the two
   shingle sets and how much of the smaller text the larger one contains.
3. A new mention joins the most similar live story when the texts are near duplicates
   (Jaccard ≥ :data:`JACCARD_THRESHOLD`, or the smaller text, of at least
   :data:`MIN_CONTAINED_SHINGLES` shingles, is ≥ :data:`CONTAINMENT_THRESHOLD` contained in the
   larger one: a truncated copy, a quote with a comment). Otherwise it starts a new story whose
   id is derived from its mention id.
4. Candidates are found through an inverted index of the few smallest hashes of each sketch, so
   a mention is compared with a handful of stories, not all of them. A hash shared by very many
   texts (a common phrase) only remembers its most recent sketches; near duplicates share many
   hashes, so they still find each other.

Memory is bounded: the index keeps at most ``max_entries`` sketches and forgets those not seen
for ``ttl`` (in the mentions' own time, so a replay behaves like the original run). A variant
that is almost identical to a known one refreshes it instead of adding a sketch.

Everything is deterministic: the same sequence of ``assign`` calls gives the same ids in any
process, which is what lets replicas replaying the same stream agree.

The sketch's 3-gram hashing and bottom-k, the ranking of candidates and the comparison of two sketches
run in C when the classifier's compiled module is installed (``story_sketch``, ``story_ranked`` and
``story_compare`` in ``veille/sentiment/_speedups.c``, loaded by :mod:`veille.sentiment.speedups`): the
same results, checked against this module's own code when it is imported, so a replica with the module
and one without give the same story ids. About a quarter of :meth:`StoryIndex.assign`'s time on real
tweets (see docs/benchmarks.md, "Classifier alone").
"""

from __future__ import annotations

import hashlib
import re
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Final

from veille.sentiment import speedups
from veille.text import normalise_for_match

__all__ = [
    "CONTAINMENT_THRESHOLD",
    "JACCARD_THRESHOLD",
    "MAX_WORDS",
    "MIN_CONTAINED_SHINGLES",
    "Sketch",
    "StoryIndex",
    "StoryStats",
    "compiled",
    "new_story_id",
    "sketch",
    "story_text",
]

SHINGLE_WORDS: Final = 3
"""Words per shingle."""
SKETCH_SIZE: Final = 64
"""Hashes kept per text (the k of bottom-k)."""
INDEXED_HASHES: Final = 12
"""Smallest hashes of each sketch put in the inverted index to find candidates."""
MAX_WORDS: Final = 400
"""Only the first words of a text are used."""
JACCARD_THRESHOLD: Final = 0.5
"""Estimated Jaccard similarity of shingle sets above which two texts are one story."""
CONTAINMENT_THRESHOLD: Final = 0.8
"""Estimated share of the smaller text found in the larger one above which they are one story."""
MIN_CONTAINED_SHINGLES: Final = 8
"""Containment only counts when the smaller text has at least this many shingles (~10 words)."""
REFRESH_THRESHOLD: Final = 0.9
"""A mention with this Jaccard similarity to a known sketch refreshes it instead of adding its own."""
MAX_CANDIDATES: Final = 16
"""At most this many candidate sketches (those sharing the most hashes) are compared."""
MAX_POSTINGS: Final = 32
"""A hash shared by many texts (a common phrase) keeps only its most recent sketches in the index."""

SKETCHES_KEPT: Final = 1024
"""Sketches of recent texts remembered, so a syndicated copy is not hashed again."""
SKETCH_KEY_CHARS: Final = 4000
"""Only texts up to this length are remembered (bounds the table to a few MB)."""

_MASK: Final = (1 << 64) - 1
_RT_RE = re.compile(r"^\s*(?:(?:RT|MT)\s+@[\w.\-]+\s*:?\s*)+", re.IGNORECASE)
_VIA_RE = re.compile(r"\s+(?:via|by)\s+@[\w.\-]+\s*$", re.IGNORECASE)
_URL_RE = re.compile(r"(?=[hw])(?:https?://|www\.)\S+", re.IGNORECASE)  # lookahead: fewer tries per position


def story_text(text: str) -> list[str]:
    """Return the words that identify a story in ``text``.

    Retweet/quote prefixes (``RT @bob:``), a trailing ``via @bob`` and URLs are removed; the rest
    is folded and split into words by :func:`veille.text.normalise_for_match`; at most
    :data:`MAX_WORDS` words are kept.
    """
    text = text[: MAX_WORDS * 30]
    if "@" in text:  # both a retweet prefix and a trailing "via @bob" name someone
        text = _VIA_RE.sub("", _RT_RE.sub("", text))
    text = _URL_RE.sub(" ", text)
    return normalise_for_match(text)[:MAX_WORDS]


_word_hashes: dict[str, int] = {}


def _word_hash(word: str) -> int:
    found = _word_hashes.get(word)
    if found is None:
        if len(_word_hashes) >= 200_000:
            _word_hashes.clear()
        found = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        _word_hashes[word] = found
    return found


@dataclass(frozen=True, slots=True)
class Sketch:
    """A bottom-k MinHash sketch: the smallest shingle hashes of a text, ascending.

    ``size`` is the number of distinct shingles; when it is at most the sketch size, ``hashes``
    holds all of them (the sketch is exact).
    """

    hashes: tuple[int, ...]
    size: int

    @property
    def complete(self) -> bool:
        """Whether the sketch holds every shingle hash of the text."""
        return self.size <= len(self.hashes)

    def compare(self, other: Sketch) -> tuple[float, float]:
        """Estimate ``(jaccard, containment of the smaller text in the larger)`` between two texts.

        Both are estimated on the hashes below the smaller of the two sketch maxima, where both
        sketches are exact (see Broder, "On the resemblance and containment of documents").
        """
        return _compare(self.hashes, set(self.hashes), self.size, other.hashes, other.size)


def _compare(
    mine: Sequence[int], mine_set: set[int], mine_size: int, theirs: Sequence[int], theirs_size: int
) -> tuple[float, float]:
    """:meth:`Sketch.compare` on sorted hash sequences, with ``mine`` also given as a set.

    Every hash the two sketches share is below both their maxima, so the shared count is the size
    of the whole intersection; only the two sides' counts need cutting at the lower maximum.
    """
    if not mine or not theirs:
        return 0.0, 0.0
    limit = min(
        mine[-1] if mine_size > len(mine) else _MASK,
        theirs[-1] if theirs_size > len(theirs) else _MASK,
    )
    shared = len(mine_set.intersection(theirs))
    n_mine = len(mine) if limit >= mine[-1] else bisect_right(mine, limit)
    n_theirs = len(theirs) if limit >= theirs[-1] else bisect_right(theirs, limit)
    union = n_mine + n_theirs - shared
    jaccard = shared / union if union else 0.0
    smaller = n_mine if mine_size <= theirs_size else n_theirs
    containment = shared / smaller if smaller else 0.0
    return jaccard, containment


def sketch(words: list[str], size: int = SKETCH_SIZE) -> Sketch:
    """Return the bottom-``size`` sketch of the word 3-gram shingles of ``words``.

    Fewer than three words make a single shingle of them all; no words, an empty sketch.
    """
    if not words:
        return Sketch((), 0)
    hashes = list(map(_word_hashes.get, words))
    if None in hashes:
        hashes = [h if h is not None else _word_hash(w) for h, w in zip(hashes, words, strict=True)]
    if len(hashes) < SHINGLE_WORDS:
        return Sketch((hash(tuple(hashes)) & _MASK,), 1)
    if _compiled is not None:
        kept, distinct = _compiled.story_sketch(hashes, size)
        return Sketch(kept, distinct)
    return _sketch_of_hashes(hashes, size)  # type: ignore[arg-type]  # every None was replaced


def _sketch_of_hashes(hashes: list[int], size: int) -> Sketch:
    """:func:`sketch` of three words or more, from their hashes, in Python."""
    # CPython's hash of a tuple of ints is not salted (only str and bytes hashes are) and mixes
    # its items well (xxHash-style): stable across processes, and much faster than BLAKE2b.
    shingles = sorted(set(map(hash, zip(hashes, hashes[1:], hashes[2:], strict=False))))
    # The hashes are signed; the sketch holds them as unsigned 64-bit values (``h & _MASK``), in
    # which order every negative hash (h + 2**64) comes after every non-negative one. So the
    # smallest unsigned values are the non-negative hashes, ascending, then the negative ones,
    # ascending: only those kept are converted (masking each shingle cost more than the hashing).
    start = bisect_left(shingles, 0)
    smallest = shingles[start : start + size]
    if len(smallest) < size and start:
        smallest += [h & _MASK for h in shingles[: min(start, size - len(smallest))]]
    return Sketch(tuple(smallest), len(shingles))


def _ranked(postings: dict[int, list[int]], hashes: tuple[int, ...], most: int) -> list[int]:
    """The entries listed under ``hashes`` in ``postings``: those listed most first, the oldest (lowest
    id) first among equals, at most ``most`` of them."""
    hits: list[int] = []
    for ids in map(postings.get, hashes):
        if ids:
            hits += ids
    counts: dict[int, int] = {}  # a dict beats Counter's set-up on the ~16 hits of a tweet
    seen = counts.get
    for entry_id in hits:
        counts[entry_id] = seen(entry_id, 0) + 1
    # Sorted by id, then a stable sort on the count alone (``reverse`` keeps equal counts in id order).
    ranked = sorted(counts)
    ranked.sort(key=counts.__getitem__, reverse=True)
    del ranked[most:]
    return ranked


def _accept_compiled() -> ModuleType | None:
    """The compiled sketch, ranking and comparison (``story_sketch``, ``story_ranked``, ``story_compare`` in
    :mod:`veille.sentiment.speedups`' module) if they give this module's own results, else ``None``.

    ``story_sketch`` hashes each 3-gram as CPython hashes a tuple of three ints, an algorithm a later
    Python could change: it is checked here, at import, against :func:`_sketch_of_hashes` on texts with
    repeated 3-grams and at several sketch sizes, against :func:`_compare` on their pairs and against
    :func:`_ranked` on postings with ties. The story
    ids are then the same with or without the compiled module, in every process.
    """
    module = speedups.MODULE
    if module is None or not all(hasattr(module, name) for name in ("story_sketch", "story_compare", "story_ranked")):
        return None
    words = [int.from_bytes(hashlib.blake2b(b"%d" % (i % 97), digest_size=8).digest(), "little") for i in range(300)]
    texts = [words[:n] for n in (3, 4, 9, 40, 70, 300)] + [words[5:80] + words[:30], [words[0]] * 5 + words[1:4] * 3]
    sketches = []
    for text in texts:
        for size in (1, 8, SKETCH_SIZE, 500):
            mine = _sketch_of_hashes(text, size)
            kept, distinct = module.story_sketch(text, size)
            if (kept, distinct) != (mine.hashes, mine.size):
                return None
            sketches.append(mine)
    for one in sketches[::3]:
        for other in sketches[1::5]:
            expected = _compare(one.hashes, set(one.hashes), one.size, other.hashes, other.size)
            if module.story_compare(array("Q", one.hashes), one.size, array("Q", other.hashes), other.size) != expected:
                return None
    keys = sketches[-1].hashes
    postings = {h: [i % 7, i % 3, 40 - i % 11, i] for i, h in enumerate(keys)}  # many ties in count
    for most in (0, 2, MAX_CANDIDATES):
        for start in range(0, len(keys), 5):
            asked = keys[start : start + INDEXED_HASHES]
            if module.story_ranked(postings, asked, most) != _ranked(postings, asked, most):
                return None
    return module


_compiled = _accept_compiled()
"""The compiled sketch, ranking and comparison, or ``None``: the Python code then runs (same story ids,
slower)."""


def compiled() -> bool:
    """Whether the stories run the compiled loops (for the classifier's start-up log line)."""
    return _compiled is not None


def new_story_id(mention_id: str) -> str:
    """Return the id of a story started by a mention: stable, short, derived from the mention id."""
    return "story:" + hashlib.blake2b(mention_id.encode(), digest_size=10).hexdigest()


def _seconds(ts: datetime | float) -> float:
    return ts.timestamp() if isinstance(ts, datetime) else float(ts)


class _Entry:
    __slots__ = ("hashes", "last_seen", "size", "story_id")

    def __init__(self, story_id: str, found: Sketch, last_seen: float) -> None:
        self.story_id = story_id
        self.hashes = array("Q", found.hashes)
        self.size = found.size
        self.last_seen = last_seen


@dataclass(frozen=True, slots=True)
class StoryStats:
    """Counters of a :class:`StoryIndex`."""

    entries: int
    assigned: int
    new_stories: int
    evicted: int


class StoryIndex:
    """Assigns mentions to near-duplicate stories, remembering recent stories only.

    ``max_entries`` bounds the number of sketches kept (each ~2 KB); ``ttl`` forgets sketches not
    seen for that long, measured in the timestamps passed to :meth:`assign` (a ``datetime`` or
    seconds since the epoch), not the wall clock. Not thread-safe: use one per task.
    """

    def __init__(self, *, max_entries: int = 10_000, ttl: timedelta = timedelta(hours=48)) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl = ttl.total_seconds()
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # least recently seen first
        self._postings: dict[int, list[int]] = {}
        self._sketches: dict[str, Sketch] = {}  # oldest first
        self._next = 0
        self._now = float("-inf")
        self._assigned = 0
        self._new = 0
        self._evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> StoryStats:
        """Return how many sketches are kept and how many mentions and stories were seen."""
        return StoryStats(len(self._entries), self._assigned, self._new, self._evicted)

    def assign(self, mention_id: str, text: str, ts: datetime | float) -> str:
        """Return the story id of a mention, joining the nearest live story or starting a new one.

        A new story's id is :func:`new_story_id` of ``mention_id``. A mention with no words is a
        story of its own. Assigning the same mention again gives the same id while its story is
        remembered.
        """
        self._assigned += 1
        now = _seconds(ts)
        self._now = max(self._now, now)
        self._expire()
        found = self._sketch(text)
        if not found.hashes:
            self._new += 1
            return new_story_id(mention_id)
        best = self._nearest(found)
        if best is not None:
            entry_id, jaccard = best
            entry = self._entries[entry_id]
            if jaccard >= REFRESH_THRESHOLD:
                entry.last_seen = max(entry.last_seen, now)
                self._entries.move_to_end(entry_id)
                return entry.story_id
            story_id = entry.story_id
        else:
            story_id = new_story_id(mention_id)
            self._new += 1
        self._add(_Entry(story_id, found, now))
        return story_id

    def _sketch(self, text: str) -> Sketch:
        """``sketch(story_text(text))``, remembered for the last :data:`SKETCHES_KEPT` texts.

        A sketch is a pure function of the text, and syndicated copies repeat it word for word; only
        texts up to :data:`SKETCH_KEY_CHARS` characters are remembered, so the table stays small.
        """
        if len(text) > SKETCH_KEY_CHARS:
            return sketch(story_text(text))
        sketches = self._sketches
        found = sketches.get(text)
        if found is None:
            found = sketches[text] = sketch(story_text(text))
            if len(sketches) > SKETCHES_KEPT:
                del sketches[next(iter(sketches))]
        return found

    def _nearest(self, found: Sketch) -> tuple[int, float] | None:
        """Return the most similar live near-duplicate entry and its Jaccard similarity, if any."""
        fast = _compiled
        if fast is not None:
            ranked = fast.story_ranked(self._postings, found.hashes[:INDEXED_HASHES], MAX_CANDIDATES)
        else:
            ranked = _ranked(self._postings, found.hashes[:INDEXED_HASHES], MAX_CANDIDATES)
        if not ranked:
            return None
        horizon = self._now - self.ttl
        found_size = found.size
        if fast is not None:
            compare = fast.story_compare
            found_array = array("Q", found.hashes)
        else:
            found_hashes, found_set = found.hashes, set(found.hashes)
        best: tuple[int, float, float] | None = None  # entry, jaccard, score
        for entry_id in ranked:
            entry = self._entries[entry_id]
            if entry.last_seen < horizon:
                continue
            if fast is not None:
                jaccard, containment = compare(found_array, found_size, entry.hashes, entry.size)
            else:
                jaccard, containment = _compare(found_hashes, found_set, found_size, entry.hashes, entry.size)
            contained = min(found_size, entry.size) >= MIN_CONTAINED_SHINGLES and containment >= CONTAINMENT_THRESHOLD
            if jaccard < JACCARD_THRESHOLD and not contained:
                continue
            score = max(jaccard, containment) if contained else jaccard
            if jaccard >= REFRESH_THRESHOLD:
                return entry_id, jaccard  # a near-identical copy: no need to look further
            if best is None or score > best[2]:
                best = (entry_id, jaccard, score)
        return None if best is None else (best[0], best[1])

    def _add(self, entry: _Entry) -> None:
        entry_id = self._next
        self._next += 1
        self._entries[entry_id] = entry
        for h in entry.hashes[:INDEXED_HASHES]:
            ids = self._postings.setdefault(h, [])
            if len(ids) >= MAX_POSTINGS:
                del ids[0]
            ids.append(entry_id)
        while len(self._entries) > self.max_entries:
            self._evict_oldest()

    def _expire(self) -> None:
        horizon = self._now - self.ttl
        while self._entries:
            entry = next(iter(self._entries.values()))
            if entry.last_seen >= horizon:
                break
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        entry_id, entry = self._entries.popitem(last=False)
        self._evicted += 1
        for h in entry.hashes[:INDEXED_HASHES]:
            ids = self._postings.get(h)
            if ids is not None and entry_id in ids:
                ids.remove(entry_id)
                if not ids:
                    del self._postings[h]
