"""Run every benchmark in ``bench/``, gather their JSON into one file and write ``docs/benchmarks.md``.

Each ``bench/*.py`` script (except this one) runs in turn with the arguments below (the default run
takes a few minutes; ``--full`` gives the memory benchmark a real hour), writes its JSON to
``bench/results/``; this script then writes ``bench/results/all.json`` (the machine, what ran, every
result) and a short table in ``docs/benchmarks.md``.

Usage::

    PYTHONPATH=shared:. python bench/run_all.py [--full] [--only e2e_bench,memory_bench] [--skip nab_eval]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
DOC = ROOT / "docs" / "benchmarks.md"
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

# Arguments of each script in the default (few minutes) run and in the --full run.
NOT_BENCHMARKS = {"run_all", "__init__", "corpus", "archive_corpus", "notifier_vs_alertmanager"}
"""Modules in bench/ that are not benchmarks: this runner, the corpora, an alias of notifier_bench."""
QUICK: dict[str, list[str]] = {
    "nab_eval": ["--note", "make bench"],
    "memory_bench": ["--duration", "120", "--accel", "30"],
    # the 10M-mention PostgreSQL archive takes about 45 minutes to build the first time (then cached
    # under /var/tmp/veille-bench): --full measures it, the quick run the 1M SQLite archive only
    "archive_scale_bench": ["--postgresql", "0", "--no-top"],
}
FULL: dict[str, list[str]] = {
    "nab_eval": ["--note", "make bench --full"],
    "memory_bench": ["--duration", "3600", "--accel", "1"],
}
RESULT_FILE = {
    "nab_eval": "nab.json",
    "sentiment_eval": "sentiment.json",
    "query_bench": "query.json",
    "classifier_bench": "classifier.json",
    "e2e_bench": "e2e.json",
    "memory_bench": "memory.json",
    "archive_scale_bench": "archive_scale.json",
    "notifier_bench": "notifier.json",
    "archive_bench": "archive_bench.json",
}


def machine() -> dict[str, Any]:
    """The machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    mem_gib = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    from veille.natsserver import find_nats_server

    try:
        nats_version = subprocess.run(
            [find_nats_server(), "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except (OSError, FileNotFoundError):
        nats_version = "unknown"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "nats_server": nats_version,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def scripts() -> list[str]:
    """Every benchmark script, by name."""
    return sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in NOT_BENCHMARKS)


def run(name: str, full: bool) -> dict[str, Any]:
    """Run one script; return how it went."""
    args = (FULL if full else QUICK).get(name, [])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
    print(f"== {name} {' '.join(args)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), *args], cwd=ROOT, env=env, check=False)
    return {"args": args, "exit_code": proc.returncode, "seconds": round(time.perf_counter() - started, 1)}


def load(name: str) -> Any:
    """The JSON a script wrote (None when absent)."""
    path = RESULTS / RESULT_FILE.get(name, f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _f(value: Any, fmt: str = ",.0f") -> str:
    return "–" if value is None else format(value, fmt)


def markdown(all_results: dict[str, Any]) -> str:
    """The short report in docs/benchmarks.md."""
    m = all_results["machine"]
    r = all_results["results"]
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run_all.py`); every figure is in `bench/results/all.json`.",
        "Tests never assert on timings: these numbers are measured here, on this machine, in one run.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}, "
        f"{m['nats_server']}; {m['date']}.",
        "",
    ]
    e2e = r.get("e2e_bench")
    if e2e:
        c = e2e["ceiling"]
        s = e2e["services"]
        out += [
            "## Throughput (mentions or alerts per second, one process each)",
            "",
            "| what | per second | vs raw consume-and-ack |",
            "|---|---:|---:|",
            f"| raw nats-py publish (ceiling) | {_f(c['publish_per_s'])} | |",
            f"| raw nats-py consume-and-ack (ceiling) | {_f(c['consume_ack_per_s'])} | 1.00 |",
            f"| ingest-rss (feed to mentions) | {_f(s['ingest-rss']['per_s'])} | "
            f"{_f(s['ingest-rss']['per_s'] / c['consume_ack_per_s'], '.2f')} |",
            f"| classifier | {_f(s['classifier']['per_s'])} | {_f(s['classifier']['vs_consume_ceiling'], '.3f')} |",
            f"| notifier (alerts to decisions) | {_f(s['notifier']['per_s'])} | "
            f"{_f(s['notifier']['vs_consume_ceiling'], '.3f')} |",
            f"| end to end (feed to notification decision) | {_f(e2e['e2e']['e2e_per_s'])} | "
            f"{_f(e2e['e2e']['vs_consume_ceiling'], '.3f')} |",
            "",
            "## Latency, mention published to webhook received (ms)",
            "",
        ]
        out += _latency_section(r.get("e2e_latency") or {"latency": e2e["latency"]})
    mem = r.get("memory_bench")
    if mem:
        out += [
            f"## Memory: {mem['simulated_hours']} simulated hour(s) of traffic, {mem['watches']} watches, "
            f"{_f(mem['rate_per_s'])} mentions/s for {_f(mem['duration_s'])} s",
            "",
            "| service | RSS start | after warm-up | end | max | slope, 2nd half (MiB/h) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, f in mem["services"].items():
            out.append(
                f"| {name} | {f['rss_mb_start']} | {f['rss_mb_after_warmup']} | {f['rss_mb_end']} | "
                f"{f['rss_mb_max']} | {f['slope_second_half_mb_per_hour']} |"
            )
        out += [""]
        hostile = mem.get("hostile")
        if hostile:
            offered = hostile["bytes_offered"]
            requests = hostile["requests"]
            out += [
                "Hostile peers ran beside that traffic (ingest-rss's figure includes its parser workers): "
                f"an endless-body receiver ({requests.get('endless', 0)} deliveries, "
                f"{offered.get('endless', 0) / 2**20:,.0f} MiB offered), a receiver trickling a byte a second "
                f"({requests.get('trickle', 0)} deliveries), a receiver redirecting to another host "
                f"({requests.get('redirect', 0)} deliveries, {hostile['followed_redirects']} redirects followed), "
                f"a feed of 100,000 attributes ({requests.get('feed-hostile', 0)} polls) and an honest feed of "
                f"3,000 entries ({requests.get('feed-big', 0)} polls).",
                "",
            ]
    if r.get("notifier_bench"):
        from notifier_bench import markdown_section  # bench/ is on sys.path when run as a script

        out += markdown_section(r["notifier_bench"])
    if r.get("archive_bench"):
        from archive_bench import markdown_section as archive_section

        out += archive_section(r["archive_bench"])
    if r.get("archive_scale_bench"):
        from archive_scale_bench import markdown_section as archive_scale_section

        out += archive_scale_section(r["archive_scale_bench"])
    if r.get("console_bench"):
        from console_bench import markdown_section as console_section

        out += console_section(r["console_bench"])
    out += _quality_sections(r)
    others = [
        ("classifier_bench", "classifier bench"),
        ("query_bench", "query bench"),
        ("sentiment_eval", "sentiment eval"),
        ("nab_eval", "NAB eval"),
    ]
    present = [(k, label) for k, label in others if r.get(k) is not None]
    if present:
        out += ["## Other benchmarks", ""]
        out += [f"- {label}: `bench/results/{RESULT_FILE[k]}`" for k, label in present]
        out += [""]
    if NOTES_FILE.exists():
        out += [NOTES_FILE.read_text(encoding="utf-8").strip(), ""]
    runs = all_results["runs"]
    out += ["Runs: " + ", ".join(f"{k} {v['seconds']} s (exit {v['exit_code']})" for k, v in runs.items()) + "."]
    return "\n".join(out) + "\n"


def _latency_section(lat: dict[str, Any]) -> list[str]:
    """One row per latency run (``e2e_bench.py --latency-only`` when it ran: every run, with its load)."""
    out: list[str] = []
    if lat.get("command"):
        out += [
            f"Command: `{lat['command']}`; {lat.get('corpus', '')}; one fresh nats-server, classifier and notifier "
            "per run, the rates interleaved. Kept up: the rate achieved and, when publishing ended, each stage's "
            "backlog under one second of traffic. Lag: mentions waiting for the classifier, alerts for the notifier. "
            "≥: not drained within 60 s of the end of publishing, so the percentiles are over the alerts raised by "
            "then and are lower bounds.",
            "",
        ]
    out += [
        "| run | rate (target / achieved per s) | alerts | p50 | p95 | p99 | kept up "
        "| lag at end (classifier, notifier) "
        "| load average (1 min) start, end |",
        "|---:|---|---:|---:|---:|---:|---|---|---|",
    ]
    for row in lat.get("latency", []):
        lag = row.get("lag_at_end") or {}
        load = [row.get("loadavg_start", [None])[0], row.get("loadavg_end", [None])[0]]
        # Not drained in the bench's time: the percentiles are of the alerts raised by then (lower bounds).
        at_least = "≥ " if row.get("complete") is False else ""
        out.append(
            f"| {row.get('run', 1)} | {_f(row['target_per_s'])} / {_f(row['achieved_per_s'])} | {row['alerts']} | "
            + " | ".join(_bound(at_least, row[k]) for k in ("p50_ms", "p95_ms", "p99_ms"))
            + " | "
            + f"{'yes' if row.get('kept_up') else ('no' if 'kept_up' in row else '–')} | "
            f"{_f(lag.get('classifier'))}, {_f(lag.get('notifier'))} | {_f(load[0], '.1f')}, {_f(load[1], '.1f')} |"
        )
    goals = lat.get("goals") or {}
    if goals:
        out.append("")
    for name, goal in goals.items():
        out.append(f"- `{name}`: {goal['passed']} of {goal['runs']} runs; met: {'yes' if goal['met'] else 'no'}")
    return [*out, ""]


def _bound(prefix: str, value: float | None) -> str:
    """A latency with its lower-bound mark; "–" alone when past the bench's drain time."""
    return "–" if value is None else f"{prefix}{_f(value)}"


def _quality_sections(r: dict[str, Any]) -> list[str]:
    """Tables for the classifier bench, detection quality (NAB, sentiment) and query matching."""
    out: list[str] = []
    cls = r.get("classifier_bench") or {}
    if cls.get("classifier_per_s"):
        out += [
            f"## Classifier alone (`bench/classifier_bench.py`, a backlog of {_f(cls.get('mentions', 0))} mentions)",
            "",
            "| what | per second |",
            "|---|---:|",
            f"| raw nats-py consume-and-ack (ceiling, same run) | {_f(cls.get('raw_consume_ack_per_s', 0))} |",
            f"| classifier: consumed, classified, published, acked | {_f(cls['classifier_per_s'])} "
            f"({cls.get('ratio_to_raw', 0)} of the ceiling) |",
            f"| classification alone, no NATS | {_f(cls.get('cpu_only_classify_per_s', 0))} |",
        ]
        if cls.get("classifier_cpu_us_per_mention"):
            out += [
                f"| classifier if it had a core to itself (1 / its CPU time per mention: "
                f"{cls['classifier_cpu_us_per_mention']} µs; it was on a CPU {cls.get('classifier_cpu_share')} "
                f"of the run) | {_f(cls.get('classifier_cpu_bound_per_s', 0))} |",
            ]
        out += [""]
    out += _nab_section(r.get("nab_eval") or {})
    out += _sentiment_section(r.get("sentiment_eval") or {})
    match = (r.get("query_bench") or {}).get("matching") or {}
    if match:
        stories = (r.get("query_bench") or {}).get("stories") or {}
        out += [
            f"## Query matching: {_f(match.get('watches', 0))} watches against real tweets",
            "",
            f"- `WatchIndex.match`: {_f(match.get('index_posts_per_s', 0))} posts/s, "
            f"{match.get('index_vs_naive', 0):.0f}x checking every query, "
            f"{match.get('mismatches_index_vs_naive', 0)} disagreements with it",
            f"- near-duplicate stories: {_f(stories.get('assign_per_s', 0))} mentions/s",
            "",
        ]
    return out


def _nab_section(nab: dict[str, Any]) -> list[str]:
    """The spike detection section: protocol, cross-validated and plain dev figures, baselines, nab/other."""
    dev, other = nab.get("dev") or {}, nab.get("other") or {}
    if not dev:
        return []
    profiles = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

    def row(label: str, d: dict[str, float]) -> str:
        return f"| {label} | " + " | ".join(f"{d.get(p, 0):.1f}" for p in profiles) + " |"

    cv, ewma = dev.get("cross_validated") or {}, dev.get("ewma_cross_validated") or {}
    names = {
        "ARTime": "ARTime",
        "contextOSE": "CAD OSE",
        "numenta": "Numenta HTM",
        "windowedGaussian": "Windowed Gaussian",
    }
    out = [
        "## Spike detection: NAB (normalised scores; null detector 0, perfect 100)",
        "",
        f"Protocol: {nab.get('protocol', '')}; grid `fire_threshold` {nab.get('thresholds_tried')} x "
        f"`dispersion_clip_sigma` {nab.get('dispersion_clips_tried')} x `dispersion_half_life` (days) "
        f"{nab.get('dispersion_half_lives_days_tried')}; chosen per held-out file {cv.get('chosen')}; defaults "
        f"{nab.get('default_settings')}. The dev scores have been looked at **{nab.get('looks_at_dev_scores')} "
        "times** (`bench/nab_looks.txt`, one line per run of `bench/nab_eval.py`, `make bench` included).",
        "",
        "### realTweets dev series (AAPL, AMZN, CRM, CVS, FB: 16 windows)",
        "",
        "| detector | standard | low FP | low FN |",
        "|---|---:|---:|---:|",
        row("veille, nested leave-one-file-out (upper bound: see below)", cv.get("normalised") or {}),
        row(
            "veille, plain dev figure (in-sample: the design was shaped on these files)",
            dev.get("plain_in_sample") or {},
        ),
        row("EWMA z-score baseline (`bench/nab_eval.py`), leave-one-file-out", ewma.get("normalised") or {}),
    ]
    for key, label in names.items():
        if len((dev.get("published") or {}).get(key, {})) == 3:
            out.append(row(f"{label} (published, thresholds tuned on all of NAB)", dev["published"][key]))
    out += [
        "",
        f"### nab/other: 48 files of NAB's other categories, 83 windows, same defaults "
        f"({other.get('alerts', 0)} alerts); no setting chosen on it, one change rejected after seeing it",
        "",
        "| detector | standard | low FP | low FN |",
        "|---|---:|---:|---:|",
        row("veille (bucket and counts/measurements fitted to each file's format)", other.get("veille") or {}),
        row(
            f"EWMA z-score baseline (threshold {other.get('ewma_threshold')}, from the dev protocol)",
            other.get("ewma") or {},
        ),
    ]
    for key, label in names.items():
        if len((other.get("published") or {}).get(key, {})) == 3:
            out.append(row(f"{label} (published)", other["published"][key]))
    cats = other.get("per_category_standard") or {}
    if cats:
        out += ["", "veille per category (standard): " + ", ".join(f"{k} {v:.1f}" for k, v in cats.items()) + "."]
    out += ["", *NAB_READING, ""]
    return out


NAB_READING = [
    "**How to read these figures.** The cross-validated dev figure is an *upper bound*, not an estimate of",
    "quality on new series: only the grid above was chosen inside the protocol, while the rest of the",
    "detector (its scales, `min_ratio`, `min_excess`, half-lives and clips) was fixed on these same five",
    "files before the protocol existed. Measured outside the project on five unseen realTweets series",
    "(issue 12, the earlier defaults): 45.1 standard, where an EWMA z-score baseline scored 63.4 and ARTime",
    "80.0. The goals (>= 82 there, never below EWMA, >= 60 on nab/other) are not shown to be met. The",
    "nab/other gain (12.3 with 9 files refused, to the figure above) comes from reading every file",
    "(`--on-duplicate skip`, the bucket set to the file's sampling period, measurements of any sign",
    "scored on rises and drops, whole numbers less variable than event counts read as measurements) and",
    "the 14-day dispersion memory, not from tuning. Looks, in order",
    "(`bench/nab_looks.txt`): 1 the old defaults; 2 a change point after `adapt_after` (dev unchanged,",
    "nab/other 44.0: rejected on nab/other); 3 old defaults; 4 a robust 3-sigma dispersion clip (dev 78.9",
    "in-sample); 5 a 30-minute scale (cross-validated 67.2); 6 a 20-point grid with 3- or 14-day dispersion",
    "memory; 7 its choice; 8 a two-day warm-up for measurements (counts unchanged); 9-11 diagnostics of",
    "each dev window's margin and the false alarms' ratios; 12 the 14-day memory fixed by reason; 13",
    "whole numbers less variable than Poisson read as measurements (dev unchanged; these figures); later",
    "lines are `make bench` runs.",
]


def _sentiment_section(sent: dict[str, Any]) -> list[str]:
    """The sentiment table: nested cross-validated estimates, the dev figure with its looks, baselines."""
    langs = sent.get("languages") or {}
    if not langs:
        return []
    looks = sent.get("en_dev_looks", "?")
    out = [
        "## Sentiment: English and French tweets, 3 classes (`bench/sentiment_eval.py`)",
        "",
        "The default backend is a linear model per language over word and character n-grams and word-list "
        "evidence, learned from labelled tweets (`make train`; `shared/veille/sentiment/model/README.md`), "
        "with a decision rule (a bias on the negative class's log-odds) that maximises the least of macro "
        "recall, negative recall and negative precision at equal class shares. Protocol: nested 5-fold "
        "cross-validation on each language's training file only (English: `en_tweets_train.csv`, 48,273 "
        "SemEval tweets; French: `fr_tweets_dev.csv`, 2,163 tweets, all the French data, so no French dev "
        "figure): for each outer fold the bias is chosen on the other folds, each scored by a model that "
        "never saw it nor the outer fold; no tweet's label touches the model or the rule that scores it. "
        f"`en_tweets_dev.csv` (2,000) was never trained on; its figure has been looked at {looks} time(s) "
        "(`bench/sentiment_looks.txt`, one line per look, `make bench` included). Negative precision "
        "depends on the share of negative tweets (15.5% in the English training file, a third in the "
        "French file; the deployment's shares are unknown): it is given at the file's shares and at equal "
        "shares. The old lexicon backend's dev figures are in sample (it was shaped on those files) and "
        "labelled so. Goals (on the unseen test splits): macro recall en 65, fr 62; negative precision "
        "and recall 60.",
        "",
        "| language | system | measured on | macro recall | negative precision | negative precision, equal shares "
        "| negative recall |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for lang, res in langs.items():
        cv = res.get("linear_cv", {})
        rows = [
            (
                "veille linear (default)",
                f"{cv.get('folds', 5)}-fold nested CV, {_f(cv.get('rows', 0))} tweets, rule chosen inside",
                cv,
            ),
            ("veille linear, no bias", "same folds, plain most probable class", res.get("linear_cv_no_bias", {})),
        ]
        if "linear_dev" in res:
            rows.append(
                ("veille linear (default)", f"dev, 2,000 tweets, never trained on (look {looks})", res["linear_dev"])
            )
        rows.append(
            ("veille lexicon (old default)", "dev, **in sample** (shaped on it)", res.get("lexicon_dev_in_sample", {}))
        )
        vader = "VADER as packaged" if lang == "en" else "vadersentiment-fr as packaged"
        rows.append((vader, "dev", res.get("vader_dev", {})))
        for name, on, sc in rows:
            out.append(
                f"| {lang} | {name} | {on} | {sc.get('macro_recall', 0):.1f} | "
                f"{sc.get('negative_precision', 0):.1f} | {sc.get('negative_precision_equal_shares', 0):.1f} | "
                f"{sc.get('negative_recall', 0):.1f} |"
            )
    out += [
        "",
        "Texts per second of CPU time on one core, the linear model, the lexicon backend and VADER measured in "
        "turns, round after round, on the same tweets (English: the SemEval training tweets, texts only; "
        "French: the 2,163 French tweets); medians of the rounds, the load average beside. **Steady state** "
        "is what a running classifier gets: every memo emptied, warmed by a stream of real tweets (English "
        "30,000, French 1,000), then one pass over other tweets, never seen (new texts, known words). "
        "**Cold**: memos emptied, one pass over unseen tweets. **Warm**: the steady-state tweets again "
        "(seen before; the figure this table gave until 2026-11-29, 22,385 en / 34,126 fr at load 7-14). "
        "The linear scorer looks up each whitespace-separated chunk once (its weights summed in C), joins a "
        "new chunk from its remembered pieces and tokens, and keeps its memos bounded (two generations: "
        "what the stream repeats stays); its scores are the dot product of the training features to 1e-9 "
        "on real tweets, cold, warm and with tiny memos (`tests/unit/test_sentiment_linear.py`). Against the "
        "previous scorer (a memo per token, cleared when full), same tweets, in turns, load 6-7 (2026-11-29): "
        "steady state 1.58 (English) and 1.31 (French) times as many texts per second, cold 1.95 and 1.32. "
        "The goal (issue 12: 20,000 texts/s on one core, on texts never seen) is **not met** on this shared, "
        "loaded 2-core machine: only the warm figure reaches it. A new text's cost is its memo misses: about "
        "one English tweet chunk in ten is new after 30,000 tweets (a new word, or a known word with new "
        "punctuation), and a new word costs its character n-gram lookups; French, warmed by only 1,000 "
        "tweets, misses far more.",
        "",
        "| language | linear steady | linear cold | linear warm | lexicon steady | lexicon cold | lexicon warm "
        "| VADER | linear / lexicon, steady | detect language + linear | load average |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for lang, res in langs.items():
        sp = res.get("texts_per_second", {})
        load = sp.get("load_average_1min") or []
        out.append(
            f"| {lang} | {_f(sp.get('linear_steady', 0))} | {_f(sp.get('linear_cold', 0))} | "
            f"{_f(sp.get('linear_warm', 0))} | {_f(sp.get('lexicon_steady', 0))} | {_f(sp.get('lexicon_cold', 0))} | "
            f"{_f(sp.get('lexicon_warm', 0))} | {_f(sp.get('vader_steady', 0))} | "
            f"{sp.get('linear_over_lexicon_steady', 0):.2f} | {_f(sp.get('detect_and_linear', 0))} | "
            f"{'-'.join(f'{x:.1f}' for x in load)} |"
        )
    return [*out, ""]


NOTES_FILE = BENCH / "benchmarks_notes.md"


def main() -> None:
    """Run the benchmarks, gather the results, write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the long run: a real hour of memory traffic")
    parser.add_argument("--only", default="", help="comma-separated scripts to run (default: all)")
    parser.add_argument("--skip", default="", help="comma-separated scripts not to run")
    parser.add_argument("--no-run", action="store_true", help="only gather existing results and write the report")
    args = parser.parse_args()
    names = scripts()
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    names = [n for n in names if n not in args.skip.split(",")]
    previous = RESULTS / "all.json"
    if args.no_run:
        runs = json.loads(previous.read_text(encoding="utf-8")).get("runs", {}) if previous.exists() else {}
    else:
        runs = {name: run(name, args.full) for name in names}
    all_results = {
        "machine": machine(),
        "runs": runs,
        "results": {name: load(name) for name in scripts()},
    }
    latency_runs = RESULTS / "e2e_latency.json"  # e2e_bench.py --latency-only, run by hand (several runs)
    if latency_runs.exists():
        all_results["results"]["e2e_latency"] = json.loads(latency_runs.read_text(encoding="utf-8"))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "all.json").write_text(json.dumps(all_results, indent=2) + "\n", encoding="utf-8")
    DOC.write_text(markdown(all_results), encoding="utf-8")
    print(f"wrote {RESULTS / 'all.json'} and {DOC}")
    failed = [k for k, v in runs.items() if v["exit_code"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
