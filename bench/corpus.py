"""The real-tweet corpus the classifier and end-to-end benchmarks run on (issue 17).

English and French tweets from ``../shared/data/sentiment`` (``en_tweets_dev.csv``, 2,000 SemEval
tweets, and ``fr_tweets_dev.csv``, 2,163 French tweets), mixed, **language not given**: every mention
goes through language detection, as most sources' posts do. There is no fallback: without the files a
benchmark stops with a message naming the path (a 6-text or 11-word corpus would flatter every figure:
the caches warm up, the language fast path always wins).
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from veille.models import MentionIngested

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sentiment"
FILES = ("en_tweets_dev.csv", "fr_tweets_dev.csv")


class MissingData(SystemExit):
    """The benchmark's data is not beside the repository: stop, saying where it was looked for."""


def tweets_with_language(data: Path = DATA) -> list[tuple[str, str]]:
    """(text, language of its file) of every English and French dev tweet; ``MissingData`` if absent."""
    out: list[tuple[str, str]] = []
    for name in FILES:
        path = data / name
        if not path.is_file():
            raise MissingData(
                f"benchmark needs the real tweets of ../shared/data/sentiment/{name} ({path}), which is not "
                "beside this clone; no synthetic fallback (it would flatter the figures)"
            )
        lang = name[:2]
        with path.open(encoding="utf-8", newline="") as handle:
            out.extend((row["text"], lang) for row in csv.DictReader(handle) if (row.get("text") or "").strip())
    if not out:
        raise MissingData(f"no tweets in {', '.join(str(data / n) for n in FILES)}")
    return out


def real_tweets(data: Path = DATA) -> list[str]:
    """The texts of every English and French dev tweet, in file order (``MissingData`` if absent)."""
    return [text for text, _lang in tweets_with_language(data)]


def tweet_mentions(
    n: int,
    brands: list[str],
    *,
    seed: int = 3,
    match_share: float = 0.3,
    prefix: str = "bench",
    data: Path = DATA,
) -> list[MentionIngested]:
    """``n`` mentions of random real tweets, language not given; ``match_share`` of them name a brand."""
    rng = random.Random(seed)
    texts = real_tweets(data)
    out = []
    for i in range(n):
        text = texts[rng.randrange(len(texts))]
        if rng.random() < match_share:
            text = f"{brands[i % len(brands)]} {text}"
        out.append(
            MentionIngested(
                id=f"{prefix}:{seed}:{i:06d}",
                source="rss",
                url=f"https://news.example/{prefix}/{i}",  # type: ignore[arg-type]
                title=None,
                text=text,
                site="news.example",
                lang=None,
            )
        )
    return out
