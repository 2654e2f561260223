"""Benchmark the query engine and near-duplicate stories at firehose scale.

Builds 1,000 realistic watch queries (brand names, phrases, OR groups, NOT, NEAR, wildcards, field
filters), then streams posts through them: real English and French tweets from
``../shared/data/sentiment`` (when present) mixed with synthetic posts that mention the watched
brands, with URLs, sites, languages and sources. It measures, in the same run:

* ``prepare``: tokenising posts only — the ceiling, since nothing can match a post faster;
* ``index``: :meth:`WatchIndex.match` (inverted index of anchor terms, then exact check);
* ``naive``: checking every one of the 1,000 queries against every post;
* ``stories``: :meth:`StoryIndex.assign` over a stream of syndicated copies, retweets and fresh posts;

checks that the index and the naive loop agree on every post they both saw, prints a table and
writes JSON to ``bench/results/query.json``.

Usage::

    PYTHONPATH=shared:. python bench/query_bench.py [--watches 1000] [--posts 20000] [--naive-posts 2000]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from veille.query import Document, WatchIndex, parse_query, prepare
from veille.stories import StoryIndex

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sentiment"
DEFAULT_OUT = ROOT / "bench" / "results" / "query.json"

# fmt: off
BRANDS = [
    "Acme", "Globex", "Initech", "Umbrella", "Hooli", "Stark", "Wayne", "Wonka", "Cyberdyne", "Tyrell",
    "Soylent", "Vandelay", "Massive Dynamic", "Airbus", "Renault", "Peugeot", "Citroën", "Michelin",
    "Danone", "Carrefour", "Auchan", "Leclerc", "Orange", "Bouygues", "Free", "SFR", "Total",
    "TotalEnergies", "Engie", "EDF", "Veolia", "Suez", "Thales", "Safran", "Dassault", "Sanofi", "L'Oréal",
    "LVMH", "Hermès", "Kering", "Chanel", "Decathlon", "Fnac", "Darty", "Boulanger", "Cdiscount", "Vinted",
    "BlaBlaCar", "Doctolib", "Deezer", "Ubisoft", "Criteo", "OVHcloud", "Atos", "Capgemini", "Sodexo",
    "Accor", "SNCF", "RATP", "Transavia", "Lactalis", "Bonduelle", "Ricard", "Pernod", "Lacoste", "Sephora",
    "Yves Rocher", "Leroy Merlin", "Apple", "Google", "Alphabet", "Microsoft", "Amazon", "Meta", "Facebook",
    "Instagram", "WhatsApp", "Netflix", "Spotify", "Tesla", "SpaceX", "Uber", "Lyft", "Airbnb", "Twitter",
    "Bluesky", "Mastodon", "Reddit", "Nvidia", "Intel", "AMD", "Samsung", "Sony", "Nintendo", "Xbox",
    "PlayStation", "Adobe", "Oracle", "Salesforce", "Slack", "Zoom", "Dropbox", "Shopify", "Stripe",
    "PayPal", "Visa", "Mastercard", "Boeing", "Ford", "Toyota", "Volkswagen", "BMW", "Audi", "Nestlé",
    "Unilever", "Coca-Cola", "Pepsi", "McDonald's", "Starbucks", "Walmart", "Costco", "Target", "Nike",
    "Adidas", "Puma", "Zara", "H&M", "IKEA", "Pfizer", "Moderna", "AstraZeneca", "Bayer", "Siemens",
    "Philips", "Ericsson", "Nokia", "Vodafone", "Telefónica", "BNP", "Société Générale", "Crédit Agricole",
    "AXA", "Allianz", "HSBC", "Barclays", "Santander", "ING", "Revolut", "N26", "Qonto", "Lydia", "Monzo",
    "Klarna", "Deliveroo", "Glovo", "Bolt", "Lime", "Dott", "Tier", "Getir", "Gorillas", "Flink", "Frichti",
    "Picnic", "Ocado", "Tesco", "Lidl", "Aldi", "Intermarché", "Casino", "Monoprix",
]
# fmt: on
ALIASES = {"Meta": "Facebook", "Alphabet": "Google", "Total": "TotalEnergies", "X": "Twitter"}
TOPICS_EN = ["outage", "layoffs", "strike", "recall", "lawsuit", "scandal", "breach", "hack", "boycott", "fine"]
TOPICS_FR = ["panne", "licenciements", "grève", "rappel", "procès", "scandale", "fuite", "piratage", "boycott"]
NEGATIVE = ["déçu", "arnaque", "honte", "nul", "scam", "terrible", "worst", "furious", "inadmissible"]
NOISE = ["recette", "recipe", "promo", "coupon", "giveaway", "concours", "horoscope", "lyrics"]
SITES = ["lemonde.fr", "lefigaro.fr", "liberation.fr", "bfmtv.com", "reuters.com", "theguardian.com", "bbc.co.uk"]
SOURCES = ["bluesky", "mastodon", "rss", "hackernews", "reddit", "gdelt", "google_news"]

POST_TEMPLATES = [
    "Encore une {topic_fr} chez {brand} ce matin, franchement {neg}.",
    "{brand} annonce des {topic_fr} : les salariés inquiets #{tag}",
    "{brand} hit by {topic_en} as customers report problems across Europe",
    "Just got my order from {brand}, works great! Thanks @{handle}",
    "RT @{handle}: {brand} {topic_en} confirmed by the company, more soon {url}",
    "Les usagers de {brand} dénoncent une {topic_fr} « {neg} » selon un porte-parole",
    "Why is nobody talking about the {brand} {topic_en}? This is {neg}.",
    "{brand} and {brand2} sign a partnership to build a new factory near Lyon",
    "Promo {brand} : -50% sur tout le site avec le code {tag} {url}",
    "{brand} CEO says the {topic_en} will not affect results; shares fall 3%",
]


def build_watches(n: int, rng: random.Random) -> dict[str, str]:
    """Return ``n`` named, realistic watch queries mixing every feature of the language."""

    def q(word: str) -> str:
        return f'"{word}"' if not word.replace("-", "").isalnum() or "-" in word else word

    templates: list[Callable[[str], str]] = [
        lambda b: q(b),
        lambda b: f'{q(b)} OR "{b} group"',
        lambda b: f"{q(b)} ({' OR '.join(rng.sample(TOPICS_EN + TOPICS_FR, 4))})",
        lambda b: f"({q(b)} OR {q(ALIASES.get(b, b + 'corp'))}) NOT ({' OR '.join(rng.sample(NOISE, 2))})",
        lambda b: f"{q(b)} NEAR/{rng.randint(2, 8)} ({' OR '.join(rng.sample(TOPICS_FR + TOPICS_EN, 3))})",
        lambda b: f"{q(b)} lang:{rng.choice(['fr', 'en'])}",
        lambda b: f"{b.split(chr(39))[0].split('-')[0].lower()[:5]}* ({' OR '.join(rng.sample(NEGATIVE, 3))})",
        lambda b: f"title:{q(b)} site:{rng.choice(SITES)}",
        lambda b: f"{q(b)} ({' OR '.join(rng.sample(NEGATIVE, 3))}) -promo -concours",
        lambda b: f"{q(b)} source:{rng.choice(SOURCES)}",
        lambda b: f'"{b} CEO" OR "PDG de {b}" OR ({q(b)} AND (résultats OR earnings))',
        lambda b: (
            f"author:{b.lower().split()[0].replace(chr(39), '')} OR url:{b.lower().split()[0].replace(chr(39), '')}"
        ),
    ]
    # leading wildcards cannot be indexed: these few are checked against every post
    unanchored = ["*corp", "?cme", "*bank*"][: max(0, n // 300)]
    watches: dict[str, str] = {}
    i = 0
    while len(watches) < n - len(unanchored):
        brand = BRANDS[i % len(BRANDS)]
        template = templates[rng.randrange(len(templates))]
        watches[f"w{len(watches):04d}-{brand.lower()}"] = template(brand)
        i += rng.randint(1, 3)
    for query in unanchored:
        watches[f"w{len(watches):04d}-unanchored"] = query
    return watches


def load_tweets(data: Path) -> list[tuple[str, str]]:
    """Return ``(text, lang)`` of the real tweets in the sentiment data folder (empty when absent)."""
    out: list[tuple[str, str]] = []
    for name, lang in (("en_tweets_dev.csv", "en"), ("fr_tweets_dev.csv", "fr")):
        path = data / name
        if path.exists():
            with path.open(newline="", encoding="utf-8") as fh:
                out.extend((row["text"], lang) for row in csv.DictReader(fh))
    return out


def synthetic_post(rng: random.Random) -> tuple[str, str]:
    """Return ``(text, lang)`` of a made-up post mentioning one or two watched brands."""
    brand, brand2 = rng.sample(BRANDS, 2)
    template = rng.choice(POST_TEMPLATES)
    text = template.format(
        brand=brand,
        brand2=brand2,
        topic_en=rng.choice(TOPICS_EN),
        topic_fr=rng.choice(TOPICS_FR),
        neg=rng.choice(NEGATIVE),
        tag=brand.replace(" ", "") + rng.choice(["Fail", "", "2024", "News"]),
        handle=brand.lower().replace(" ", "_") + rng.choice(["", "_fr", "news"]),
        url=f"https://t.co/{rng.randrange(16**8):08x}",
    )
    return text, ("fr" if any(w in template for w in ("Encore", "annonce", "usagers", "Promo")) else "en")


def build_posts(n: int, tweets: Sequence[tuple[str, str]], rng: random.Random) -> list[Document]:
    """Return ``n`` documents: real tweets and, one in four, a synthetic post about a brand."""
    docs = []
    for _ in range(n):
        if tweets and rng.random() < 0.75:
            text, lang = rng.choice(tweets)
        else:
            text, lang = synthetic_post(rng)
        site = rng.choice(SITES)
        source = rng.choice(SOURCES)
        title = text[:60] if source in ("rss", "google_news", "gdelt") else None
        docs.append(
            Document(
                text=text,
                title=title,
                url=f"https://www.{site}/{rng.randrange(10**6)}",
                site=site,
                author=f"{rng.choice(['jean', 'marie', 'bob', 'alice', 'newsbot'])}{rng.randrange(10**4)}",
                lang=lang,
                source=source,
            )
        )
    return docs


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _time(fn: Callable[[], Any], repeat: int) -> float:
    """Best-of-``repeat`` wall time of ``fn`` in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_matching(watches: dict[str, str], docs: list[Document], naive_docs: int, repeat: int) -> dict[str, Any]:
    """Measure parsing, index building, and posts/s for prepare-only, the index and the naive loop."""
    t0 = time.perf_counter()
    parsed = {name: parse_query(query) for name, query in watches.items()}
    parse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = WatchIndex(parsed)
    build_s = time.perf_counter() - t0

    def prepare_all() -> None:
        for d in docs:
            prepare(d).positions("default")

    def match_all() -> None:
        for d in docs:
            index.match(d)

    subset = docs[:naive_docs]

    def naive_all() -> None:
        for d in subset:
            index.match_exhaustive(d)

    prepare_s = _time(prepare_all, repeat)
    index_s = _time(match_all, repeat)
    naive_s = _time(naive_all, 1)

    mismatches = sum(index.match(d) != index.match_exhaustive(d) for d in subset)
    matches = [index.match(d) for d in docs]
    candidates = [len(index.candidates(d)) for d in docs]
    stats = index.stats()
    return {
        "watches": len(watches),
        "posts": len(docs),
        "naive_posts": len(subset),
        "parse_queries_per_s": _rate(len(watches), parse_s),
        "index_build_s": build_s,
        "prepare_posts_per_s": _rate(len(docs), prepare_s),
        "index_posts_per_s": _rate(len(docs), index_s),
        "naive_posts_per_s": _rate(len(subset), naive_s),
        "index_vs_naive": _rate(len(docs), index_s) / _rate(len(subset), naive_s),
        "index_vs_prepare_ceiling": _rate(len(docs), index_s) / _rate(len(docs), prepare_s),
        "mismatches_index_vs_naive": mismatches,
        "posts_matching_any_watch": sum(1 for m in matches if m) / len(docs),
        "matches_per_post": statistics.fmean(len(m) for m in matches),
        "candidates_per_post_mean": statistics.fmean(candidates),
        "candidates_per_post_p99": sorted(candidates)[int(0.99 * (len(candidates) - 1))],
        "anchored_watches": stats.anchored,
        "always_checked_watches": stats.always_checked,
        "index_keys": stats.keys,
    }


def story_stream(n: int, tweets: Sequence[tuple[str, str]], rng: random.Random) -> list[str]:
    """Return ``n`` texts: fresh posts, syndicated copies with boilerplate, truncations and retweets."""
    originals: list[str] = []
    out: list[str] = []
    for _ in range(n):
        roll = rng.random()
        if originals and roll < 0.15:
            out.append(f"RT @{rng.choice(['afp', 'user', 'bob'])}: {rng.choice(originals[-200:])}")
        elif originals and roll < 0.25:
            base = rng.choice(originals[-200:])
            out.append(f"Publié par {rng.choice(SITES)}. {base} Lire la suite sur notre site.")
        elif originals and roll < 0.3:
            base = rng.choice(originals[-200:])
            out.append(base[: max(40, len(base) * 2 // 3)])
        else:
            text = rng.choice(tweets)[0] if tweets and rng.random() < 0.5 else synthetic_post(rng)[0]
            text = f"{text} {' '.join(rng.sample(TOPICS_EN + TOPICS_FR + NEGATIVE, 4))} #{rng.randrange(10**6)}"
            originals.append(text)
            out.append(text)
    return out


def bench_stories(texts: list[str], max_entries: int) -> dict[str, Any]:
    """Measure StoryIndex.assign/s on a stream and the memory its sketches take once full."""
    tracemalloc.start()
    index = StoryIndex(max_entries=max_entries)
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    ids = [index.assign(f"m{i}", text, float(i)) for i, text in enumerate(texts)]
    elapsed = time.perf_counter() - t0
    memory = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    # timing without tracemalloc's overhead
    index = StoryIndex(max_entries=max_entries)
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        index.assign(f"m{i}", text, float(i))
    elapsed = time.perf_counter() - t0
    stats = index.stats()
    return {
        "mentions": len(texts),
        "assign_per_s": _rate(len(texts), elapsed),
        "stories": len(set(ids)),
        "sketches_kept": stats.entries,
        "max_entries": max_entries,
        "memory_mib": memory / 2**20,
        "bytes_per_sketch": memory / max(1, stats.entries),
    }


def main() -> None:
    """Run the benchmark, print a table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--naive-posts", type=int, default=2_000)
    parser.add_argument("--story-mentions", type=int, default=30_000)
    parser.add_argument("--story-max-entries", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    rng = random.Random(args.seed)
    tweets = load_tweets(args.data)
    watches = build_watches(args.watches, rng)
    docs = build_posts(args.posts, tweets, rng)
    matching = bench_matching(watches, docs, args.naive_posts, args.repeat)
    stories = bench_stories(story_stream(args.story_mentions, tweets, rng), args.story_max_entries)

    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "real_tweets": len(tweets),
        "seed": args.seed,
        "matching": matching,
        "stories": stories,
    }
    rows = [
        ("watch queries", f"{matching['watches']:,}", f"parsed at {matching['parse_queries_per_s']:,.0f}/s"),
        ("index build", f"{matching['index_build_s'] * 1000:,.1f} ms", f"{matching['index_keys']:,} keys"),
        ("anchored / always", f"{matching['anchored_watches']} / {matching['always_checked_watches']}", ""),
        ("prepare only (ceiling)", f"{matching['prepare_posts_per_s']:,.0f} posts/s", "tokenise title+text"),
        (
            "WatchIndex.match",
            f"{matching['index_posts_per_s']:,.0f} posts/s",
            f"{matching['index_vs_prepare_ceiling']:.0%} of ceiling",
        ),
        ("naive (every query)", f"{matching['naive_posts_per_s']:,.0f} posts/s", f"on {matching['naive_posts']:,}"),
        (
            "index / naive",
            f"{matching['index_vs_naive']:,.1f}x",
            f"mismatches: {matching['mismatches_index_vs_naive']}",
        ),
        (
            "candidates per post",
            f"{matching['candidates_per_post_mean']:.1f}",
            f"p99 {matching['candidates_per_post_p99']}",
        ),
        (
            "posts matching",
            f"{matching['posts_matching_any_watch']:.1%}",
            f"{matching['matches_per_post']:.2f} watches/post",
        ),
        ("StoryIndex.assign", f"{stories['assign_per_s']:,.0f} mentions/s", f"{stories['stories']:,} stories"),
        (
            "story sketches",
            f"{stories['sketches_kept']:,} kept",
            f"{stories['memory_mib']:.1f} MiB, {stories['bytes_per_sketch']:,.0f} B each",
        ),
    ]
    print(f"veille query bench — {len(tweets):,} real tweets in the stream, Python {result['python']}")
    for name, value, note in rows:
        print(f"  {name:<24} {value:>22}   {note}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
