"""The classifier's speed-ups give the same answers as the plain code they replace (issue 17).

Each test runs a fast path and the reference (the code before it, kept here) over the real English and
French dev tweets of ../shared/data/sentiment (skipped when absent) plus texts made to hit the edge
cases (retweet prefixes, ``via @bob``, URLs, titles), and requires equal outputs.
"""

from __future__ import annotations

import csv
import random
import re
from collections import Counter
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest

from services.classifier.logic import Classification, Classifier
from services.classifier.surges import mention_terms
from tests.helpers.shared_data import requires_shared_data, shared_data
from veille.config import parse_config
from veille.language import detect_language
from veille.models import MentionIngested, Sentiment
from veille.query import Document
from veille.query.document import TITLE_TEXT_GAP, PreparedDocument, Scope
from veille.stories import (
    CONTAINMENT_THRESHOLD,
    INDEXED_HASHES,
    JACCARD_THRESHOLD,
    MAX_CANDIDATES,
    MAX_WORDS,
    MIN_CONTAINED_SHINGLES,
    REFRESH_THRESHOLD,
    Sketch,
    StoryIndex,
    _compare,
    sketch,
    story_text,
)
from veille.text import normalise_for_match

pytestmark = requires_shared_data("sentiment", "en_tweets_dev.csv")

T0 = datetime(2026, 3, 2, tzinfo=UTC)
EDGE_CASES = [
    "RT @bob: Acme is down again https://t.co/xyz",
    "rt @bob.smith: mt @alice: Acme panne générale",
    "Acme recall announced today via @reuters",
    "Acme recall announced today by @afp_fr  ",
    "Read www.example.com/acme and HTTPS://EXAMPLE.COM/x about Acme",
    "email me at bob@example.com about Acme",
    "",
    "@@@",
    "L'entreprise a DÉÇU ses clients ! Acme #fail",
]


def tweets() -> list[str]:
    out = []
    for name in ("en_tweets_dev.csv", "fr_tweets_dev.csv"):
        with shared_data("sentiment", name).open(encoding="utf-8", newline="") as handle:
            out.extend(row["text"] for row in csv.DictReader(handle) if (row.get("text") or "").strip())
    return out + EDGE_CASES


def texts_with_repeats() -> list[str]:
    """The tweets, a quarter of them repeated later (syndicated copies), in a fixed shuffled order."""
    rng = random.Random(7)
    base = tweets()
    out = list(base)
    out += [rng.choice(base) for _ in range(len(base) // 4)]
    rng.shuffle(out)
    return out


_RT_RE = re.compile(r"^\s*(?:(?:RT|MT)\s+@[\w.\-]+\s*:?\s*)+", re.IGNORECASE)
_VIA_RE = re.compile(r"\s+(?:via|by)\s+@[\w.\-]+\s*$", re.IGNORECASE)
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def reference_story_text(text: str) -> list[str]:
    """``story_text`` before it skipped the two ``@`` patterns on texts without an ``@``."""
    text = text[: MAX_WORDS * 30]
    text = _URL_RE.sub(" ", _VIA_RE.sub("", _RT_RE.sub("", text)))
    return normalise_for_match(text)[:MAX_WORDS]


class ReferenceStories(StoryIndex):
    """A story index that sketches every text afresh (no table of recent sketches) and ranks its
    candidates with a key function on (count, id) pairs, as before."""

    def _sketch(self, text: str) -> Sketch:
        return sketch(reference_story_text(text))

    def _nearest(self, found: Sketch) -> tuple[int, float] | None:
        hits: list[int] = []
        for ids in map(self._postings.get, found.hashes[:INDEXED_HASHES]):
            if ids:
                hits += ids
        if not hits:
            return None
        ranked = sorted(Counter(hits).items(), key=lambda item: (-item[1], item[0]))[:MAX_CANDIDATES]
        horizon = self._now - self.ttl
        best: tuple[int, float, float] | None = None
        for entry_id, _ in ranked:
            entry = self._entries[entry_id]
            if entry.last_seen < horizon:
                continue
            jaccard, containment = _compare(found.hashes, set(found.hashes), found.size, entry.hashes, entry.size)
            contained = min(found.size, entry.size) >= MIN_CONTAINED_SHINGLES and containment >= CONTAINMENT_THRESHOLD
            if jaccard < JACCARD_THRESHOLD and not contained:
                continue
            score = max(jaccard, containment) if contained else jaccard
            if jaccard >= REFRESH_THRESHOLD:
                return entry_id, jaccard
            if best is None or score > best[2]:
                best = (entry_id, jaccard, score)
        return None if best is None else (best[0], best[1])


def test_story_words_are_those_of_the_plain_regexes() -> None:
    """Texts with and without ``@``, URLs and retweet prefixes give the same story words."""
    for text in tweets():
        assert story_text(text) == reference_story_text(text), text


def test_story_ids_are_those_of_fresh_sketches() -> None:
    """Remembering the sketches of recent texts gives every mention the story id fresh sketches give."""
    texts = texts_with_repeats()
    fast, reference = StoryIndex(), ReferenceStories()
    for i, text in enumerate(texts):
        ts = T0 + timedelta(seconds=i)
        assert fast.assign(f"m{i}", text, ts) == reference.assign(f"m{i}", text, ts), text
    assert fast.stats() == reference.stats()
    assert [(k, e.story_id, e.last_seen, e.size, list(e.hashes)) for k, e in fast._entries.items()] == [
        (k, e.story_id, e.last_seen, e.size, list(e.hashes)) for k, e in reference._entries.items()
    ]


def test_the_sketch_table_stays_bounded() -> None:
    """However many distinct texts go by, at most SKETCHES_KEPT sketches are remembered, none over the size cap."""
    from veille.stories import SKETCH_KEY_CHARS, SKETCHES_KEPT

    index = StoryIndex()
    for i in range(SKETCHES_KEPT + 300):
        index.assign(f"m{i}", f"acme story number {i} with some words", T0 + timedelta(seconds=i))
    index.assign("long", "word " * SKETCH_KEY_CHARS, T0 + timedelta(hours=1))
    assert len(index._sketches) == SKETCHES_KEPT
    assert all(len(text) <= SKETCH_KEY_CHARS for text in index._sketches)


def reference_positions(doc: Document) -> dict[str, list[int]]:
    """``PreparedDocument.positions("default")`` before it stopped using ``setdefault``."""
    out: dict[str, list[int]] = {}
    title = normalise_for_match(doc.title) if doc.title else []
    for i, word in enumerate(title):
        out.setdefault(word, []).append(i)
    offset = len(title) + TITLE_TEXT_GAP if title else 0
    for i, word in enumerate(normalise_for_match(doc.text) if doc.text else [], offset):
        out.setdefault(word, []).append(i)
    return out


def test_document_positions_are_unchanged() -> None:
    """Word positions (title, then text after the gap) are the same, with and without a title."""
    texts = tweets()
    for i, text in enumerate(texts):
        title = texts[i - 1] if i % 3 == 0 else None
        doc = Document(text=text, title=title)
        assert PreparedDocument(doc).positions("default") == reference_positions(doc)


CONFIG = parse_config(
    "version: 1\nwatches:\n"
    "  - name: acme\n    query: 'acme OR \"acme corp\"'\n"
    "  - name: love\n    query: 'love OR amour'\n"
)


@pytest.mark.parametrize("title", [None, "Acme news"])
def test_classification_carries_the_terms_its_buckets_count(title: str | None) -> None:
    """A matching mention's terms are ``mention_terms`` of its body; a mention matching nothing has none."""
    classifier = Classifier(CONFIG, lambda text, lang: ("neutral", 0.0), detect_language, terms=mention_terms)
    matched = 0
    for i, text in enumerate(tweets()):
        found = classifier.classify(MentionIngested(id=f"m{i}", source="rss", text=text, title=title))
        if found.mention.watches:
            matched += 1
            assert found.terms == mention_terms(found.body)
        else:
            assert found.terms == []
    assert matched > 20


LANGUAGE_EDGE_CASES = [
    "Voir http://x.fr/a et www.y.com #tag @bob https",
    "hello WWW.X.COM Http://a.b httpx whttp",
    "email a@b.c # ## @",
    "l'été d'un ÉTÉ À l’école qu’il",
    "Ça menacée n'est pas l'ho",
]


def test_language_fast_path_pieces_are_those_of_the_plain_regexes() -> None:
    """The noise pattern with its lookahead, the ASCII word pattern and the marker count change no answer."""
    from veille import language

    plain_noise = re.compile(r"https?://\S+|\bwww\.\S+|@\w+|\bhttps?\b|#")
    for text in tweets() + LANGUAGE_EDGE_CASES:
        cleaned = language._NOISE.sub(" ", text)
        assert cleaned == plain_noise.sub(" ", text), text
        lowered = cleaned.lower().replace("’", "'")
        words = language._text_words(lowered)
        assert words == language._WORD.findall(lowered), text
        assert language._marker_hits(words, lowered) == language._marker_hits(words), text


def reference_mention_terms(text: str) -> list[str]:
    """``mention_terms`` as a loop that stops at the 40th distinct term (the code before the one-pass filter)."""
    from services.classifier.surges import _STOPWORDS, MAX_TERMS_PER_MENTION

    seen: dict[str, None] = {}
    for word in normalise_for_match(text):
        if len(word) < 3 or word in _STOPWORDS or word.isdigit():
            continue
        seen.setdefault(word, None)
        if len(seen) >= MAX_TERMS_PER_MENTION:
            break
    return list(seen)


def test_mention_terms_are_those_of_the_plain_loop() -> None:
    """Short posts (one-pass filter) and long texts (the loop) give the same terms, capped at 40."""
    texts = tweets()
    long_texts = [" ".join(texts[i : i + 30]) for i in range(0, 600, 30)]
    numbered = " ".join(f"word{i} 12{i} the" for i in range(200))
    for text in [*texts, *long_texts, numbered]:
        assert mention_terms(text) == reference_mention_terms(text), text[:80]
    assert len(mention_terms(numbered)) == 40


def reference_sketch(words: list[str], size: int = 64) -> Sketch:
    """``sketch`` before it masked only the hashes it keeps: every shingle hash masked, then sorted."""
    from veille.stories import _MASK, _word_hash

    if not words:
        return Sketch((), 0)
    hashes = [_word_hash(w) for w in words]
    if len(hashes) < 3:
        shingles = {hash(tuple(hashes)) & _MASK}
    else:
        shingles = {hash(t) & _MASK for t in zip(hashes, hashes[1:], hashes[2:], strict=False)}
    return Sketch(tuple(sorted(shingles)[:size]), len(shingles))


def test_sketches_are_those_of_masking_every_shingle() -> None:
    """Tweets, long texts (more shingles than the sketch keeps) and tiny ones give the same sketches."""
    words = [story_text(text) for text in tweets()]
    rng = random.Random(3)
    long_texts = [[w for text in rng.sample(words, 12) for w in text] for _ in range(300)]
    negatives = kept_negatives = 0
    for found in [*words, *long_texts, ["acme"], ["acme", "corp"], []]:
        for size in (64, 8, 1):
            assert sketch(found, size) == reference_sketch(found, size), found[:10]
        full = reference_sketch(found, 10_000).hashes
        negatives += any(h >= 1 << 63 for h in full)  # negative before masking
        kept_negatives += any(h >= 1 << 63 for h in reference_sketch(found).hashes)
    assert negatives > 100 and kept_negatives > 100  # both branches of the split ran


class PositionsOnlyDocument(PreparedDocument):
    """A prepared document as before ``words``: every word lookup goes through the position lists."""

    __slots__ = ()

    def words(self, scope: Scope) -> Collection[str]:
        return self.positions(scope)


MATCH_QUERIES = [
    'acme OR "acme corp"',
    "love OR amour",
    'good AND NOT "not good"',
    "title:acme OR author:bob",
    "happy NEAR/3 day",
    "lov* OR haï*",
    '"the best" OR "le meilleur"',
    "(day OR jour) AND (good OR bon) NOT bad",
    "lang:en AND love",
    "source:rss AND (user OR people)",
    "url:site3 OR site:site5.example",
    "NOT the",
    "*ing AND tonight",
]


def test_watch_matching_on_word_sets_is_matching_on_positions() -> None:
    """Single words and the index's anchors looked up in word sets match exactly what position lists matched."""
    from veille.query import WatchIndex

    index = WatchIndex({f"w{i}": q for i, q in enumerate(MATCH_QUERIES)})
    texts = tweets()
    matched = 0
    for i, text in enumerate(texts):
        doc = Document(
            text=text,
            title=texts[i - 1] if i % 4 == 0 else None,
            url=f"https://site{i % 7}.example/p/{i}",
            site=f"site{i % 9}.example",
            author="bob" if i % 5 == 0 else None,
            lang="en" if i % 2 else "fr",
            source="rss" if i % 3 else "bluesky",
        )
        found = index.match(PreparedDocument(doc))
        assert found == index.match(PositionsOnlyDocument(doc)), text
        assert found == index.match_exhaustive(PositionsOnlyDocument(doc)), text
        matched += len(found)
    assert matched > len(texts)  # many watches matched, not a test of empty answers


BATCH_CONFIG = parse_config(
    "version: 1\nwatches:\n"
    "  - name: acme\n    query: 'acme OR \"acme corp\"'\n    negative_alerts: true\n"
    "  - name: love\n    query: 'love OR amour OR the'\n"
)


@pytest.mark.parametrize("batch", [1, 7, 500])
def test_classify_many_is_classify_one_after_the_other(batch: int) -> None:
    """A batch's mentions classified together (language first, one sentiment call) come out as one by one.

    The real sentiment model, the dev tweets with a quarter repeated (syndicated copies, also within
    one batch), titles on some, a declared language on some: the same mentions, stories, alerts and
    terms, and the batch function called at most once per batch, repeats left out.
    """
    from veille.sentiment import make_backend

    backend = make_backend()
    calls: list[int] = []

    def one(text: str, lang: str | None) -> tuple[Sentiment, float]:
        found = backend.analyze(text, lang)
        return found.label, found.score

    def many(texts: list[str], langs: list[str | None]) -> list[tuple[Sentiment, float]]:
        calls.append(len(texts))
        return [(found.label, found.score) for found in backend.analyze_many(texts, langs)]

    plain = Classifier(BATCH_CONFIG, one, detect_language, terms=mention_terms, cache_size=300)
    batched = Classifier(BATCH_CONFIG, one, detect_language, terms=mention_terms, cache_size=300, sentiment_many=many)
    mentions = [
        MentionIngested(
            id=f"m{i}",
            source="rss",
            text=text,
            title="Acme news" if i % 5 == 0 else None,
            lang="fr-FR" if i % 7 == 0 else None,
            ingested_at=T0 + timedelta(seconds=i),
        )
        for i, text in enumerate(texts_with_repeats())
    ]

    def view(found: Classification) -> tuple[object, ...]:
        return (
            found.mention.model_dump(exclude={"classified_at"}),
            [alert.model_dump(exclude={"raised_at"}) for alert in found.alerts],
            found.body,
            found.terms,
        )

    expected = [view(plain.classify(m)) for m in mentions]
    got = [
        view(found) for k in range(0, len(mentions), batch) for found in batched.classify_many(mentions[k : k + batch])
    ]
    assert got == expected
    assert 0 < len(calls) <= -(-len(mentions) // batch)  # at most one call a batch, none when all were known
    assert sum(calls) < len(mentions)  # the repeats were not scored again
    assert any(alerts for _, alerts, _, _ in expected)


def test_top_terms_are_those_of_nsmallest() -> None:
    """A bucket's kept terms and sources (which, in which order) are those ``heapq.nsmallest`` kept."""
    import heapq

    from services.classifier.surges import _top

    def reference(counts: dict[str, int], k: int) -> dict[str, int]:
        if len(counts) <= k:
            return counts
        return dict(heapq.nsmallest(k, counts.items(), key=lambda kv: (-kv[1], kv[0])))

    rng = random.Random(3)
    words = [w for text in tweets()[:400] for w in mention_terms(text)]
    for size in (0, 1, 5, 39, 40, 41, 80, 320, 2000):
        for spread in (1, 3, 50):
            counts: dict[str, int] = {}
            for word in rng.sample(words, min(size, len(words))):
                counts[word] = rng.randint(1, spread)
            for k in (1, 4, 20, 40):
                got = _top(dict(counts), k)
                assert list(got.items()) == list(reference(dict(counts), k).items())
