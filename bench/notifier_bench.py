"""The notifier beside Prometheus Alertmanager, on the same alerts (issue 17).

Debian's ``prometheus-alertmanager`` (0.25) and ``veille run notifier`` each get the same N alerts
(20,000 by default) spread over 10 groups — group_by [watch, kind], group_wait 0 s, group_interval
1 s, repeat_interval 1 h, one webhook receiver on loopback — in interleaved runs (AM, veille, AM,
veille, ...), each on fresh processes and a fresh store. For each run:

- **alerts accepted per second**: N over the time from the first alert handed over to the moment
  the last one is taken in. Alertmanager: POSTs to ``/api/v2/alerts`` (500 alerts per request,
  4 connections), done when the last POST is answered. veille: publishes to ``VEILLE_ALERTS`` (as
  the classifier does, ``Nats-Msg-Id`` = alert id), done when the notifier's durable consumers (one
  per partition of the stream) have acked the last one (recorded in its group in KV);
- **time until every alert was notified**: from the first alert handed over until the webhook sink
  has been told of all N. Alertmanager lists every alert of the group in each notification; veille
  lists up to 100 per group and counts the rest (``truncated_alerts``), so an alert is "told" when
  listed or counted;
- **CPU per alert**: user + system CPU of the process (its children included) over that time, per
  alert. veille is shown alone and with the nats-server it needs (Alertmanager keeps its state in
  process); the ratio uses notifier + nats-server, which cannot flatter veille.

Who runs where: the loader (Alertmanager's HTTP poster, veille's JetStream publisher) and the webhook
sink are each their own process per run (``--role load-am|load-veille|sink``, started and ready before
anything is timed), so the bench's bookkeeping, the sink's JSON decoding and the loader do not share an
interpreter: the loader's own rate (``published_per_s``) and CPU per alert are reported beside each run,
so a run bounded by its loader shows it. The veille loader publishes as the classifier does: 500 alerts
written in one call (``StreamPublisher.publish_many``, ``Nats-Msg-Id`` = alert id), the stream acks
gathered per 1,000.

The figures are medians over the runs; ratios are veille / Alertmanager (for time and CPU, how many
times more). Written to ``bench/results/notifier.json``.

Usage::

    PYTHONPATH=shared:. python bench/notifier_bench.py [--alerts 20000] [--groups 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]

import httpx  # noqa: E402
import nats  # noqa: E402
from aiohttp import web  # noqa: E402

from veille import bus  # noqa: E402
from veille.jetstream import StreamPublisher  # noqa: E402
from veille.messaging import gather_publishes  # noqa: E402
from veille.models import AlertRaised  # noqa: E402
from veille.natsserver import NatsServerProcess, free_port  # noqa: E402

OUT = ROOT / "bench" / "results" / "notifier.json"
BINARY = "prometheus-alertmanager"
AM_BATCH = 500
AM_CONNECTIONS = 4
TICK = os.sysconf("SC_CLK_TCK")
LOAD_WINDOW = 1000
LOAD_CHUNK = 500
"""Publishes in flight before the veille loader waits for their acks (the classifier gathers a batch's)."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        found = stats.get(current)
        if found is not None:
            total += (int(found[11]) + int(found[12])) / TICK  # utime, stime
        todo += children.get(current, [])
    return total


@dataclass
class Sink:
    """The webhook receiver: counts the distinct alerts told, in either body format.

    It runs in its own process (``--role sink``, one per run) so that decoding Alertmanager's large
    bodies does not take CPU from the loader or from the bench's own bookkeeping.
    """

    expected: int
    listed: set[str] = field(default_factory=set)
    counted: int = 0
    requests: int = 0
    done_at: float | None = None
    all_told: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/am", self._am)
        app.router.add_post("/veille", self._veille)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _check(self) -> None:
        if self.done_at is None and len(self.listed) + self.counted >= self.expected:
            self.done_at = time.perf_counter()
            self.all_told.set()

    async def _am(self, request: web.Request) -> web.Response:
        body = await request.json()  # Alertmanager's webhook: {"alerts": [{"labels": {...}}, ...], ...}
        self.requests += 1
        self.listed.update(a["labels"]["alert_id"] for a in body["alerts"] if a.get("status") == "firing")
        self._check()
        return web.Response(status=200)

    async def _veille(self, request: web.Request) -> web.Response:
        body = await request.json()  # veille v1: {"data": {"alerts": [...], "truncated_alerts": n}}
        self.requests += 1
        data = body["data"]
        self.listed.update(a["id"] for a in data["alerts"] if a["status"] == "firing")
        self.counted += int(data.get("truncated_alerts") or 0)
        self._check()
        return web.Response(status=204)


def watch(i: int, groups: int) -> str:
    return f"brand{i % groups:02d}"


# --- the bench's children: a sink and a loader per run, each its own process ------------------------------------
# time.perf_counter() is CLOCK_MONOTONIC on Linux, one clock for every process: the children report their
# instants and the bench subtracts them.


def _say(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


async def _wait_go() -> None:
    """Block until the bench writes a line on our stdin (it has read the CPU counters)."""
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if not line:
        raise SystemExit("the bench went away")


async def child_sink(expected: int) -> None:
    sink = Sink(expected)
    await sink.start()
    _say({"port": sink.port})
    try:
        await sink.all_told.wait()
        _say({"done_at": sink.done_at, "requests": sink.requests})
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench closes it
    finally:
        await sink.stop()


def _process_cpu() -> float:
    times = os.times()
    return times.user + times.system


async def child_load_veille(url: str, n: int, groups: int) -> None:
    """Publish every alert to the alerts stream as the classifier does: many in flight, acks gathered per batch."""
    now = datetime.now(UTC)
    payloads = [
        (
            bus.alert_subject(watch(i, groups)),
            AlertRaised(
                id=f"alert-bench-{i:06d}",
                watch=watch(i, groups),
                kind="negative_mention",
                summary=f"Negative mention {i} of {watch(i, groups)}",
                raised_at=now,
                started_at=now,
            )
            .model_dump_json()
            .encode(),
            {"Nats-Msg-Id": f"alert-bench-{i:06d}"},
        )
        for i in range(n)
    ]
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    publisher = StreamPublisher()
    await publisher.start(nc)
    _say({"ready": True})
    await _wait_go()
    cpu0 = _process_cpu()
    started = time.perf_counter()
    futures: list[asyncio.Future[bytes]] = []
    for i in range(0, n, LOAD_CHUNK):  # as the classifier publishes a batch's alerts: one write per chunk
        futures += await publisher.publish_many(payloads[i : i + LOAD_CHUNK])
        if len(futures) >= LOAD_WINDOW:
            await gather_publishes(futures, timeout=60)
            futures = []
    await gather_publishes(futures, timeout=60)
    published = time.perf_counter()
    _say({"started": started, "published": published, "cpu_s": _process_cpu() - cpu0})
    await publisher.stop()
    await nc.close()


async def child_load_am(url: str, n: int, groups: int) -> None:
    """POST every alert to Alertmanager, 500 a request over 4 connections (what amtool and Prometheus do)."""
    now = datetime.now(UTC)
    alerts = [
        {
            "labels": {
                "alertname": "negative_mention",
                "watch": watch(i, groups),
                "kind": "negative_mention",
                "severity": "warning",
                "alert_id": f"alert-bench-{i:06d}",
            },
            "annotations": {"summary": f"Negative mention {i} of {watch(i, groups)}"},
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        for i in range(n)
    ]
    bodies = [json.dumps(alerts[i : i + AM_BATCH]).encode() for i in range(0, n, AM_BATCH)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    limits = httpx.Limits(max_connections=AM_CONNECTIONS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def poster() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                answer = await client.post(
                    f"{url}/api/v2/alerts", content=body, headers={"content-type": "application/json"}
                )
                answer.raise_for_status()

        _say({"ready": True})
        await _wait_go()
        cpu0 = _process_cpu()
        started = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(AM_CONNECTIONS)))
        accepted = time.perf_counter()
    _say({"started": started, "published": accepted, "cpu_s": _process_cpu() - cpu0})


class Child:
    """A child of the bench (``--role ...``): JSON lines on its stdout, a line on its stdin to go."""

    def __init__(self, process: asyncio.subprocess.Process, what: str) -> None:
        self.process, self.what = process, what

    @classmethod
    async def start(cls, tmp: Path, what: str, *args: str) -> Child:
        log = (tmp / f"{what}.log").open("wb")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)])}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
        )
        log.close()
        return cls(process, what)

    async def read(self, timeout: float = 900) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"the bench's {self.what} exited with {await self.process.wait()} (see its log)")
        record: dict[str, Any] = json.loads(line)
        return record

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")

    async def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} not ready at {url}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def run_alertmanager(binary: str, n: int, groups: int, tmp: Path) -> dict[str, Any]:
    """One Alertmanager run: its loader POSTs every alert, the sink waits until told of all."""
    sink = await Child.start(tmp, "sink", "--role", "sink", "--alerts", str(n))
    sink_port = (await sink.read(60))["port"]
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(
        "route:\n  receiver: sink\n  group_by: [watch, kind]\n  group_wait: 0s\n  group_interval: 1s\n"
        f"  repeat_interval: 1h\nreceivers:\n  - name: sink\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{sink_port}/am\n        send_resolved: false\n",
        encoding="utf-8",
    )
    log = (tmp / "alertmanager.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - started once per run, before anything is timed
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    loader: Child | None = None
    try:
        await wait_ready(f"{url}/-/ready", process, "alertmanager")
        loader = await Child.start(
            tmp, "loader", "--role", "load-am", "--url", url, "--alerts", str(n), "--groups", str(groups)
        )
        await loader.read(120)  # ready
        load = os.getloadavg()[0]
        cpu0 = cpu_seconds(process.pid)
        loader.go()
        times = await loader.read()
        told = await sink.read()
        cpu = cpu_seconds(process.pid) - cpu0
        started = times["started"]
        return {
            "accepted_per_s": n / (times["published"] - started),
            "all_notified_s": told["done_at"] - started,
            "cpu_us_per_alert": cpu / n * 1e6,
            "loader_cpu_us_per_alert": times["cpu_s"] / n * 1e6,
            "webhooks": told["requests"],
            "loadavg_start": round(load, 2),
        }
    finally:
        stop(process)
        log.close()
        if loader is not None:
            await loader.close()
        await sink.close()


def veille_config(path: Path, sink_port: int, groups: int, group_by: str = "[watch, kind]") -> Path:
    watches = "".join(f"  - name: {watch(i, groups)}\n    query: '{watch(i, groups)}'\n" for i in range(groups))
    path.write_text(
        f"version: 1\nwatches:\n{watches}receivers:\n  - name: sink\n    webhook:\n"
        f"      - url: http://127.0.0.1:{sink_port}/veille\n"
        f"route:\n  receiver: sink\n  group_by: {group_by}\n  group_wait: 0s\n  group_interval: 1s\n"
        "  repeat_interval: 1h\n",
        encoding="utf-8",
    )
    return path


NOTIFIER_ROOT = ROOT
"""``--notifier-root DIR``: the notifier replicas run from this checkout (a ``git worktree`` of an older commit,
say), so that two versions can be measured in alternation on the same bench."""
PROFILE_DIR: Path | None = None
"""``--profile DIR``: the notifier replicas run under cProfile (bench/childprofile), stats written to DIR."""


async def run_veille(
    n: int, groups: int, tmp: Path, replicas: int = 1, group_by: str = "[watch, kind]"
) -> dict[str, Any]:
    """One veille run: a fresh nats-server and ``replicas`` x ``veille run notifier`` (sharing the alerts stream's
    partitions, each held by one replica); the loader publishes every alert, the sink waits until told of all."""
    sink = await Child.start(tmp, "sink", "--role", "sink", "--alerts", str(n))
    sink_port = (await sink.read(60))["port"]
    server = NatsServerProcess(store_dir=tmp / "store", log_file=tmp / "nats.log")
    server.start()
    nc = await nats.connect(server.url)
    processes: list[subprocess.Popen[bytes]] = []
    loader: Child | None = None
    try:
        js = nc.jetstream()
        await bus.ensure_topology(js)
        config = veille_config(tmp / "veille.yaml", sink_port, groups, group_by)
        for replica in range(replicas):
            port = free_port()
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(NOTIFIER_ROOT / "shared"), str(NOTIFIER_ROOT)]),
                "VEILLE_NATS_URL": server.url,
                "VEILLE_CONFIG": str(config),
                "VEILLE_HTTP_PORT": str(port),
                "VEILLE_INSTANCE": f"bench-{replica}",
                "VEILLE_LOG_LEVEL": "warning",
                "VEILLE_LOG_FORMAT": "json",
            }
            if PROFILE_DIR is not None:
                env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench" / "childprofile"), env["PYTHONPATH"]])
                env["VEILLE_BENCH_PROFILE"] = str(PROFILE_DIR)
            log = (tmp / f"notifier-{replica}.log").open("wb")
            process = subprocess.Popen(  # noqa: ASYNC220 - started once per run, before anything is timed
                [sys.executable, "-m", "veille_cli", "run", "notifier"],
                cwd=NOTIFIER_ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )
            processes.append(process)
            await wait_ready(f"http://127.0.0.1:{port}/readyz", process, "veille notifier")
        if replicas > 1:  # the replicas have split the partitions between them before anything is timed
            await wait_shared(js, replicas)
        loader = await Child.start(
            tmp, "loader", "--role", "load-veille", "--url", server.url, "--alerts", str(n), "--groups", str(groups)
        )
        await loader.read(120)  # ready: payloads built, connected
        load = os.getloadavg()[0]
        cpu0_notifier = sum(cpu_seconds(p.pid) for p in processes)
        cpu0_nats = cpu_seconds(server_pid(server))
        loader.go()
        drained_at: float | None = None
        times: dict[str, Any] | None = None
        reading = asyncio.ensure_future(loader.read())
        while drained_at is None:  # done when every alert is stored and every notifier consumer is drained
            if times is None and reading.done():
                times = reading.result()
            infos = await asyncio.gather(*(js.consumer_info(c.stream, c.durable) for c in bus.NOTIFIER_ALERT_CONSUMERS))
            if times is not None and all(not i.num_pending and not i.num_ack_pending for i in infos):
                drained_at = time.perf_counter()
                break
            # 17 consumer infos a poll: every 20 ms that was ~850 requests/s of nats-server CPU charged to veille
            await asyncio.sleep(0.1)
        assert times is not None
        told = await sink.read()
        cpu_notifier = sum(cpu_seconds(p.pid) for p in processes) - cpu0_notifier
        cpu_nats = cpu_seconds(server_pid(server)) - cpu0_nats
        started = times["started"]
        return {
            "accepted_per_s": n / (drained_at - started),
            "published_per_s": n / (times["published"] - started),
            "all_notified_s": told["done_at"] - started,
            "cpu_us_per_alert": (cpu_notifier + cpu_nats) / n * 1e6,
            "cpu_us_per_alert_notifier_only": cpu_notifier / n * 1e6,
            "loader_cpu_us_per_alert": times["cpu_s"] / n * 1e6,
            "webhooks": told["requests"],
            "loadavg_start": round(load, 2),
        }
    finally:
        if PROFILE_DIR is not None:
            for process in processes:
                process.send_signal(signal.SIGUSR2)
            await asyncio.sleep(1)
        for process in processes:
            stop(process)
        if loader is not None:
            await loader.close()
        await nc.close()
        server.stop()
        await sink.close()


async def wait_shared(js: Any, replicas: int, timeout: float = 60) -> None:
    """Wait until ``replicas`` live replicas each hold their share of the partitions (KV ``veille_notify_leases``)."""
    kv = await js.key_value(bus.NOTIFY_LEASES.name)
    deadline = time.monotonic() + timeout
    want = -(-(bus.NOTIFIER_PARTITIONS + 1) // replicas)
    while time.monotonic() < deadline:
        owners: dict[str, int] = {}
        for partition in range(bus.NOTIFIER_PARTITIONS + 1):
            try:
                record = json.loads((await kv.get(f"partition.{partition}")).value or b"{}")
            except Exception:
                continue
            if record.get("owner") and record.get("until", 0) > time.time():
                owners[record["owner"]] = owners.get(record["owner"], 0) + 1
        if len(owners) == replicas and max(owners.values()) <= want:
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"the {replicas} notifier replicas did not share the partitions within {timeout:.0f} s")


def server_pid(server: NatsServerProcess) -> int:
    assert server.process is not None
    return server.process.pid


async def per_alert(n: int, runs: int) -> list[dict[str, Any]]:
    """veille alone on ``n`` alerts, each its own group (``group_by: ["..."]``, as e2e_bench's latency runs).

    No Alertmanager peer: it has no equivalent cost to compare (it keeps groups in memory). Each run
    gives the notifier's CPU per alert and the time to notify them all, with the load average.
    """
    out = []
    for k in range(runs):
        with tempfile.TemporaryDirectory(prefix="veille-notifier-bench-") as tmp:
            result = await run_veille(n, 10, Path(tmp), group_by='["..."]')
        out.append({"run": k + 1, **result})
        print(json.dumps(out[-1]), flush=True)
    return out


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    binary = shutil.which(BINARY) or (f"/usr/bin/{BINARY}" if Path(f"/usr/bin/{BINARY}").exists() else None)
    if binary is None:
        raise SystemExit(f"{BINARY} is not installed: apt-get install -y prometheus-alertmanager")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)  # noqa: ASYNC221
    am_runs: list[dict[str, Any]] = []
    veille_runs: list[dict[str, Any]] = []
    replica_runs: list[dict[str, Any]] = []
    for run in range(args.runs):
        order: tuple[str, ...] = ("am", "veille") if run % 2 == 0 else ("veille", "am")
        if args.veille_only:
            order = ("veille",)
        for which in order:
            with tempfile.TemporaryDirectory(prefix="veille-notifier-bench-") as tmp:
                if which == "am":
                    result = await run_alertmanager(binary, args.alerts, args.groups, Path(tmp))
                    am_runs.append(result)
                else:
                    result = await run_veille(args.alerts, args.groups, Path(tmp))
                    veille_runs.append(result)
            if which == "veille" and args.replicas > 1:
                with tempfile.TemporaryDirectory(prefix="veille-notifier-bench-") as tmp:
                    more = await run_veille(args.alerts, args.groups, Path(tmp), args.replicas)
                replica_runs.append(more)
                figures = json.dumps({k: round(v, 3) for k, v in more.items()})
                print(f"run {run + 1} veille x{args.replicas}: {figures}", flush=True)
            print(f"run {run + 1} {which}: {json.dumps({k: round(v, 3) for k, v in result.items()})}", flush=True)
    summary: dict[str, Any] = {}
    if not am_runs:  # --veille-only: a development run, not a comparison
        return {"veille_runs": veille_runs, "veille_replica_runs": replica_runs}
    for key in ("accepted_per_s", "all_notified_s", "cpu_us_per_alert"):
        am, ve = median(am_runs, key), median(veille_runs, key)
        summary[key] = {"alertmanager": am, "veille": ve, "veille_vs_am": ve / am}
    summary["cpu_us_per_alert_notifier_only"] = {"veille": median(veille_runs, "cpu_us_per_alert_notifier_only")}
    published = median(veille_runs, "published_per_s")
    summary["published_per_s"] = {
        "veille": published,
        "veille_vs_am": published / summary["accepted_per_s"]["alertmanager"],
    }
    summary["loader_cpu_us_per_alert"] = {
        "alertmanager": median(am_runs, "loader_cpu_us_per_alert"),
        "veille": median(veille_runs, "loader_cpu_us_per_alert"),
    }
    if replica_runs:
        summary["replicas"] = {
            "replicas": args.replicas,
            "accepted_per_s": median(replica_runs, "accepted_per_s"),
            "vs_one": median(replica_runs, "accepted_per_s") / median(veille_runs, "accepted_per_s"),
            "all_notified_s": median(replica_runs, "all_notified_s"),
        }
    return {
        "alerts": args.alerts,
        "groups": args.groups,
        "runs": args.runs,
        "alertmanager_version": (version.stdout or version.stderr).splitlines()[0] if version else "",
        "command": f"PYTHONPATH=shared:. python bench/notifier_bench.py --alerts {args.alerts} "
        f"--groups {args.groups} --runs {args.runs} --replicas {args.replicas}",
        "median": summary,
        "alertmanager_runs": am_runs,
        "veille_runs": veille_runs,
        "veille_replica_runs": replica_runs,
    }


def report(result: dict[str, Any]) -> str:
    m = result["median"]
    rows = [
        "| | Alertmanager (median) | veille (median) | veille ÷ AM |",
        "|---|---:|---:|---:|",
        f"| alerts accepted per second | {m['accepted_per_s']['alertmanager']:,.0f} | "
        f"{m['accepted_per_s']['veille']:,.0f} | {m['accepted_per_s']['veille_vs_am']:.2f} |",
        f"| time until every alert was notified (s) | {m['all_notified_s']['alertmanager']:.1f} | "
        f"{m['all_notified_s']['veille']:.1f} | {m['all_notified_s']['veille_vs_am']:.2f} |",
        f"| CPU per alert (µs; veille: notifier + nats-server) | {m['cpu_us_per_alert']['alertmanager']:,.0f} | "
        f"{m['cpu_us_per_alert']['veille']:,.0f} | {m['cpu_us_per_alert']['veille_vs_am']:.2f} |",
        f"| CPU per alert, notifier process alone (µs) | | {m['cpu_us_per_alert_notifier_only']['veille']:,.0f} | |",
    ]
    if "published_per_s" in m:
        rows.append(
            "| alerts stored per second (veille: the stream's publish acks, the loader's rate; Alertmanager: "
            f"as accepted) | {m['accepted_per_s']['alertmanager']:,.0f} | {m['published_per_s']['veille']:,.0f} | "
            f"{m['published_per_s']['veille_vs_am']:.2f} |"
        )
        rows.append(
            f"| loader CPU per alert (µs; its own process) | {m['loader_cpu_us_per_alert']['alertmanager']:,.0f} | "
            f"{m['loader_cpu_us_per_alert']['veille']:,.0f} | |"
        )
    if "replicas" in m:
        r = m["replicas"]
        rows.append(
            f"| alerts accepted per second, {r['replicas']} notifier replicas sharing the partitions | | "
            f"{r['accepted_per_s']:,.0f} ({r['vs_one']:.2f} x one) | |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3, help="runs of each, interleaved")
    parser.add_argument(
        "--replicas", type=int, default=2, help="also run this many notifier replicas sharing the partitions (1: not)"
    )
    parser.add_argument(
        "--per-alert",
        type=int,
        default=0,
        help="instead: veille alone on this many alerts, each its own group (writes notifier_per_alert.json)",
    )
    parser.add_argument("--veille-only", action="store_true", help="no Alertmanager runs (development; not written)")
    parser.add_argument("--profile", type=Path, help="run the notifier replicas under cProfile, stats in this folder")
    parser.add_argument("--role", choices=["sink", "load-veille", "load-am"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument(
        "--notifier-root", type=Path, help="run the notifier from this checkout (before/after comparisons)"
    )
    options = parser.parse_args()
    if options.notifier_root is not None:
        NOTIFIER_ROOT = options.notifier_root.resolve()
    if options.role == "sink":
        asyncio.run(child_sink(options.alerts))
        raise SystemExit(0)
    if options.role == "load-veille":
        asyncio.run(child_load_veille(options.url, options.alerts, options.groups))
        raise SystemExit(0)
    if options.role == "load-am":
        asyncio.run(child_load_am(options.url, options.alerts, options.groups))
        raise SystemExit(0)
    if options.profile is not None:
        options.profile.mkdir(parents=True, exist_ok=True)
        PROFILE_DIR = options.profile.resolve()
    if options.per_alert:
        rows = asyncio.run(per_alert(options.per_alert, options.runs))
        OUT.with_name("notifier_per_alert.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
        raise SystemExit(0)
    outcome = asyncio.run(main(options))
    if options.veille_only:
        raise SystemExit(0)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(outcome, indent=2), encoding="utf-8")
    print(report(outcome))


def markdown_section(result: dict[str, Any]) -> list[str]:
    """The notifier section of docs/benchmarks.md (``bench/run_all.py``)."""
    if not result.get("median"):
        return []
    return [
        f"## Notifier beside Alertmanager (`bench/notifier_bench.py`, {result['alerts']:,} alerts in "
        f"{result['groups']} groups, {result['runs']} interleaved runs each)",
        "",
        f"{result.get('alertmanager_version', 'prometheus-alertmanager')} against `veille run notifier`: "
        "group_by [watch, kind], group_wait 0 s, group_interval 1 s, one loopback webhook. Accepted: "
        "Alertmanager's POSTs to /api/v2/alerts answered, veille's durable consumers (one per partition of "
        "the alerts stream) acked (alerts recorded in KV). Notified: every alert listed (Alertmanager) or "
        "listed or counted (veille lists 100 per group and counts the rest). veille's CPU includes the "
        "nats-server it needs. "
        f"Command: `{result.get('command', '')}`.",
        "",
        report(result),
        "",
    ]
