"""Memory of each service under an hour (or ``--duration`` seconds) of simulated traffic with 1,000 watches.

Runs nats-server, the classifier and the notifier as ``veille up`` runs them, with 1,000 realistic
watch queries (the query benchmark's generator), and publishes mentions at ``--rate`` per second for
``--duration`` seconds of wall time. Simulated time runs ``--accel`` times faster than the wall clock:
each mention's ``ingested_at`` advances ``accel`` seconds per second and ends at "now", so the
classifier's per-watch buckets, KV counters and detector steps go through ``duration x accel``
seconds of traffic (the default 120 s x 30 is one simulated hour). The resident set size of each
service is sampled from ``/proc`` every ``--sample`` seconds.

Writes ``bench/results/memory.json``. Usage::

    PYTHONPATH=shared:. python bench/memory_bench.py [--duration 120] [--accel 30] [--rate 300]
    PYTHONPATH=shared:. python bench/memory_bench.py --duration 3600 --accel 1   # a real hour
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT), str(ROOT / "bench")]

import nats  # noqa: E402
from e2e_bench import Sink  # noqa: E402
from query_bench import DEFAULT_DATA, build_posts, build_watches, load_tweets  # noqa: E402

from tests.faults.harness import SECRET, Stack  # noqa: E402
from veille import bus  # noqa: E402
from veille.models import MentionIngested  # noqa: E402
from veille.natsserver import NatsServerProcess  # noqa: E402

OUT = ROOT / "bench" / "results" / "memory.json"


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (None if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def write_config(path: Path, watches: dict[str, str], hook_url: str) -> None:
    """The 1,000 watches and one webhook receiver grouping by watch and kind."""
    lines = ["version: 1", "watches:"]
    for raw, query in watches.items():
        name = re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[:64]
        lines += [f"  - name: {json.dumps(name)}", f"    query: {json.dumps(query, ensure_ascii=False)}"]
    lines += [
        "receivers:",
        "  - name: crm",
        "    webhook:",
        f"      - url: {hook_url}",
        f"        secret: {SECRET}",
        "route:",
        "  receiver: crm",
        "  group_by: [watch, kind]",
        "  group_wait: 30s",
        "  group_interval: 5m",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def slope_mb_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MiB) points, in MiB per hour."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / var * 3600


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the traffic, sample memory, return the figures."""
    rng = random.Random(args.seed)
    watches = build_watches(args.watches, rng)
    docs = build_posts(20_000, load_tweets(DEFAULT_DATA), rng)
    tmp = Path(tempfile.mkdtemp(prefix="veille-memory-"))
    server = NatsServerProcess(store_dir=tmp / "store", log_file=tmp / "nats.log")
    server.start()
    sink = Sink()
    await sink.start()
    write_config(tmp / "veille.yaml", watches, sink.url)
    nc = await nats.connect(server.url, max_reconnect_attempts=-1)
    js = nc.jetstream()
    await bus.ensure_topology(js)
    stack = Stack([server.url], tmp / "veille.yaml", tmp)
    await stack.start(["classifier", "notifier"])
    samples: dict[str, list[tuple[float, float]]] = {"classifier": [], "notifier": [], "nats-server": []}
    sim_span = timedelta(seconds=args.duration * args.accel)
    sim_start = datetime.now(UTC) - sim_span
    published = 0
    started = time.perf_counter()
    next_sample = started
    pending: set[asyncio.Task[Any]] = set()
    try:
        while (elapsed := time.perf_counter() - started) < args.duration:
            due = int(elapsed * args.rate)
            while published < due:
                doc = docs[published % len(docs)]
                mention = MentionIngested(
                    id=f"mem:{published}",
                    source=doc.source,
                    text=doc.text,
                    title=doc.title,
                    url=doc.url,  # type: ignore[arg-type]
                    site=doc.site,
                    author=doc.author,
                    lang=doc.lang or None,
                    ingested_at=sim_start + timedelta(seconds=elapsed * args.accel),
                )
                task = asyncio.create_task(
                    js.publish(
                        bus.mention_subject(mention.source),
                        mention.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": mention.id},
                    )
                )
                pending.add(task)
                task.add_done_callback(pending.discard)
                published += 1
            if time.perf_counter() >= next_sample:
                for name, child in stack.children().items():
                    if child.process is not None and (mb := rss_mb(child.process.pid)) is not None:
                        samples[name].append((elapsed, mb))
                if server.process is not None and (mb := rss_mb(server.process.pid)) is not None:
                    samples["nats-server"].append((elapsed, mb))
                next_sample += args.sample
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending)
        info = await js.consumer_info(bus.CLASSIFIER_CONSUMER.stream, bus.CLASSIFIER_CONSUMER.durable)
        lag = info.num_pending
        classified = (await js.stream_info(bus.CLASSIFIED.name)).state.messages
    finally:
        await stack.stop()
        await nc.close()
        await sink.stop()
        server.stop()
    out: dict[str, Any] = {
        "duration_s": args.duration,
        "accel": args.accel,
        "simulated_hours": round(args.duration * args.accel / 3600, 2),
        "watches": len(watches),
        "rate_per_s": args.rate,
        "published": published,
        "classified": classified,
        "classifier_lag_at_end": lag,
        "services": {},
    }
    for name, points in samples.items():
        if not points:
            continue
        warm = [p for p in points if p[0] >= args.duration * 0.2]
        second_half = [p for p in points if p[0] >= args.duration / 2]
        out["services"][name] = {
            "rss_mb_start": round(points[0][1], 1),
            "rss_mb_after_warmup": round(warm[0][1], 1) if warm else None,
            "rss_mb_end": round(points[-1][1], 1),
            "rss_mb_max": round(max(v for _, v in points), 1),
            "growth_after_warmup_mb": round(points[-1][1] - warm[0][1], 1) if warm else None,
            "slope_second_half_mb_per_hour": (
                round(s, 1) if (s := slope_mb_per_hour(second_half)) is not None else None
            ),
            "samples": [(round(t, 1), round(v, 1)) for t, v in points],
        }
    return out


def main() -> None:
    """Run the memory benchmark and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120.0, help="wall-clock seconds of traffic")
    parser.add_argument("--accel", type=float, default=30.0, help="simulated seconds per wall-clock second")
    parser.add_argument("--rate", type=float, default=300.0, help="mentions per wall-clock second")
    parser.add_argument("--watches", type=int, default=1000)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for name, figures in result["services"].items():
        print(
            f"{name:>12}: {figures['rss_mb_start']} -> {figures['rss_mb_end']} MiB "
            f"(after warm-up {figures['rss_mb_after_warmup']}, slope {figures['slope_second_half_mb_per_hour']} MiB/h)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
