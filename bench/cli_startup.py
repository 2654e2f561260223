"""How long the ``veille`` command takes to answer: the start-up cost of each everyday command.

Each command runs ``--repeat`` times as a fresh process (the installed ``veille`` script, as a user
types it), after ``--warmup`` runs that fill the OS caches, like ``hyperfine`` does. It reports, per
command, the minimum, median and maximum wall-clock time and the minimum CPU time (user + system of
the child: less sensitive than wall time to other processes on a busy machine). ``silence list``
and ``dlq list`` talk to a real ``nats-server`` that this script starts on a free loopback port
(with the topology declared), so they include a real connection and a real answer.

Writes ``bench/results/cli_startup.json`` and prints a table. With ``--importtime`` it also prints
the ten slowest imports of each command (``python -X importtime``, cumulative).

Usage::

    PYTHONPATH=shared:. python bench/cli_startup.py [--repeat 10] [--warmup 2] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "cli_startup.json"
VEILLE = Path(sys.executable).parent / "veille"

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "version": ["version"],
    "check-config": ["check-config", str(ROOT / "examples" / "veille.yaml")],
    "silence --help": ["silence", "--help"],
    "silence list": ["silence", "list"],
    "dlq list": ["dlq", "list"],
    "run --help": ["run", "--help"],
    "sentiment --help": ["sentiment", "--help"],
}


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``argv`` once; return (wall seconds, child CPU seconds, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.returncode


def slowest_imports(args: list[str], env: dict[str, str], count: int = 10) -> list[tuple[str, float]]:
    """The ``count`` imports with the largest cumulative time (seconds) in one run of ``veille args``."""
    code = "import sys; from veille_cli import main; sys.argv[0] = 'veille'; main(sys.argv[1:])"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        if cumulative.isdigit():
            rows.append((name, int(cumulative) / 1e6))
    # A module's cumulative time includes its children: keep the top-level ones of the slowest.
    rows.sort(key=lambda row: row[1], reverse=True)
    return rows[:count]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--importtime", action="store_true", help="also print the slowest imports per command")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    from veille.natsserver import NatsServerProcess

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServerProcess(store_dir=Path(tmp) / "store", log_file=Path(tmp) / "nats.log")
        server.start()
        try:
            env = {**os.environ, "VEILLE_NATS_URL": server.url, "NO_COLOR": "1"}
            env.pop("VEILLE_LOG_FORMAT", None)
            subprocess.run([str(VEILLE), "topology"], env=env, capture_output=True, check=True)
            for label, command in COMMANDS.items():
                argv_ = [str(VEILLE), *command]
                for _ in range(args.warmup):
                    timed(argv_, env)
                runs = [timed(argv_, env) for _ in range(args.repeat)]
                walls = [wall for wall, _, _ in runs]
                results[label] = {
                    "argv": ["veille", *command],
                    "exit_codes": sorted({code for _, _, code in runs}),
                    "wall_min_s": round(min(walls), 3),
                    "wall_median_s": round(statistics.median(walls), 3),
                    "wall_max_s": round(max(walls), 3),
                    "cpu_min_s": round(min(cpu for _, cpu, _ in runs), 3),
                }
                if args.importtime:
                    results[label]["slowest_imports"] = slowest_imports(command, env)
        finally:
            server.stop()

    report = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg(),
        "repeat": args.repeat,
        "commands": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")

    print(f"load average {report['load_average'][0]:.1f} on {report['cores']} cores; {args.repeat} runs each")
    print(f"{'command':<18} {'min':>7} {'median':>7} {'max':>7} {'cpu min':>8}  exit")
    for label, r in results.items():
        print(
            f"{label:<18} {r['wall_min_s']:>6.2f}s {r['wall_median_s']:>6.2f}s {r['wall_max_s']:>6.2f}s "
            f"{r['cpu_min_s']:>7.2f}s  {','.join(map(str, r['exit_codes']))}"
        )
        for name, seconds in r.get("slowest_imports", []):
            print(f"    {seconds * 1000:8.0f} ms  {name}")


if __name__ == "__main__":
    main()
