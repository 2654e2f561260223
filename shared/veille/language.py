"""Language of a mention, detected offline, as an ISO 639-1 code.

A tag the source declares wins when it is a valid language tag (``fr-FR`` → ``fr``). Otherwise the
text is looked at in two steps:

1. A fast path counts function words that are distinctive of one language (``the``, ``les``,
   ``nicht`` ...). When one language has several and no other language has any, that is the answer:
   most ordinary English and French sentences stop here, in microseconds.
2. Everything else goes to the `lingua <https://pypi.org/project/lingua-language-detector/>`_
   detector (PyPI package ``lingua-language-detector``; its models ship inside the wheel, nothing is
   downloaded at run time), restricted to :data:`DETECTABLE_LANGUAGES` for speed and accuracy, built
   once, lazily, on first use.

Text with too few letters to judge, or that the detector cannot tell apart, gives ``None``.
"""

from __future__ import annotations

import re
import threading
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
_NOISE = re.compile(r"https?://\S+|\bwww\.\S+|@\w+|\bhttps?\b|#")
"""URLs, handles and the ``#`` of hashtags say nothing about the language."""


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
        "it's i'm don't can't would could should there from about which when"
    ),
    "fr": _words(
        "les des est et une pour dans avec pas nous vous sont mais cette ces ils elles aux sur "
        "le du au ce je ne qui ont fait plus tout comme ses leur leurs être été très aussi ça "
        "avoir faut peut doit encore déjà où après avant chez sans entre"
    ),
    "de": _words("der die das und ist nicht ein eine mit auf für ich sie wir sind auch"),
    "es": _words("el los las es pero muy del al hay también"),
    "it": _words("il gli che di è sono non per ma anche della questo"),
    "pt": _words("os não uma com mas muito do dos"),
    "nl": _words("het een van niet zijn voor dat maar ook wij"),
}
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_FR_ELISION = re.compile(r"^(?:d|j|n|c|s|qu|jusqu|lorsqu|puisqu)'[^\W\d_]")
"""A French elided article or pronoun (``d'un``, ``qu'il``, ``c'est``; not ``l'``, Italian has it too)."""
_FAST_PATH_MIN_HITS = 2

_detector: LanguageDetector | None = None
_detector_lock = threading.Lock()


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
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                from lingua import IsoCode639_1, LanguageDetectorBuilder

                codes = [getattr(IsoCode639_1, code.upper()) for code in DETECTABLE_LANGUAGES]
                _detector = (
                    LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()
                )
    return _detector


def preload() -> None:
    """Build the detector now (about a second), instead of on the first text that needs it.

    A service calls this at start-up so that its first mention is not slow.
    """
    _get_detector()


def _marker_hits(words: list[str]) -> dict[str, int]:
    hits = {lang: sum(1 for word in words if word in markers) for lang, markers in _MARKERS.items()}
    hits["fr"] += sum(1 for word in words if _FR_ELISION.match(word))
    return hits


def _fast_path(hits: dict[str, int]) -> str | None:
    best = max(hits, key=hits.__getitem__)
    if hits[best] >= _FAST_PATH_MIN_HITS and sum(hits.values()) == hits[best]:
        return best
    return None


def detect_language(text: str, declared: str | None = None) -> str | None:
    """Return the language of ``text`` as an ISO 639-1 code, or ``None`` when it cannot be told.

    A valid ``declared`` tag (what the source says, e.g. ``"fr-FR"``) is kept, normalised to its
    two-letter code, without looking at the text. Otherwise the text is detected offline; a text
    with fewer than three letters, or one the detector finds ambiguous (``"lol"``), gives ``None``.
    """
    tag = normalise_language_tag(declared)
    if tag is not None:
        return tag
    cleaned = _NOISE.sub(" ", text)
    if sum(1 for ch in cleaned if ch.isalpha()) < MIN_LETTERS:
        return None
    hits = _marker_hits(_WORD.findall(cleaned.lower().replace("’", "'")))
    fast = _fast_path(hits)
    if fast is not None:
        return fast
    scores = {
        value.language.iso_code_639_1.name.lower(): value.value
        for value in _get_detector().compute_language_confidence_values(cleaned)
    }
    for lang, count in hits.items():
        scores[lang] = scores.get(lang, 0.0) + _MARKER_WEIGHT * count
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    best_lang, best = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    if best < _MIN_CONFIDENCE or best - second < _MIN_MARGIN:
        return None
    return best_lang


def detect_languages(texts: Iterable[str], declared: Iterable[str | None] | None = None) -> list[str | None]:
    """Return :func:`detect_language` for each text (with its declared tag, if given), in order."""
    texts = list(texts)
    tags = list(declared) if declared is not None else [None] * len(texts)
    if len(tags) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(tags)} declared tags")
    return [detect_language(text, tag) for text, tag in zip(texts, tags, strict=True)]
