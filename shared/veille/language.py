"""Language of a mention, detected offline, as an ISO 639-1 code.

A tag the source declares wins when it is a valid language tag (``fr-FR`` → ``fr``). Otherwise the
text is looked at in two steps:

1. A fast path counts function words that are distinctive of one language (``the``, ``les``,
   ``nicht`` ...). When one language has several and no other language has any, that is the answer:
   most ordinary English and French sentences stop here, in microseconds.
2. Everything else goes to the `lingua <https://pypi.org/project/lingua-language-detector/>`_
   detector (PyPI package ``lingua-language-detector``; its models ship inside the wheel, nothing is
   downloaded at run time), restricted to :data:`DETECTABLE_LANGUAGES` for speed and accuracy, built
   once, lazily, on first use. Lingua first runs in its low-accuracy mode (trigrams only, about a
   third of the cost); only when that answer is not clear-cut (best below
   :data:`_QUICK_CONFIDENCE`, or closer than :data:`_QUICK_MARGIN` to the second) does the full model
   decide. On the 4,163 English and French dev tweets of ``../shared/data/sentiment`` (language not
   given), the function words decide 3,784; of the 379 left, the quick model takes 358 and the full
   model 21; 99.88 % are right, against 99.81 % with the full model on all 379 (issue 17: lingua was
   ~15 % of the classifier's CPU; 45 against 68-97 µs a tweet on average here). The quick model's
   trigram tables cost about 34 MiB more memory.

Text with too few letters to judge, or that the detector cannot tell apart, gives ``None``.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from lingua import LanguageDetector

__all__ = [
    "DETECTABLE_LANGUAGES",
    "detect_language",
    "detect_languages",
    "normalise_language_tag",
    "preload",
]

DETECTABLE_LANGUAGES: tuple[str, ...] = (
    "en", "fr", "de", "es", "it", "pt", "nl", "ar", "ru", "zh", "ja",
)  # fmt: skip
"""Languages the detector chooses among (ISO 639-1). French and English are first-class; the others
are the languages most often met next to them, plus a few with their own scripts (cheap to tell)."""

MIN_LETTERS = 3
"""Fewer letters than this and we do not guess."""

_MIN_CONFIDENCE = 0.3
"""Below this confidence for the best language, the text is too ambiguous to call (``"lol"``)."""
_MIN_MARGIN = 0.05
"""... and when the two best languages are closer than this."""
_MARKER_WEIGHT = 0.15
"""Confidence added per distinctive function word found, on top of lingua's own confidence."""
_QUICK_CONFIDENCE = 0.95
"""The low-accuracy model's answer is taken when its best language scores at least this ..."""
_QUICK_MARGIN = 0.8
"""... and leads the second by at least this much (marker words included); otherwise the full model decides."""
_NOISE = re.compile(r"(?=[hw@#])(?:https?://\S+|\bwww\.\S+|@\w+|\bhttps?\b|#)")
"""URLs, handles and the ``#`` of hashtags say nothing about the language. (The lookahead on the
first letters of the alternatives changes nothing it matches; it spares ``re`` trying each
alternative at every position, about 2.5 times faster on tweets.)"""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# ISO 639-1 codes (all of them) to validate declared tags without a dependency.
_ISO_639_1 = _words(
    """aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv
    dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii
    ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk
    ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc
    sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve
    vi vo wa wo xh yi yo za zh zu"""
)
# A few three-letter codes sources use for languages that have a two-letter one.
_ISO_639_2 = {
    "eng": "en", "fre": "fr", "fra": "fr", "ger": "de", "deu": "de", "spa": "es", "ita": "it",
    "por": "pt", "dut": "nl", "nld": "nl", "ara": "ar", "rus": "ru", "chi": "zh", "zho": "zh", "jpn": "ja",
}  # fmt: skip
_TAG_SPLIT = re.compile(r"[-_.@]")

# Function words distinctive of one language among DETECTABLE_LANGUAGES (no word in two lists).
_MARKERS: dict[str, frozenset[str]] = {
    "en": _words(
        "the and is are was were you your this that with have has been will what just they their "
        "it's i'm don't can't would could should there from about which when of to for my our not "
        "all be get got going if he she his him her who how why does did out i've i'll i'd "
        "didn't doesn't isn't won't"
    ),
    "fr": _words(
        "les des est et une pour dans avec pas nous vous sont mais cette ces ils elles aux sur "
        "le du au ce je ne qui ont fait plus tout comme ses leur leurs être été très aussi ça "
        "avoir faut peut doit encore déjà où après avant chez sans entre notre votre cela ceci "
        "celui celle quand était moins toujours jamais rien contre depuis selon sous vers donc "
        "alors puis parce quoi pourquoi ici là voilà oui merci bonjour veut vont suis sommes êtes "
        "avons avez eux même autre autres tous toute toutes beaucoup trop à"
    ),
    "de": _words("der die das und ist nicht ein eine mit auf für ich sie wir sind auch"),
    "es": _words("el los las es pero muy del al hay también"),
    "it": _words("il gli che di è sono per ma anche della questo"),
    "pt": _words("os não uma com mas muito do dos"),
    "nl": _words("het een van niet zijn voor dat maar ook wij"),
}
_MARKER_LANG: dict[str, str] = {word: lang for lang, words in _MARKERS.items() for word in words}
"""Each marker word to its language (one dictionary lookup per word on the fast path)."""
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_ASCII_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
"""What :data:`_WORD` finds in lower-case ASCII text (where the only letters are a-z), faster."""
_FR_ELISION = re.compile(r"^(?:d|j|n|c|s|qu|jusqu|lorsqu|puisqu)'[^\W\d_]|^l'[éêœ]")
"""A French elided article or pronoun (``d'un``, ``qu'il``, ``c'est``, ``l'écologie``; not ``l'`` before
other letters, Italian has it too)."""
_FR_SHAPE = re.compile(r"^é[^\W\d_]{3}|ée")
"""Word shapes that are French rather than Spanish, Italian or Portuguese (``écologie``, ``menacée``)."""
_FAST_PATH_MIN_HITS = 2
_FAST_PATH_DOMINANCE = 3
"""From three marker words on, one language wins the fast path when it has at least this many times
as many as all the others together (``l'écologie c'est pas son truc`` with one Italian-looking
``non``); with two, it needs the others to have none."""

_detector: LanguageDetector | None = None
_quick_detector: LanguageDetector | None = None
_detector_lock = threading.Lock()

PATHS: Counter[str] = Counter()
"""How many texts each step decided since start: ``declared``, ``too_short``, ``fast`` (function words),
``quick`` (lingua, low accuracy) and ``full`` (lingua, full model). Read by tests and benchmarks."""


def normalise_language_tag(tag: str | None) -> str | None:
    """Return the ISO 639-1 code of a declared language tag, or ``None`` if it is not one.

    ``"fr-FR"``, ``"FR"``, ``"fr_CA"`` and ``"fra"`` all give ``"fr"``; ``"und"``, ``""`` and
    ``"xx"`` give ``None``.
    """
    if not tag:
        return None
    primary = _TAG_SPLIT.split(tag.strip().lower(), maxsplit=1)[0]
    if primary in _ISO_639_1:
        return primary
    return _ISO_639_2.get(primary)


def _get_detector() -> LanguageDetector:
    """The full lingua model (every n-gram length)."""
    if _detector is None:
        _build_detectors()
    assert _detector is not None
    return _detector


def _get_quick_detector() -> LanguageDetector:
    """Lingua in low-accuracy mode (trigrams only): tried first on what the fast path leaves."""
    if _quick_detector is None:
        _build_detectors()
    assert _quick_detector is not None
    return _quick_detector


def _build_detectors() -> None:
    global _detector, _quick_detector
    with _detector_lock:
        if _detector is None or _quick_detector is None:
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            codes = [getattr(IsoCode639_1, code.upper()) for code in DETECTABLE_LANGUAGES]
            builder = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models()
            _detector = builder.build()
            _quick_detector = (
                LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
                .with_preloaded_language_models()
                .with_low_accuracy_mode()
                .build()
            )


def preload() -> None:
    """Build the detectors now (about a second), instead of on the first text that needs them.

    A service calls this at start-up so that its first mention is not slow.
    """
    _build_detectors()


def _marker_hits(words: list[str], text: str | None = None) -> dict[str, int]:
    """Marker words of each language among ``words`` (the words of ``text``), French shapes included."""
    hits = dict.fromkeys(_MARKERS, 0)
    marker_lang = _MARKER_LANG
    for lang in map(marker_lang.get, words):
        if lang is not None:
            hits[lang] += 1
    if text is None or "'" in text or "é" in text:  # French elisions and word shapes (not marker words themselves)
        for word in words:
            if word not in marker_lang and (
                ("'" in word and _FR_ELISION.match(word)) or ("é" in word and _FR_SHAPE.search(word))
            ):
                hits["fr"] += 1
    return hits


def _text_words(lowered: str) -> list[str]:
    return _ASCII_WORD.findall(lowered) if lowered.isascii() else _WORD.findall(lowered)


def _fast_path(hits: dict[str, int]) -> str | None:
    best = max(hits, key=hits.__getitem__)
    top = hits[best]
    others = sum(hits.values()) - top
    if top >= _FAST_PATH_MIN_HITS and others == 0:
        return best
    if top > _FAST_PATH_MIN_HITS and top >= _FAST_PATH_DOMINANCE * others:
        return best
    return None


def _has_letters(text: str, count: int) -> bool:
    """Return whether ``text`` has at least ``count`` letters (stops as soon as it has)."""
    for ch in text:
        if ch.isalpha():
            count -= 1
            if count <= 0:
                return True
    return count <= 0


def detect_language(text: str, declared: str | None = None) -> str | None:
    """Return the language of ``text`` as an ISO 639-1 code, or ``None`` when it cannot be told.

    A valid ``declared`` tag (what the source says, e.g. ``"fr-FR"``) is kept, normalised to its
    two-letter code, without looking at the text. Otherwise the text is detected offline; a text
    with fewer than three letters, or one the detector finds ambiguous (``"lol"``), gives ``None``.
    """
    tag = normalise_language_tag(declared)
    if tag is not None:
        PATHS["declared"] += 1
        return tag
    cleaned = _NOISE.sub(" ", text)
    if not _has_letters(cleaned, MIN_LETTERS):
        PATHS["too_short"] += 1
        return None
    lowered = cleaned.lower().replace("’", "'")
    hits = _marker_hits(_text_words(lowered), lowered)
    fast = _fast_path(hits)
    if fast is not None:
        PATHS["fast"] += 1
        return fast
    best_lang, best, second = _ranked(_get_quick_detector(), cleaned, hits)
    if best >= _QUICK_CONFIDENCE and best - second >= _QUICK_MARGIN:
        PATHS["quick"] += 1
        return best_lang
    PATHS["full"] += 1
    best_lang, best, second = _ranked(_get_detector(), cleaned, hits)
    if best < _MIN_CONFIDENCE or best - second < _MIN_MARGIN:
        return None
    return best_lang


def _ranked(detector: LanguageDetector, cleaned: str, hits: dict[str, int]) -> tuple[str, float, float]:
    """The best language by ``detector``'s confidence plus the marker words, its score and the runner-up's."""
    scores = {
        value.language.iso_code_639_1.name.lower(): value.value
        for value in detector.compute_language_confidence_values(cleaned)
    }
    for lang, count in hits.items():
        scores[lang] = scores.get(lang, 0.0) + _MARKER_WEIGHT * count
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    best_lang, best = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    return best_lang, best, second


def detect_languages(texts: Iterable[str], declared: Iterable[str | None] | None = None) -> list[str | None]:
    """Return :func:`detect_language` for each text (with its declared tag, if given), in order."""
    texts = list(texts)
    tags = list(declared) if declared is not None else [None] * len(texts)
    if len(tags) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(tags)} declared tags")
    return [detect_language(text, tag) for text, tag in zip(texts, tags, strict=True)]
