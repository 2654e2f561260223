"""Composition root of the GDELT ingestor (``ingest-gdelt``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import httpx
import structlog

from services.ingest_gdelt.logic import (
    SEEN_MAX,
    SOURCE,
    ArticleList,
    article_mention,
    gdelt_query,
    gdelt_time,
    parse_artlist,
    parse_seendate,
    remember,
    request_params,
)
from veille.config import GdeltSource, VeilleConfig, load_config
from veille.ingest.coverage import report_untargeted
from veille.ingest.cursors import Cursor
from veille.ingest.http import Fetcher, FetchError
from veille.ingest.items import ItemMapper
from veille.ingest.matching import positive_terms
from veille.ingest.metrics import IngestMetrics
from veille.ingest.runner import Clock, IngestService, PollResult, Target
from veille.ingest.sources import configured, search_parts
from veille.ingest.textclean import decode_utf8
from veille.metrics import ServiceMetrics
from veille.settings import ServiceSettings

__all__ = ["NAME", "GdeltArticles", "create_app", "enabled"]

NAME = "ingest-gdelt"
log = structlog.get_logger("ingest_gdelt")


class GdeltArticles:
    """Asks GDELT for each watch's articles since the last poll and publishes the new ones."""

    name = SOURCE

    def __init__(
        self,
        section: GdeltSource,
        targets: list[Target],
        fetcher: Fetcher,
        clock: Clock,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.section = section
        self.metrics = metrics
        self._targets = targets
        self.fetcher = fetcher
        self.clock = clock

    def targets(self) -> list[Target]:
        """One target per watch."""
        return list(self._targets)

    async def poll(self, target: Target, cursor: Cursor) -> PollResult:
        """The window since the last poll, then what a full answer left older in it (at most 3 requests).

        DOC 2.0 answers at most ``maxrecords`` (250) articles, newest first. When a window holds more,
        the answer stops at some ``seendate``: the part of the window older than that is a *gap*, kept
        in the cursor and asked for with the same query and an ``enddatetime`` at that date, until an
        answer is not full. A poll makes at most ``MAX_REQUESTS`` requests (the rate limiter spaces them
        ``min_interval`` apart); a gap left is read on the next polls, after each poll's newest window,
        and ``veille_source_backlog_pending`` is 1 meanwhile. ``seendate`` has GDELT's 15-minute
        resolution: more than ``maxrecords`` articles with one date cannot be split further, and the
        rest of that quarter hour is skipped, said and counted.
        """
        terms = [t for t in positive_terms(str(target.params["query"])) if len(t) >= 3]
        if not terms:
            raise FetchError("untranslatable", "the watch query has no term of 3 letters or more", retryable=False)
        query = gdelt_query(terms, list(target.params.get("languages", [])))
        params = request_params(
            query,
            cursor,
            now=self.clock(),
            timespan=self.section.timespan,
            max_records=self.section.max_records,
        )
        answers = [await self._article_list(params)]
        gap = _gap_of(cursor.get("gap"))
        full_pages = 0
        skipped_slots = 0
        if self._full(answers[0]):
            full_pages += 1
            oldest = _oldest(answers[0])
            start = params["startdatetime"]
            if oldest is not None and oldest > start:
                gap = (min(gap[0], start) if gap else start, oldest)
        while gap is not None and len(answers) < MAX_REQUESTS:
            answer = await self._article_list(dict(params, startdatetime=gap[0], enddatetime=gap[1]))
            answers.append(answer)
            oldest = _oldest(answer)
            if not self._full(answer) or oldest is None:
                gap = None
                continue
            full_pages += 1
            if oldest >= gap[1]:  # a full quarter hour: its older articles cannot be asked for apart
                skipped_slots += 1
                log.warning("ingest.backlog_slot_skipped", source=SOURCE, target=target.name, seendate=oldest)
                oldest = _second_before(oldest)
            gap = (gap[0], oldest) if oldest > gap[0] else None
        problems: Counter[str] = Counter()
        items = ItemMapper()
        articles = [a for answer in answers for a in answer.articles]
        for answer in answers:
            for record in answer.broken:
                items.reject(
                    record, "an article record is not JSON, even after repairing its escapes", kind="invalid_json"
                )
        candidates = [m for a in articles if (m := items.map(article_mention, a, target.watch, problems)) is not None]
        fresh, new_cursor = remember(cursor, candidates, latest=self.clock() + timedelta(days=1))
        malformed = items.unseen(SOURCE, cursor.get("seen"))
        new_cursor["seen"] = ([r.item_id(SOURCE) for r in malformed] + new_cursor["seen"])[:SEEN_MAX]
        if gap is None:
            new_cursor.pop("gap", None)
        else:
            new_cursor["gap"] = list(gap)
            log.warning(
                "ingest.backlog_truncated", source=SOURCE, target=target.name, gap=list(gap), resumes_next_poll=True
            )
        if self.metrics is not None:
            if full_pages:
                self.metrics.backlog_truncated.labels(SOURCE, target.name).inc()
            self.metrics.backlog_pending.labels(SOURCE, target.name).set(0 if gap is None else 1)
        repaired = Counter({k: v for k, v in problems.items() if k == "no_date"})
        repaired["invalid_utf8"] += sum(answer.bad_utf8 for answer in answers)
        for answer in answers:
            repaired.update(answer.repairs)
        newest = max((m.published_at for m in candidates if m.published_at), default=None)
        return PollResult(
            fresh,
            new_cursor,
            newest=newest,
            rejected=Counter({k: v for k, v in problems.items() if k != "no_date"}),
            repaired=+repaired,
            malformed=malformed,
            details={
                "articles": len(articles),
                "query": query,
                "requests": len(answers),
                "gap": list(gap) if gap else None,
                "slots_skipped": skipped_slots or None,
            },
        )

    def _full(self, answer: ArticleList) -> bool:
        return len(answer.articles) >= self.section.max_records

    async def _article_list(self, params: dict[str, str]) -> ArticleList:
        """One DOC 2.0 request: the article list, leniently read (``bad_utf8`` set when bytes were replaced)."""
        response = await self.fetcher.get(str(self.section.base_url), params=params)
        head = response.body.lstrip()[:1]
        if head and head not in (b"{", b"["):
            message = response.body[:200].decode("utf-8", errors="replace").strip()
            raise FetchError("query_rejected", f"GDELT refused the query: {message}", retryable=False)
        text, bad_utf8 = decode_utf8(response.body)
        try:
            answer = parse_artlist(text) if head else ArticleList()
        except ValueError as exc:
            preview = text[:60].replace("\n", " ")
            raise FetchError(
                "invalid_payload", f"GDELT answer is not an article list ({exc}); starts with {preview!r}"
            ) from exc
        answer.bad_utf8 = bad_utf8
        return answer


MAX_REQUESTS = 3
"""Requests one poll makes: its newest window, then up to two for a gap a full answer left."""


def _oldest(answer: ArticleList) -> str | None:
    """The oldest ``seendate`` of an answer, as GDELT's ``YYYYMMDDHHMMSS`` (None when no article has one)."""
    dates = [d for a in answer.articles if isinstance(a, dict) and (d := parse_seendate(a.get("seendate")))]
    return gdelt_time(min(dates)) if dates else None


def _second_before(moment: str) -> str:
    """GDELT's ``YYYYMMDDHHMMSS`` one second earlier."""
    return gdelt_time(datetime.strptime(moment, "%Y%m%d%H%M%S").replace(tzinfo=UTC) - timedelta(seconds=1))


def _gap_of(value: object) -> tuple[str, str] | None:
    """A gap kept in the cursor (two ``YYYYMMDDHHMMSS`` strings, start before end), else None."""
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, str) and len(v) == 14 and v.isdigit() for v in value)
        and value[0] < value[1]
    ):
        return (value[0], value[1])
    return None


def enabled(config: VeilleConfig) -> bool:
    """Whether ``veille up`` should start this service: its section is in the configuration."""
    return configured(config, "gdelt")


def create_app(
    settings: ServiceSettings,
    *,
    config: VeilleConfig | None = None,
    http_client: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    metrics: ServiceMetrics | None = None,
) -> IngestService:
    """Build the GDELT ingestor from settings (and optional parts a test provides)."""
    config = config or load_config(settings.config)
    section = config.sources.gdelt
    parts = search_parts(NAME, SOURCE, section, settings, config, http_client=http_client, metrics=metrics)
    targets = parts.targets(when=configured(config, "gdelt"))
    untargeted = {
        t.name: "no term of 3 letters or more (GDELT refuses shorter ones)"
        for t in targets
        if not [term for term in positive_terms(str(t.params["query"])) if len(term) >= 3]
    }
    report_untargeted(SOURCE, parts.ingest_metrics, [t.name for t in targets], untargeted)
    source = GdeltArticles(section, targets, parts.fetcher(), clock or _now, parts.ingest_metrics)
    return parts.service(settings, source, clock=clock)


def _now() -> datetime:
    return datetime.now(UTC)
