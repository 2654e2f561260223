"""The default sentiment backend: lexicons plus rules, for English and French, in pure Python.

The word lists are the ones the PyPI packages ``vadersentiment`` (English, emoticons, emoji names)
and ``vadersentiment-fr`` (French) ship; they are read from the installed packages, not copied
here, and so is AFINN-165 (English, PyPI package ``afinn``, a second opinion on each word whose
sums the calibration weighs next to VADER's). What this module adds over running those packages as
they are:

* tweet-aware tokens (:mod:`veille.sentiment.text`): handles, URLs, hashtags, elongations, emoji;
* lookups with accents folded and French elisions split (``l'écologie``, ``déçu`` = ``decu``), with a
  light French plural/feminine fallback (``déçues`` → ``déçu``);
* negation with a scope that ends at punctuation, including French ``ne … pas/plus/jamais/rien``
  (the verb between ``ne`` and ``pas`` is negated too: ``je n'aime pas``);
* intensifiers and dampeners (``very``, ``très``, ``a bit``), shouting, elongation, ``!!!``;
* contrast (``but``, ``mais``, ``pourtant`` ...): what comes after weighs more than what came before;
* names and titles: Capitalised words in a row inside a sentence (``listening to Bad Blood``, ``Star
  Wars Day``) carry no sentiment of the writer's, so their lexicon valence is ignored;
* a neutral band per language whose two edges were tuned on half of the development data
  (see ``bench/sentiment_eval.py``), plus a handful of rule weights; no word weights are learned.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources

from veille.sentiment.base import LABELS, SentimentResult, label_for_score
from veille.sentiment.calibration import Calibration, features
from veille.sentiment.evidence import Evidence
from veille.sentiment.text import Token, fold, tokenize


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _word_list(text: str) -> list[str]:
    return text.split()


__all__ = ["LanguageProfile", "LexiconBackend", "Tuning", "load_profile"]


LOOKUPS_KEPT = 200_000
"""Word-list look-ups a profile remembers (:meth:`LanguageProfile.lookup`; emptied past this)."""


@dataclass(frozen=True, slots=True)
class Tuning:
    """The numeric knobs of the rules for one language (defaults are VADER's where it has one)."""

    negative_below: float = -0.05
    """Compound scores at or below this are negative."""
    positive_above: float = 0.05
    """Compound scores at or above this are positive."""
    negation_scalar: float = -0.74
    """A negated word's valence is multiplied by this."""
    negation_scope: int = 3
    """How many words after a negator it reaches (punctuation and ``but`` end it sooner)."""
    booster: float = 0.293
    """Added to (or taken from) a word's valence per intensifier (dampener) just before it."""
    shout: float = 0.733
    """Added to a word written in CAPITALS in a text that is not all capitals."""
    elongation: float = 0.3
    """Added to an elongated word (``goooood``)."""
    bang: float = 0.292
    """Added per ``!`` (up to four) in the direction of the text's sentiment."""
    contrast_before: float = 0.5
    """Weight of what comes before ``but``/``mais``."""
    contrast_after: float = 1.5
    """Weight of what comes after it."""
    alpha: float = 15.0
    """Normalisation: compound = sum / sqrt(sum² + alpha)."""
    negative_weight: float = 1.0
    """Multiplier of negative valences (lexicons are often milder on the negative side)."""


@dataclass(slots=True)
class LanguageProfile:
    """Everything the scorer needs for one language: word valences, function words and tuning."""

    lang: str
    lexicon: dict[str, float]
    phrases: dict[str, float]
    emoticons: frozenset[str]
    negators: frozenset[str]
    boosters: dict[str, float]
    contrast: frozenset[str]
    tuning: Tuning
    calibration: Calibration | None = None
    """Linear model from evidence to label (see :mod:`veille.sentiment.calibration`); without one,
    the compound score is cut by the tuning's neutral band."""
    ne_words: frozenset[str] = frozenset()
    """French ``ne``/``n'``: opens a negation that ``pas``, ``plus``, ``jamais`` ... complete."""
    ne_completers: frozenset[str] = frozenset()
    """Words that negate only after ``ne`` (French ``plus``, ``personne``, ``guère``)."""
    idioms: dict[str, float] = field(default_factory=dict)
    """Two-word expressions (folded, space-separated) with their own valence, never negated."""
    conditional: dict[str, frozenset[str]] = field(default_factory=dict)
    """Words that carry their valence only right after one of the given words (English ``like``)."""
    soft_boosters: frozenset[str] = frozenset()
    """Words that boost a valenced word right after them, and otherwise keep their own valence."""
    inflections: tuple[str, ...] = ()
    """Endings to strip when a word is not in the lexicon (French ``es``, ``s``, ``e``, ``x``)."""
    extra_lexicons: tuple[dict[str, float], ...] = ()
    """Further word lists (folded word → valence, on a scale like VADER's ±4) scored with the same
    rules; each gives the calibration its own positive and negative sums (English: AFINN)."""
    _lookups: dict[str, tuple[float, tuple[float, ...]]] = field(init=False, repr=False)
    """Memo of :meth:`lookup` (rebuilt empty by :func:`dataclasses.replace`)."""
    _pair_starts: frozenset[str] = field(init=False, repr=False)
    """First words of :attr:`phrases` and :attr:`idioms`: only these can open a two-word entry."""
    _special: frozenset[str] = field(init=False, repr=False)
    """Every word with a role besides its valence (function words, first words of pairs)."""

    def __post_init__(self) -> None:
        self._lookups = {}
        self._pair_starts = frozenset(pair.partition(" ")[0] for pair in (*self.phrases, *self.idioms))
        self._special = self._pair_starts.union(
            self.negators,
            self.boosters,
            self.contrast,
            self.ne_words,
            self.ne_completers,
            self.soft_boosters,
            self.conditional,
        )

    def lookup(self, key: str) -> tuple[float, tuple[float, ...]]:
        """Return :meth:`valence` and :meth:`extra_valences` of a folded word in one (memoised) call."""
        found = self._lookups.get(key)
        if found is not None:
            return found
        value = self.lexicon.get(key)
        if value is None:
            value = 0.0
            for ending in self.inflections:
                if key.endswith(ending) and len(key) - len(ending) >= 4:
                    stem = self.lexicon.get(key[: -len(ending)])
                    if stem is not None:
                        value = stem
                        break
        extras = tuple(lexicon.get(key, 0.0) for lexicon in self.extra_lexicons)
        found = (value, extras if any(extras) else ())
        if len(self._lookups) > LOOKUPS_KEPT:
            self._lookups.clear()
        self._lookups[key] = found
        return found

    def extra_valences(self, key: str) -> tuple[float, ...]:
        """Return the valence of a folded word in each of :attr:`extra_lexicons` (``()`` if none has it)."""
        return self.lookup(key)[1]

    def valence(self, key: str) -> float:
        """Return the lexicon valence of a folded word, 0.0 when it has none."""
        return self.lookup(key)[0]


# --------------------------------------------------------------------------------------------------
# Word lists. The valences come from the vaderSentiment packages; these are the function words.

_EN_NEGATORS = frozenset(
    [
        "aint",
        "arent",
        "cannot",
        "cant",
        "couldnt",
        "darent",
        "didnt",
        "doesnt",
        "ain't",
        "aren't",
        "can't",
        "couldn't",
        "daren't",
        "didn't",
        "doesn't",
        "dont",
        "hadnt",
        "hasnt",
        "havent",
        "isnt",
        "mightnt",
        "mustnt",
        "neither",
        "don't",
        "hadn't",
        "hasn't",
        "haven't",
        "isn't",
        "mightn't",
        "mustn't",
        "neednt",
        "needn't",
        "never",
        "none",
        "nope",
        "nor",
        "not",
        "nothing",
        "nowhere",
        "nobody",
        "no",
        "oughtnt",
        "shant",
        "shouldnt",
        "uhuh",
        "wasnt",
        "werent",
        "oughtn't",
        "shan't",
        "shouldn't",
        "wasn't",
        "weren't",
        "without",
        "wont",
        "wouldnt",
        "won't",
        "wouldn't",
        "rarely",
        "seldom",
        "despite",
    ]
)
_EN_BOOSTERS_UP = [
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
    "super",
    "soo",
    "sooo",
    "too",
]
_EN_BOOSTERS_DOWN = [
    "almost",
    "barely",
    "hardly",
    "kinda",
    "kindof",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sorta",
    "sortof",
]
_EN_CONTRAST = _words("but however although though yet")

_FR_NEGATORS = frozenset(
    ["pas", "jamais", "rien", "aucun", "aucune", "aucunement", "nullement", "sans", "ni", "nan", "non"]
)
_FR_NE = _words("ne n'")
_FR_NE_COMPLETERS = _words("plus personne guere point")
_FR_BOOSTERS_UP = [
    "absolument",
    "archi",
    "beaucoup",
    "bigrement",
    "carrement",
    "completement",
    "considerablement",
    "davantage",
    "diablement",
    "droelement",
    "entierement",
    "exceptionnellement",
    "excessivement",
    "extra",
    "extremement",
    "fabuleusement",
    "grandement",
    "hyper",
    "incroyablement",
    "infiniment",
    "particulierement",
    "profondement",
    "rudement",
    "sacrement",
    "serieusement",
    "specialement",
    "super",
    "superbement",
    "tellement",
    "terriblement",
    "totalement",
    "trop",
    "tres",
    "ultra",
    "vachement",
    "vraiment",
    "enormement",
    "grave",
    "si",
    "tant",
]
_FR_BOOSTERS_DOWN = [
    "assez",
    "difficilement",
    "guere",
    "insuffisamment",
    "juste",
    "legerement",
    "moins",
    "peu",
    "plutot",
    "presque",
    "quasi",
    "quasiment",
    "rarement",
]
_FR_CONTRAST = _words("mais pourtant cependant neanmoins toutefois quoique malgre")
_FR_INFLECTIONS = ("es", "s", "x", "e")
_FR_NO_VALENCE = frozenset(
    # Function words and false friends that the machine-translated lexicon gave a valence:
    # "sur" (from "sure"), "plus"/"plu" (from "plus"/"pleased"), "énergétique" (from "energetic")...
    [
        "sur",
        "sous",
        "s",
        "plus",
        "plu",
        "plue",
        "plues",
        "nouveau",
        "nouvelle",
        "nouvelles",
        "nouveaux",
        "energetique",
        "energetiques",
    ]
)
_EN_NO_VALENCE: frozenset[str] = frozenset()
_EN_CONDITIONAL = {
    # "like" is a verb of liking only after a subject or an auxiliary; elsewhere it is a
    # preposition or a filler ("looks like", "like, whatever").
    "like": _words(
        "i we you they u i'd we'd they'd you'd would really do don't dont didn't didnt does doesn't doesnt to "
        "also still"
    ),
}
_EN_IDIOMS = {
    "can't wait": 2.5, "cant wait": 2.5, "cannot wait": 2.5, "can't stand": -2.0, "cant stand": -2.0,
    "no problem": 1.0, "no problems": 1.0, "no worries": 1.0, "no doubt": 1.0, "well done": 2.0,
    "yeah right": -1.5, "so what": -0.5,
}  # fmt: skip
"""Two-word expressions whose sentiment is not that of their words (taken as a whole, never negated)."""
_FR_IDIOMS = {
    "pas terrible": -1.5, "pas mal": 1.0, "importe quoi": -1.5, "ai hate": 2.0, "as hate": 2.0,
    "sans plus": -0.5, "trop bien": 2.5, "trop top": 2.5, "ras-le-bol": -2.0, "au top": 2.0,
}  # fmt: skip
_EN_SOFT_BOOSTERS = _words("pretty")
"""Words that intensify the valenced word right after them (``pretty bad``), else keep their own."""

# Chosen by 5-fold cross-validation on the tuning half of the development tweets only (coordinate
# search over these knobs, keeping a change only when it helped clearly); the held-out half was not
# used. The neutral band edges matter only without a calibration.
_EN_TUNING = Tuning(negation_scalar=-0.5, booster=0.6, negative_weight=0.8, contrast_before=1.0)
_FR_TUNING = Tuning(negation_scalar=-0.5, negative_weight=2.0, alpha=5.0)


def _read(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text(encoding="utf-8")


def _vader_en_lexicon() -> dict[str, float]:
    lexicon: dict[str, float] = {}
    for line in _read("vaderSentiment", "vader_lexicon.txt").splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0]:
            lexicon.setdefault(fold(parts[0]), float(parts[1]))
    return lexicon


def _vader_fr_lexicon() -> dict[str, float]:
    lexicon: dict[str, float] = {}
    for line in _read("vaderSentiment_fr", "fr_lexicon.txt").splitlines():
        word, sep, value = line.strip().rpartition("->")
        if sep and word:
            lexicon.setdefault(fold(word), float(value))
    return lexicon


_EMOJI_OVERRIDES = {
    "😡": -2.5, "🤬": -3.0, "😤": -1.5, "👎": -2.0, "👍": 2.0, "👏": 2.0, "🙏": 1.5, "💯": 2.0,
    "💔": -2.5, "🤮": -2.5, "🤢": -2.0, "🙄": -1.0, "💩": -1.5, "😭": -1.5, "🥰": 3.0, "🤩": 2.5,
}  # fmt: skip
"""Common emoji whose English name carries no lexicon word ("pouting face", "thumbs down")."""


def _emoji_valences(en_lexicon: dict[str, float]) -> dict[str, float]:
    """Valence of each single-character emoji: the sum of its English name's word valences."""
    table: dict[str, float] = dict(_EMOJI_OVERRIDES)
    for line in _read("vaderSentiment", "emoji_utf8_lexicon.txt").splitlines():
        emoji, sep, description = line.partition("\t")
        emoji = emoji.replace("\ufe0f", "")
        if not sep or len(emoji) != 1:
            continue
        total = sum(en_lexicon.get(fold(word), 0.0) for word in description.split())
        if total and emoji not in _EMOJI_OVERRIDES:
            table[emoji] = max(-3.0, min(3.0, total))
    return table


def _afinn_en_lexicon() -> dict[str, float]:
    """AFINN-165 (Finn Årup Nielsen), single words only, as the PyPI package ``afinn`` ships it."""
    lexicon: dict[str, float] = {}
    for line in _read("afinn", "data/AFINN-en-165.txt").splitlines():
        word, sep, value = line.rpartition("\t")
        if sep and word and " " not in word:
            lexicon.setdefault(fold(word), float(value))
    return lexicon


def _split_phrases(lexicon: dict[str, float]) -> tuple[dict[str, float], dict[str, float], frozenset[str]]:
    words: dict[str, float] = {}
    phrases: dict[str, float] = {}
    emoticons: set[str] = set()
    for key, value in lexicon.items():
        if " " in key:
            if key.count(" ") == 1:
                phrases[key] = value
        else:
            words[key] = value
            if not any(ch.isalpha() for ch in key) or (len(key) <= 3 and not key.isalpha()):
                emoticons.add(key)
    return words, phrases, frozenset(emoticons)


_profiles: dict[str, LanguageProfile] = {}
_profiles_lock = threading.Lock()


def _build_profiles() -> dict[str, LanguageProfile]:
    en_all = _vader_en_lexicon()
    emoji = _emoji_valences(en_all)
    en_words, en_phrases, en_emoticons = _split_phrases(en_all)
    fr_words, fr_phrases, fr_emoticons = _split_phrases(_vader_fr_lexicon())
    for emoticon in en_emoticons:
        fr_words.setdefault(emoticon, en_words[emoticon])
    en_words.update(emoji)
    fr_words.update(emoji)
    boosters_en = {fold(w): 1.0 for w in _EN_BOOSTERS_UP} | {fold(w): -1.0 for w in _EN_BOOSTERS_DOWN}
    boosters_fr = {fold(w): 1.0 for w in _FR_BOOSTERS_UP} | {fold(w): -1.0 for w in _FR_BOOSTERS_DOWN}
    for booster in (*boosters_en, *boosters_fr):
        # A word that only intensifies has no valence of its own ("super" stays a booster in French).
        en_words.pop(booster, None) if booster in boosters_en else None
        fr_words.pop(booster, None) if booster in boosters_fr else None
    for word in _FR_NO_VALENCE:
        fr_words.pop(word, None)
    for word in _EN_NO_VALENCE:
        en_words.pop(word, None)
    afinn = _afinn_en_lexicon()
    for word in (*boosters_en, *_EN_NO_VALENCE):
        afinn.pop(word, None)
    emoticons = en_emoticons | fr_emoticons
    from veille.sentiment._calibration_data import CALIBRATIONS

    symbols_only = {key: value for key, value in en_words.items() if key in emoticons or key in emoji}
    return {
        "en": LanguageProfile(
            "en",
            en_words,
            en_phrases,
            emoticons,
            _EN_NEGATORS,
            boosters_en,
            _EN_CONTRAST,
            _EN_TUNING,
            calibration=CALIBRATIONS.get("en"),
            idioms=_EN_IDIOMS,
            conditional=_EN_CONDITIONAL,
            soft_boosters=_EN_SOFT_BOOSTERS,
            extra_lexicons=(afinn,),
        ),
        "fr": LanguageProfile(
            "fr",
            fr_words,
            fr_phrases,
            emoticons,
            _FR_NEGATORS,
            boosters_fr,
            _FR_CONTRAST,
            _FR_TUNING,
            calibration=CALIBRATIONS.get("fr"),
            idioms=_FR_IDIOMS,
            ne_words=_FR_NE,
            ne_completers=_FR_NE_COMPLETERS,
            inflections=_FR_INFLECTIONS,
        ),
        "*": LanguageProfile("*", symbols_only, {}, emoticons, frozenset(), {}, frozenset(), Tuning()),
    }


def load_profile(lang: str | None) -> LanguageProfile:
    """Return the profile for a language: ``fr``, ``en`` (also for unknown ``None``), else emoji-only.

    A language with no lexicon (``de``, ``es`` ...) is scored on its emoji and emoticons only, so it
    is neutral unless those say otherwise, rather than misread with an English lexicon.
    """
    if not _profiles:
        with _profiles_lock:
            if not _profiles:
                _profiles.update(_build_profiles())
    if lang is None:
        return _profiles["en"]
    return _profiles.get(lang, _profiles["*"])


_SENTENCE_BREAKS = frozenset(("stop", "bang"))


def _score_tokens(tokens: list[Token], profile: LanguageProfile) -> Evidence:
    """Return the valence evidence of a token list (``total`` is VADER's unnormalised sum).

    The profile's extra lexicons go through the same rules (negation, boosters, contrast ...) in the
    same pass; their sums land in :attr:`Evidence.extra`.
    """
    tuning = profile.tuning
    lookups = profile._lookups
    lookup = profile.lookup
    n_extra = len(profile.extra_lexicons)
    negators = profile.negators
    boosters = profile.boosters
    ne_words = profile.ne_words
    completers = profile.ne_completers
    phrases = profile.phrases
    idioms = profile.idioms
    pair_starts = profile._pair_starts
    special = profile._special
    contrast_words = profile.contrast
    soft_boosters = profile.soft_boosters
    conditional = profile.conditional
    word_tokens = [t for t in tokens if t.kind == "word"]
    n_words = len(word_tokens)
    mixed_case = False
    if any(t.shouted for t in word_tokens):
        mixed_case = not all(t.shouted for t in word_tokens)

    # (token index, valence, extra valences) of every token that carries some.
    scored: list[tuple[int, float, tuple[float, ...]]] = []
    contrast_at = -1
    negated_until = -1  # index (in tokens) of the last token a negation still reaches
    ne_open = False
    bangs = 0
    questions = 0
    negations = 0
    recent_boost: list[tuple[int, float]] = []  # (token index, +1/-1) of boosters in this clause
    skip_next = False
    n = len(tokens)
    for i, token in enumerate(tokens):
        if skip_next:
            skip_next = False
            continue
        kind = token.kind
        if kind == "bang":
            bangs += token.text.count("!")
            questions += token.text.count("?")
            negated_until = -1
            ne_open = False
            recent_boost.clear()
            continue
        if kind == "stop":
            if token.text != ":":
                negated_until = -1
                ne_open = False
                recent_boost.clear()
            continue
        key = token.key
        pairable = False
        if key in special or "n't" in key:  # most words have no role but their valence: skip this
            pairable = key in pair_starts and i + 1 < n
            if kind == "word":
                if pairable:
                    idiom = idioms.get(f"{key} {tokens[i + 1].key}")
                    if idiom is not None:
                        scored.append((i, idiom, (idiom,) * n_extra))
                        skip_next = True
                        recent_boost.clear()
                        continue
                if key in contrast_words:
                    contrast_at = i
                    negated_until = -1
                    ne_open = False
                    continue
                if key in ne_words:
                    ne_open = True
                    negated_until = i + tuning.negation_scope + 1
                    continue
                if key in negators or (ne_open and key in completers) or key.endswith("n't"):
                    negated_until = max(negated_until, i + tuning.negation_scope)
                    ne_open = False
                    continue
                boost = boosters.get(key)
                if boost is not None:
                    recent_boost.append((i, boost))
                    continue
            if key in soft_boosters and i + 1 < n and lookup(tokens[i + 1].key)[0]:
                recent_boost.append((i, 1.0))
                continue
            allowed_after = conditional.get(key)
            if allowed_after is not None and (i == 0 or tokens[i - 1].key not in allowed_after):
                continue
        if (
            token.titled
            and i
            and tokens[i - 1].kind not in _SENTENCE_BREAKS
            and (tokens[i - 1].titled or (i + 1 < n and tokens[i + 1].titled))
        ):
            # Inside a name or a title ("... listening to Bad Blood", "Star Wars Day"): two
            # Capitalised words in a row, not at the start of a sentence, say nothing of the writer.
            continue
        found = lookups.get(key) or lookup(key)
        valence, extras = found
        if pairable:
            pair = phrases.get(f"{key} {tokens[i + 1].key}")
            if pair is not None:
                valence = pair or valence
                skip_next = True
        if not valence and not extras:
            continue
        lift = 0.0
        if token.shouted and mixed_case:
            lift += tuning.shout
        if token.elongated:
            lift += tuning.elongation
        for at, boost in recent_boost:
            distance = i - at
            if distance <= 3:
                lift += boost * tuning.booster * (1.0, 0.95, 0.9)[distance - 1]
        recent_boost.clear()
        negated = i <= negated_until
        if negated and valence:
            negations += 1
        scored.append(
            (
                i,
                _modified(valence, lift, negated, tuning) if valence else 0.0,
                tuple(_modified(v, lift, negated, tuning) if v else 0.0 for v in extras) if extras else (),
            )
        )

    positive = negative = 0.0
    extra_pos = [0.0] * n_extra
    extra_neg = [0.0] * n_extra
    for at, valence, extras in scored:
        weight = 1.0
        if contrast_at >= 0:
            weight = tuning.contrast_before if at < contrast_at else tuning.contrast_after
        if valence > 0:
            positive += valence * weight
        elif valence < 0:
            negative += valence * weight
        for j, value in enumerate(extras):
            if value > 0:
                extra_pos[j] += value * weight
            elif value < 0:
                extra_neg[j] += value * weight
    total = positive + negative
    if total:
        emphasis = min(bangs, 4) * tuning.bang
        if questions > 1:
            emphasis += min(questions, 4) * 0.18 if questions <= 3 else 0.96
        total += emphasis if total > 0 else -emphasis
    return Evidence(
        total,
        positive,
        negative,
        n_words,
        negations,
        bangs,
        questions,
        tuple(zip(extra_pos, extra_neg, strict=True)),
    )


def _modified(valence: float, lift: float, negated: bool, tuning: Tuning) -> float:
    """Apply emphasis (``lift``, away from zero), negation and the negative weight to a valence."""
    valence += lift if valence > 0 else -lift
    if negated:
        valence *= tuning.negation_scalar
    if valence < 0:
        valence *= tuning.negative_weight
    return valence


class LexiconBackend:
    """Lexicon-and-rules sentiment for English and French; fast (tens of thousands of texts/s).

    Texts in ``fr`` use the French lexicon; ``en`` and unknown (``None``) the English one; any other
    language is judged on emoji and emoticons only. ``tunings`` and ``calibrations`` (per language)
    replace the shipped ones, e.g. to re-fit on your own labelled data; pass ``calibrations={"en":
    None}`` to fall back to the neutral band on the compound score.
    """

    name = "lexicon"

    def __init__(
        self,
        tunings: dict[str, Tuning] | None = None,
        calibrations: dict[str, Calibration | None] | None = None,
    ) -> None:
        self._tunings = dict(tunings or {})
        self._calibrations = dict(calibrations or {})
        self._resolved: dict[str | None, LanguageProfile] = {}

    def _profile(self, lang: str | None) -> LanguageProfile:
        profile = self._resolved.get(lang)
        if profile is None:
            profile = load_profile(lang)
            changes: dict[str, object] = {}
            if profile.lang in self._tunings:
                changes["tuning"] = self._tunings[profile.lang]
            if profile.lang in self._calibrations:
                changes["calibration"] = self._calibrations[profile.lang]
            if changes:
                profile = replace(profile, **changes)  # type: ignore[arg-type]
            self._resolved[lang] = profile
        return profile

    def evidence(self, text: str, lang: str | None = None) -> Evidence:
        """Return what the rules found in ``text`` (valence sums, negations, ``!`` ...)."""
        profile = self._profile(lang)
        return _score_tokens(tokenize(text, profile.lang, profile.emoticons), profile)

    def features(self, text: str, lang: str | None = None) -> list[float]:
        """Return the calibration feature vector of ``text`` (see :mod:`veille.sentiment.calibration`)."""
        profile = self._profile(lang)
        return features(self.evidence(text, lang), text, profile.tuning.alpha)

    def analyze(self, text: str, lang: str | None = None) -> SentimentResult:
        """Return the label and score of ``text`` (``lang``: ISO 639-1 code or ``None``).

        A text with no sentiment-bearing word, emoji or emoticon is neutral with score 0. Otherwise,
        with a calibration the score is P(positive) − P(negative) and the label the most probable
        one; without, the score is the compound valence and the label comes from the neutral band.
        """
        profile = self._profile(lang)
        evidence = _score_tokens(tokenize(text, profile.lang, profile.emoticons), profile)
        tuning = profile.tuning
        if not evidence.positive and not evidence.negative and not any(any(pair) for pair in evidence.extra):
            return SentimentResult("neutral", 0.0)  # no sentiment word, emoji or emoticon: no opinion
        if profile.calibration is not None:
            probs = profile.calibration.probabilities(features(evidence, text, tuning.alpha))
            best = max(range(3), key=probs.__getitem__)
            return SentimentResult(LABELS[best], max(-1.0, min(1.0, probs[2] - probs[0])))
        total = evidence.total
        score = max(-1.0, min(1.0, total / math.sqrt(total * total + tuning.alpha)))
        return SentimentResult(label_for_score(score, tuning.negative_below, tuning.positive_above), score)

    def analyze_many(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[SentimentResult]:
        """Return :meth:`analyze` of each text with its language (all ``None`` if not given)."""
        if langs is None:
            return [self.analyze(text) for text in texts]
        if len(langs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(langs)} languages")
        return [self.analyze(text, lang) for text, lang in zip(texts, langs, strict=True)]
