"""Pure classification logic: no broker, no I/O; the subscriber calls :meth:`Classifier.classify`."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from veille.config import VeilleConfig, Watch
from veille.models import AlertRaised, MentionClassified, MentionIngested, SampleMention, Sentiment
from veille.query import Document, WatchIndex
from veille.stories import StoryIndex

__all__ = ["Classification", "Classifier", "SentimentFn", "SentimentManyFn", "alert_id", "document_for"]

SentimentFn = Callable[[str, str | None], tuple[Sentiment, float]]
SentimentManyFn = Callable[[list[str], list[str | None]], list[tuple[Sentiment, float]]]
"""``SentimentFn`` of many texts at once, in order (a backend's ``analyze_many``)."""
LanguageFn = Callable[[str, str | None], str | None]
TermsFn = Callable[[str], list[str]]


def alert_id(watch: str, kind: str, key: str) -> str:
    """Deterministic alert id: the same cause always gives the same id, so repeats are dropped."""
    return "alert-" + hashlib.sha256(f"{watch}\x1f{kind}\x1f{key}".encode()).hexdigest()[:24]


def _body(mention: MentionIngested) -> str:
    """The text a mention is classified on: its title and text."""
    title = mention.title
    return f"{title} {mention.text}" if title and mention.text else title or mention.text


def document_for(mention: MentionIngested, lang: str | None) -> Document:
    """The fields of a mention that queries can match."""
    return Document(
        title=mention.title or "",
        text=mention.text,
        url=str(mention.url) if mention.url else "",
        site=mention.site or "",
        author=mention.author or "",
        lang=lang or "",
        source=mention.source,
    )


@dataclass(frozen=True)
class Classification:
    """What the classifier makes of one mention.

    ``terms`` are the classifier's ``terms`` function of ``body`` (the service gives it
    :func:`~services.classifier.surges.mention_terms`, what a watch's buckets count) for a mention
    that matches a watch, empty otherwise or without that function: computed right after matching,
    while the body's words are still in :func:`veille.text.normalise_for_match`'s small cache.
    """

    mention: MentionClassified
    alerts: list[AlertRaised]
    body: str = ""
    terms: list[str] = field(default_factory=list)


class Classifier:
    """Matches mentions to watches, scores their sentiment, groups near-duplicates into stories and
    raises per-mention alerts.

    Story ids come from ``stories`` (a fresh :class:`~veille.stories.StoryIndex` by default), which
    lives in this process only: see :mod:`services.classifier.detection` for what that means with
    several replicas.

    Language and sentiment are pure functions of the text (and its declared language); the last
    ``cache_size`` results are remembered so syndicated copies of a story (the same text on many
    sites, common in news) are scored once.
    """

    def __init__(
        self,
        config: VeilleConfig,
        sentiment: SentimentFn,
        language: LanguageFn,
        *,
        stories: StoryIndex | None = None,
        cache_size: int = 4096,
        terms: TermsFn | None = None,
        sentiment_many: SentimentManyFn | None = None,
    ) -> None:
        """Build the matcher for ``config``'s watches with the given sentiment and language functions.

        ``sentiment_many``, when given, must equal ``sentiment`` text by text; :meth:`classify_many`
        then scores a batch's new texts with one call.
        """
        self.config = config
        self.stories = stories if stories is not None else StoryIndex()
        self.watches: dict[str, Watch] = {w.name: w for w in config.watches}
        self.index = WatchIndex({w.name: w.query for w in config.watches})
        self.sentiment = sentiment
        self.sentiment_many = sentiment_many
        self.language = language
        self.terms = terms
        self.cache_size = cache_size
        self._analyzed: OrderedDict[tuple[str, str | None], tuple[str | None, Sentiment, float]] = OrderedDict()

    def analyze(self, body: str, declared: str | None) -> tuple[str | None, Sentiment, float]:
        """Language, sentiment label and score of ``body`` (remembered for the last ``cache_size`` texts)."""
        key = (body, declared)
        cached = self._analyzed.get(key)
        if cached is not None:
            self._analyzed.move_to_end(key)
            return cached
        lang = self.language(body, declared)
        label, score = self.sentiment(body, lang)
        result = (lang, label, score)
        self._remember(key, result)
        return result

    def _remember(self, key: tuple[str, str | None], result: tuple[str | None, Sentiment, float]) -> None:
        """Keep ``result`` for ``key`` among the last ``cache_size`` texts analysed."""
        if self.cache_size > 0:
            self._analyzed[key] = result
            if len(self._analyzed) > self.cache_size:
                self._analyzed.popitem(last=False)

    def analyze_many(self, bodies: list[str], declared: list[str | None]) -> list[tuple[str | None, Sentiment, float]]:
        """:meth:`analyze` of each body with its declared language; the new texts scored in one batch.

        Texts not in the cache (each distinct one once) get their language here, then their sentiment
        from one ``sentiment_many`` call (one :meth:`analyze` each without it); the results are the
        same as :meth:`analyze` one after the other, which both functions being pure guarantees.
        """
        if self.sentiment_many is None:
            return [self.analyze(body, lang) for body, lang in zip(bodies, declared, strict=True)]
        cache = self._analyzed
        keys = list(zip(bodies, declared, strict=True))
        found: list[tuple[str | None, Sentiment, float] | None] = []
        missing: dict[tuple[str, str | None], str | None] = {}  # key -> detected language, in order
        for key in keys:
            cached = cache.get(key)
            if cached is not None:
                cache.move_to_end(key)
            elif key not in missing:
                missing[key] = self.language(*key)
            found.append(cached)
        if missing:
            langs = list(missing.values())
            scored = self.sentiment_many([body for body, _ in missing], langs)
            new = {key: (lang, label, score) for key, lang, (label, score) in zip(missing, langs, scored, strict=True)}
            for key, result in new.items():
                self._remember(key, result)
            found = [result if result is not None else new[key] for result, key in zip(found, keys, strict=True)]
        return found  # type: ignore[return-value]  # every None was replaced

    def matching_watches(self, mention: MentionIngested, lang: str | None) -> list[str]:
        """Names of the watches this mention belongs to, filtered by their languages and sources."""
        doc = document_for(mention, lang)
        names = set(self.index.match(doc))
        if mention.watch is not None and mention.watch in self.watches:
            names.add(mention.watch)  # the source searched for this watch (a Google Alerts feed)
        out = []
        for name in sorted(names):
            watch = self.watches[name]
            if watch.languages and (lang or "") not in watch.languages:
                continue
            if watch.sources and mention.source not in watch.sources:
                continue
            out.append(name)
        return out

    def classify(self, mention: MentionIngested) -> Classification:
        """Classify one mention and return it with the alerts it raises."""
        body = _body(mention)
        return self._classified(mention, body, *self.analyze(body, mention.lang))

    def classify_many(self, mentions: list[MentionIngested]) -> list[Classification]:
        """:meth:`classify` of each mention, in order; language and sentiment done for the batch first.

        The same results as :meth:`classify` one mention after the other: stories are still assigned
        in the mentions' order, and language and sentiment are pure functions of the text.
        """
        bodies = [_body(mention) for mention in mentions]
        analyzed = self.analyze_many(bodies, [mention.lang for mention in mentions])
        return [
            self._classified(mention, body, *found)
            for mention, body, found in zip(mentions, bodies, analyzed, strict=True)
        ]

    def _classified(
        self, mention: MentionIngested, body: str, lang: str | None, label: Sentiment, score: float
    ) -> Classification:
        watches = self.matching_watches(mention, lang)
        story_id = self.stories.assign(mention.id, body, mention.ingested_at)
        classified = MentionClassified(
            mention=mention, lang=lang, sentiment=label, sentiment_score=score, watches=watches, story_id=story_id
        )
        alerts = [
            self._negative_alert(self.watches[name], classified)
            for name in watches
            if self.watches[name].negative_alerts
            and label == "negative"
            and score <= self.watches[name].negative_threshold
        ]
        terms = self.terms(body) if watches and self.terms is not None else []
        return Classification(classified, alerts, body, terms)

    @staticmethod
    def _negative_alert(watch: Watch, classified: MentionClassified) -> AlertRaised:
        mention = classified.mention
        url = str(mention.url) if mention.url else None
        headline = mention.title or mention.text[:120]
        return AlertRaised(
            id=alert_id(watch.name, "negative_mention", mention.id),
            watch=watch.name,
            kind="negative_mention",
            severity=watch.severity.negative_mention,
            summary=f"Negative mention of {watch.name} on {mention.site or mention.source}: {headline}",
            lang=classified.lang,
            source=mention.source,
            statistic=classified.sentiment_score,
            threshold=watch.negative_threshold,
            negative_share=1.0,
            mention_count=1,
            story_count=1,
            top_sources=[mention.site or mention.source],
            samples=[
                SampleMention(
                    id=mention.id,
                    source=mention.source,
                    url=url,
                    title=mention.title,
                    text=mention.text[:500],
                    author=mention.author,
                    sentiment=classified.sentiment,
                    published_at=mention.published_at,
                )
            ],
            started_at=mention.published_at or mention.ingested_at,
            labels={**watch.labels, "watch": watch.name, "kind": "negative_mention"},
        )
