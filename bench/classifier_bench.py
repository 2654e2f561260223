"""Benchmark the classifier service through a real nats-server, beside the raw nats-py ceiling.

In one run, on one fresh ``nats-server`` (temporary store, loopback):

1. ``--mentions`` raw mentions are published to the mentions stream: real English and French tweets
   from ``../shared/data/sentiment`` (the benchmark stops, saying so, when they are absent: no
   synthetic fallback), most of them naming one of the watched brands, a share syndicated (same text
   on several sites); by default no language is given (``--declared-lang 0``: every mention goes
   through language detection, issue 17); ``--declared-lang 0.5`` declares it on half, as RSS,
   Bluesky and Mastodon often do;
2. ``raw``: a plain nats-py pull consumer fetches every mention in batches and acks each one: the
   ceiling for any consumer of that stream on this machine;
3. ``classifier``: the real classifier service (its composition root, batch consumer with its
   dead-letter checks, spike-detection counters flushed to KV once per batch, detector ticks)
   consumes the same backlog: consumed, classified, published to the classified stream (stream
   acks awaited), counted and acked; ``--batch-size`` sets the fetch size;
4. ``cpu``: the classification alone (language, sentiment, watch matching, story id, terms) in a
   loop, no NATS: the CPU ceiling of one Python process.

Prints a table and writes ``bench/results/classifier.json`` (rates in mentions per second, the
ratio of the classifier to the raw consume-and-ack rate, the load average at start and end, and
``language_paths``: how many texts of the classifier run each language-detection step decided,
``quick`` and ``full`` being lingua's low-accuracy and full models). ``--profile`` also writes a pyinstrument
profile of the classifier run.

Usage::

    .venv/bin/python bench/classifier_bench.py [--mentions 20000] [--declared-lang 0] [--batch-size 500] [--profile]

``classifier_per_s`` is the sustained rate, from the service started (connected, topology and KV
declared, models loaded) to the backlog drained and acked; ``classifier_per_s_with_start`` also
counts the start, which ``classifier_start_seconds`` gives on its own. ``classifier_cpu_us_per_mention``
is the CPU time the service's process spent per mention (user + system, all its work: fetch,
decode, classify, publish, counters, acks) and ``classifier_cpu_share`` the share of the wall time
it was on a CPU: below 1, it waited (for the server, or for a CPU another process held). On a shared 2-core machine
take the best of a few runs and quote the load average the JSON records.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
from corpus import tweets_with_language  # bench/ is on sys.path when run as a script
from nats.js import JetStreamContext

from services.classifier.app import create_app
from services.classifier.logic import Classifier
from services.classifier.surges import mention_terms
from veille import bus
from veille.config import parse_config
from veille.language import PATHS, detect_language, preload
from veille.logging import configure_logging
from veille.metrics import ServiceMetrics
from veille.models import MentionIngested, Sentiment, utcnow
from veille.natsserver import NatsServerProcess
from veille.sentiment import make_backend
from veille.service import settle_collector
from veille.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sentiment"
OUT = ROOT / "bench" / "results" / "classifier.json"
BRANDS = ["Acme", "Globex", "Initech", "Hooli", "Umbrella", "Renault", "Danone", "Orange", "Decathlon", "Doctolib"]
CONFIG = "version: 1\nwatches:\n" + "".join(
    f"  - name: {b.lower()}\n    query: '{b.lower()} OR \"{b} Corp\"'\n" for b in BRANDS
)


def texts() -> list[tuple[str, str]]:
    """(text, language) of the real English and French dev tweets; stops with a message when absent."""
    return tweets_with_language(DATA)


def make_mentions(n: int, declared: float, seed: int = 1) -> list[MentionIngested]:
    """``n`` mentions: 80 % name a brand, 20 % are syndicated copies of an earlier one."""
    rng = random.Random(seed)
    corpus = texts()
    now = utcnow()
    out: list[MentionIngested] = []
    for i in range(n):
        if out and rng.random() < 0.2:
            base = rng.choice(out[-200:])
            text, lang = base.text, base.lang
        else:
            text, lang = rng.choice(corpus)
            if rng.random() < 0.8:
                text = f"{rng.choice(BRANDS)} {text}"
            lang = lang if rng.random() < declared else None
        out.append(
            MentionIngested(
                id=f"bench:{i}",
                source=rng.choice(("rss", "bluesky", "mastodon", "hackernews")),
                url=f"https://site{i % 97}.example/p/{i}",
                site=f"site{i % 97}.example",
                text=text,
                lang=lang,
                ingested_at=now + timedelta(milliseconds=i),
            )
        )
    return out


async def publish(js: JetStreamContext, mentions: list[MentionIngested]) -> float:
    """Publish the mentions (async publish, acks gathered in chunks); return the rate."""
    started = time.perf_counter()
    for k in range(0, len(mentions), 2000):
        futures = [
            await js.publish_async(
                bus.mention_subject(m.source), m.model_dump_json().encode(), headers={"Nats-Msg-Id": m.id}
            )
            for m in mentions[k : k + 2000]
        ]
        await asyncio.gather(*futures)
    return len(mentions) / (time.perf_counter() - started)


async def raw_consume_ack(js: JetStreamContext, n: int) -> float:
    """Fetch and ack ``n`` mentions with a plain nats-py durable pull consumer; return the rate."""
    sub = await js.pull_subscribe(f"{bus.PREFIX}.mentions.ingested.>", durable="bench-raw", stream=bus.MENTIONS.name)
    done = 0
    started = time.perf_counter()
    while done < n:
        msgs = await sub.fetch(500, timeout=5)
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    rate = n / (time.perf_counter() - started)
    await sub.unsubscribe()
    await js.delete_consumer(bus.MENTIONS.name, "bench-raw")
    return rate


async def classifier_run(url: str, js: JetStreamContext, n: int, batch_size: int) -> dict[str, Any]:
    """Run the classifier service over the backlog of ``n`` mentions; return its rate and counters."""
    metrics = ServiceMetrics("classifier")
    app = create_app(ServiceSettings(nats_url=url), config=parse_config(CONFIG), metrics=metrics, batch_size=batch_size)
    consumer = bus.CLASSIFIER_CONSUMER
    started = time.perf_counter()
    await app.start()
    settle_collector()  # as `veille run classifier` does once started (veille.service.serve)
    running = time.perf_counter()
    cpu_started = time.process_time()
    try:
        while True:
            info = await js.consumer_info(consumer.stream, consumer.durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.02)
        finished = time.perf_counter()
        cpu = time.process_time() - cpu_started
        elapsed = finished - running
        classified = (await js.stream_info(bus.CLASSIFIED.name)).state.messages
        flushes = app.detection_metrics.flushes._value.get()
        processed = {
            sample.labels["outcome"]: sample.value
            for metric in metrics.messages.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        }
    finally:
        await app.stop()
    return {
        "rate": n / elapsed,
        "rate_with_start": n / (finished - started),
        "cpu_us_per_mention": cpu / n * 1e6,
        "cpu_share": cpu / elapsed,
        "start_seconds": running - started,
        "seconds": elapsed,
        "classified": classified,
        "kv_flushes": flushes,
        "processed": processed,
    }


def cpu_only(mentions: list[MentionIngested]) -> float:
    """Classify in a loop without NATS (language, sentiment, watches, story, terms); return the rate."""
    backend = make_backend()

    def score(text: str, lang: str | None) -> tuple[Sentiment, float]:
        found = backend.analyze(text, lang)
        return found.label, found.score

    classifier = Classifier(parse_config(CONFIG), score, detect_language, terms=mention_terms)
    started = time.perf_counter()
    for m in mentions:
        classifier.classify(m)
    return len(mentions) / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measure on one fresh nats-server and return the results."""
    load_at_start = os.getloadavg()[0]
    configure_logging("classifier", level="warning", fmt="json")
    preload()
    mentions = make_mentions(args.mentions, args.declared_lang)
    cpu = cpu_only(mentions)
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServerProcess(store_dir=Path(tmp) / "store", log_file=Path(tmp) / "nats.log")
        server.start()
        try:
            client = await nats.connect(server.url)
            js = client.jetstream()
            await bus.ensure_topology(js)
            publish_rate = await publish(js, mentions)
            raw = await raw_consume_ack(js, len(mentions))
            if args.profile:
                try:
                    from pyinstrument import Profiler
                except ImportError:
                    raise SystemExit(
                        "--profile needs pyinstrument (in the dev extra): .venv/bin/pip install -e '.[dev]'"
                    ) from None

                profiler = Profiler(async_mode="enabled")
                profiler.start()
            PATHS.clear()
            run = await classifier_run(server.url, js, len(mentions), args.batch_size)
            paths = dict(PATHS)
            if args.profile:
                profiler.stop()
                target = OUT.with_suffix(".profile.txt")
                target.write_text(profiler.output_text(unicode=True, show_all=True), encoding="utf-8")
                print(f"profile written to {target}")
            await client.close()
        finally:
            server.stop()
    return {
        "benchmark": "classifier",
        "mentions": len(mentions),
        "declared_lang_share": args.declared_lang,
        "batch_size": args.batch_size,
        "publish_per_s": round(publish_rate),
        "raw_consume_ack_per_s": round(raw),
        "classifier_per_s": round(run["rate"]),
        "classifier_seconds": round(run["seconds"], 2),
        "classifier_start_seconds": round(run["start_seconds"], 2),
        "classifier_per_s_with_start": round(run["rate_with_start"]),
        "classifier_cpu_us_per_mention": round(run["cpu_us_per_mention"], 1),
        "classifier_cpu_bound_per_s": round(1e6 / run["cpu_us_per_mention"]),
        "classifier_cpu_share": round(run["cpu_share"], 2),
        "classified_published": run["classified"],
        "kv_counter_flushes": run["kv_flushes"],
        "messages_processed": run["processed"],
        "ratio_to_raw": round(run["rate"] / raw, 3),
        "cpu_only_classify_per_s": round(cpu),
        "language_paths": paths,
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(load_at_start, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mentions", type=int, default=20_000)
    parser.add_argument("--declared-lang", type=float, default=0.0, help="Share of mentions with a declared language.")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=OUT)
    result = asyncio.run(main(parser.parse_args()))
    for key, value in result.items():
        print(f"{key:>26}  {value}")
    parser.parse_args().output.parent.mkdir(parents=True, exist_ok=True)
    parser.parse_args().output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
