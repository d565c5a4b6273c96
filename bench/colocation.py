"""Co-location, live: training and inference sharing cards in a real `baige up`.

A real control plane (local backend, fake accelerators: 4 nodes x 8 cards) runs an elastic
training job that fills the cluster and two services on Baige's fake engine behind the
gateway, autoscaled. A load generator replays the Alibaba GenAI QPS curve
(../shared/data/traces/alibaba-genai-2026/qps.csv, 22 hours compressed into --minutes) through
the gateway, on loopback only, with a bounded number of requests in flight. It prints, over
time, the cards allocated to training and to inference and the requests per second; then the
share of requests answered within the SLO, how fast scale-ups followed load, the training
shrink and grow counts, and the requests lost (any answer but 200: must be 0).

Then the same scenario in ``baige sim`` — the same specs through ``baige.sim.from_specs``, the
same QPS schedule, the live autoscaler and scheduler code — and the figures both worlds share
side by side, each computed the same way from the workload events (live: the control plane's
event log; simulated: the engine's, written by the same ``baige.sched.lifecycle``).

    python bench/colocation.py --minutes 10 --peak-qps 40 --slo-ms 2000

Everything it starts is stopped at the end, and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

NODES, CARDS_PER_NODE = 4, 8
CARDS = NODES * CARDS_PER_NODE
MAX_REPLICAS = 12  # each service's autoscale.max_replicas
SERVICES = ("chat", "embed")  # two requests in three go to the first
SUSTAINED_S = 15.0  # a rise counts for the reaction time when it lasts this long

ROOT = Path(__file__).resolve().parents[1]
QPS = ROOT.parent / "shared" / "data" / "traces" / "alibaba-genai-2026" / "qps.csv"

TRAINING = """\
kind: TrainingJob
name: pretrain
queue: default
replicas: 32
min_replicas: 8
priority: 0
accelerators: {count: 1, types: [h100]}
command: [sleep, "100000"]
"""

SERVICE = """\
kind: InferenceService
name: %(name)s
queue: default
replicas: 1
priority: 1000
accelerators: {count: 1, types: [h100]}
engine: {name: fake, model: %(name)s, token_latency: 0.01, max_concurrency: 8}
autoscale: {min_replicas: 1, max_replicas: 12, target_qps_per_replica: %(target)s,
            scale_down_window: 60s, cooldown: 15s}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_platform(home: Path, port: int) -> subprocess.Popen[bytes]:
    log = open(home / "up.log", "wb")  # the child's output, closed when it exits
    return subprocess.Popen(
        [sys.executable, "-m", "baige.cli.main", "up", "--home", str(home), "--port", str(port),
         "--fake-accelerators", "h100:8", "--fake-nodes", "4",
         # as root, replicas would run as baige-<tenant>, who cannot run a Python under /root
         # (the fake engine runs Baige's own interpreter)
         *(["--tenant-user", "*=root"] if os.getuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip


def stop_platform(process: subprocess.Popen[bytes], home: Path) -> None:
    with_pids = list((home / "runs").glob("*/pid"))
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    for pid_file in with_pids:  # replicas run in their own sessions: end them too
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


async def replay(
    url: str,
    token: str,
    services: list[str],
    curve: list[float],
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
) -> dict[str, Any]:
    """Send requests following ``curve`` (one value per bin) for ``args.minutes``."""
    duration = args.minutes * 60
    bin_s = duration / len(curve)
    latencies: list[float] = []
    lost: dict[str, int] = {}
    sent = 0
    gate = asyncio.Semaphore(args.max_in_flight)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=args.max_in_flight)
    async with httpx.AsyncClient(timeout=30, limits=limits, headers=headers) as http:

        async def one(service: str) -> None:
            async with gate:
                started = time.monotonic()
                try:
                    body = {"prompt": "hello world", "max_tokens": 8}
                    answer = await http.post(f"{url}/s/{service}/v1/completions", json=body)
                    code = str(answer.status_code)
                except httpx.HTTPError as err:
                    code = type(err).__name__
                if code == "200":
                    latencies.append(time.monotonic() - started)
                else:
                    lost[code] = lost.get(code, 0) + 1

        tasks: set[asyncio.Task[None]] = set()
        began = time.monotonic()
        samples.append({"t": 0, "qps": 0.0, "wall": time.time()})
        next_sample = began
        while (elapsed := time.monotonic() - began) < duration:
            level = curve[min(len(curve) - 1, int(elapsed / bin_s))]
            rate = max(0.2, level * args.peak_qps)
            # two requests in three go to the first service, one to the second
            service = services[0] if sent % 3 else services[-1]
            task = asyncio.create_task(one(service))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            await asyncio.sleep(1 / rate)
            if time.monotonic() >= next_sample:
                next_sample += 10
                samples.append({"t": round(elapsed), "qps": round(rate, 1)})
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"sent": sent, "latencies": latencies, "lost": lost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--peak-qps", type=float, default=40.0)
    parser.add_argument("--slo-ms", type=float, default=2000.0)
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--target-qps", type=float, default=4.0, help="per replica")
    args = parser.parse_args()
    if not QPS.exists():
        raise SystemExit(f"{QPS} is missing (../shared/data beside the repository)")
    from baige.client import BaigeClient  # noqa: PLC0415
    from baige.sim.traces import read_qps_curve  # noqa: PLC0415

    curve = read_qps_curve(QPS, bin_s=600)
    home = Path(tempfile.mkdtemp(prefix="baige-colocation-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_platform(home, port)
    samples: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 60
        while not (home / "admin-token").exists() or not _up(url):
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"baige up did not start; see {home / 'up.log'}")
            time.sleep(0.5)
        token = (home / "admin-token").read_text().strip()
        client = BaigeClient(url, token)
        job = _submit(url, token, "jobs", TRAINING)
        services = [
            _submit(url, token, "services", SERVICE % {"name": name, "target": args.target_qps})
            for name in ("chat", "embed")
        ]
        wait_until = time.monotonic() + 60
        while time.monotonic() < wait_until:
            views = [client.job(s) for s in services]
            if all(_running(v) for v in views):
                break
            time.sleep(1)
        print(f"replaying {len(curve)} bins of the GenAI QPS curve over {args.minutes:g} min, "
              f"peak {args.peak_qps:g} req/s", flush=True)  # fmt: skip
        monitor_stop = False
        timeline: list[dict[str, Any]] = []

        async def monitor() -> None:
            began = time.monotonic()
            while not monitor_stop:
                overview = await asyncio.to_thread(_overview, url, token)
                views = await asyncio.to_thread(lambda: [client.job(s) for s in [job, *services]])
                training = _running(views[0])
                inference = sum(_running(v) for v in views[1:])
                allocated = sum(a["allocated"] for a in overview["accelerators"])
                total = sum(a["total"] for a in overview["accelerators"])
                wanted = [v.replicas for v in views[1:]]
                timeline.append({"t": round(time.monotonic() - began), "training": training,
                                 "inference": inference, "allocated": allocated,
                                 "total": total, "wanted": wanted})  # fmt: skip
                await asyncio.sleep(10)

        async def run() -> dict[str, Any]:
            nonlocal monitor_stop
            watcher = asyncio.create_task(monitor())
            result = await replay(url, token, services, curve, args, samples)
            monitor_stop = True
            await watcher
            return result

        result = asyncio.run(run())
        t0 = samples[0]["wall"]
        names = {job: "pretrain", services[0]: "chat", services[-1]: "embed"}
        events = [
            Moved(max(0.0, e.ts - t0), names[w], e.type, e.message)
            for w in [job, *services]
            for e in client.events(w)
            if e.ts - t0 <= args.minutes * 60
        ]
        report(result, timeline, samples, events, args)
        live = figures(events, curve, args)
        simulated = simulate(curve, args)
        compare(live, simulated)
    finally:
        stop_platform(process, home)


def _running(view: Any) -> int:
    """Replicas running now (a workload's view lists stopped ones too)."""
    return sum(1 for r in view.running_replicas if r.state == "running")


def _overview(url: str, token: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/overview?hours=0", timeout=30,
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()
    return data


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _submit(url: str, token: str, kind: str, text: str) -> str:
    answer = httpx.post(f"{url}/v1/{kind}", content=text, timeout=30, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/yaml"})  # fmt: skip
    answer.raise_for_status()
    ident: str = answer.json()["id"]
    return ident


@dataclass(frozen=True)
class Moved:
    """A workload event, seconds after the replay began."""

    t: float
    workload: str
    type: str
    message: str


_COUNT = re.compile(r"(\d+) replica\(s\)")


def held_series(events: list[Moved], workload: str) -> list[tuple[float, int]]:
    """(time, replicas held) from a workload's events, as the lifecycle words them."""
    series: list[tuple[float, int]] = [(0.0, 0)]
    for event in sorted((e for e in events if e.workload == workload), key=lambda e: e.t):
        if event.type in ("Admitted", "Grown", "Shrunk"):
            found = _COUNT.findall(event.message)
            if found:
                series.append((event.t, int(found[-1])))
        elif event.type in ("Preempted", "Evicted", "Failed", "Succeeded", "Restarting"):
            series.append((event.t, 0))
    return series


def _at(series: list[tuple[float, int]], t: float) -> int:
    value = 0
    for since, count in series:
        if since > t:
            break
        value = count
    return value


def _mean(series: list[tuple[float, int]], horizon: float) -> float:
    area = 0.0
    points = [*series, (horizon, series[-1][1])]
    for (t1, v), (t2, _) in itertools.pairwise(points):
        area += v * max(0.0, min(t2, horizon) - t1)
    return area / horizon


def schedule(curve: list[float], args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """Requests per second per service over the replay, as ``replay`` sends them."""
    bin_s = args.minutes * 60 / len(curve)
    rates = [max(0.2, level * args.peak_qps) for level in curve]
    return {
        "chat": [(i * bin_s, r * 2 / 3) for i, r in enumerate(rates)],
        "embed": [(i * bin_s, r / 3) for i, r in enumerate(rates)],
    }


def figures(events: list[Moved], curve: list[float], args: argparse.Namespace) -> dict[str, Any]:
    """What both worlds report, from their events alone."""
    horizon = args.minutes * 60
    out: dict[str, Any] = {}
    reactions: list[float] = []
    met = 0.0
    for service, steps in schedule(curve, args).items():  # one per name in SERVICES
        held = held_series(events, service)
        out[f"{service} replicas (mean)"] = _mean(held, horizon)
        # within the autoscaler's 10% tolerance of its target counts as enough
        needs = [
            (t, min(MAX_REPLICAS, math.ceil(rate / (args.target_qps * 1.1) - 1e-9)))
            for t, rate in steps
        ]
        for (t, need), (end, _) in zip(needs, [*needs[1:], (horizon, 0)], strict=False):
            met += (end - t) * (_at(held, t) >= need)
            # a sustained rise: the need stays at least this high for SUSTAINED_S
            sustained = all(n >= need for s, n in needs if t <= s < t + SUSTAINED_S)
            if need > _at(held, t - 1e-6) and sustained and t + SUSTAINED_S <= horizon:
                ready = next((s for s, n in held if s >= t and n >= need), None)
                reactions.append(horizon - t if ready is None else ready - t)
    training = held_series(events, "pretrain")
    out["training replicas (mean)"] = _mean(training, horizon)
    inference = out["chat replicas (mean)"] + out["embed replicas (mean)"]
    out["cards allocated (mean)"] = (out["training replicas (mean)"] + inference) / CARDS
    out["time with enough replicas"] = met / (horizon * len(SERVICES))
    out["scale-up reaction p50 (s)"] = statistics.median(reactions) if reactions else math.nan
    out["scale-up reaction worst (s)"] = max(reactions) if reactions else math.nan
    out["autoscaler moves"] = sum(1 for e in events if e.type == "Autoscaled")
    out["training shrunk"] = sum(
        1 for e in events if e.workload == "pretrain" and e.type == "Shrunk"
    )
    out["training grown"] = sum(1 for e in events if e.workload == "pretrain" and e.type == "Grown")
    out["training preempted"] = sum(
        1 for e in events if e.workload == "pretrain" and e.type == "Preempted"
    )
    return out


def simulate(curve: list[float], args: argparse.Namespace) -> dict[str, Any]:
    """The same scenario in the simulator: same specs, same QPS schedule, same code."""
    from baige.api.loader import load_specs  # noqa: PLC0415
    from baige.api.nodes import AcceleratorGroup, NodeSpec  # noqa: PLC0415
    from baige.api.queues import QueueSpec  # noqa: PLC0415
    from baige.sched import BAIGE  # noqa: PLC0415
    from baige.sim.engine import Engine, EngineConfig, RestartCosts  # noqa: PLC0415
    from baige.sim.from_specs import Arrival, built_from_specs  # noqa: PLC0415
    from baige.sim.progress import Checkpointing  # noqa: PLC0415

    nodes = [NodeSpec(name=f"node-{i}", accelerators=AcceleratorGroup(type="h100", count=8))
             for i in range(NODES)]  # fmt: skip
    steps = schedule(curve, args)
    arrivals = [Arrival(0.0, load_specs(TRAINING)[0])]  # type: ignore[arg-type]
    for name in ("chat", "embed"):
        (spec,) = load_specs(SERVICE % {"name": name, "target": args.target_qps})
        arrivals.append(Arrival(0.0, spec, qps=tuple(steps[name])))  # type: ignore[arg-type]
    horizon = args.minutes * 60
    built = built_from_specs(nodes, [QueueSpec(name="default")], arrivals, tick=1.0)
    config = EngineConfig(horizon=horizon, interval=1.0, checkpointing=Checkpointing(0.0, 0.0),
                          restart=RestartCosts(10.0, 0.0, 0.0, 0.0), log_events=True)  # fmt: skip
    engine = Engine(built, BAIGE, config)
    engine.run()
    events = [Moved(e.time, e.workload, e.type, e.message) for e in engine.log]
    return figures(events, curve, args)


def compare(live: dict[str, Any], simulated: dict[str, Any]) -> None:
    print(f"\n{'':32} {'live':>9} {'simulated':>10}")
    for key, value in live.items():
        other = simulated.get(key, math.nan)
        if key in ("cards allocated (mean)", "time with enough replicas"):
            print(f"{key:32} {value:>9.1%} {other:>10.1%}")
        elif isinstance(value, float):
            print(f"{key:32} {value:>9.1f} {other:>10.1f}")
        else:
            print(f"{key:32} {value:>9} {other:>10}")


def report(
    result: dict[str, Any],
    timeline: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    events: list[Any],
    args: argparse.Namespace,
) -> None:
    print(f"\n{'t (s)':>6} {'load req/s':>10} {'training':>9} {'inference':>9} "
          f"{'allocated':>10}  wanted")  # fmt: skip
    load = {s["t"] // 10: s["qps"] for s in samples}
    for row in timeline:
        print(f"{row['t']:>6} {load.get(row['t'] // 10, 0):>10} {row['training']:>9} "
              f"{row['inference']:>9} {row['allocated']:>6.1f}/{row['total']:<3} "
              f"{row['wanted']}")  # fmt: skip
    latencies = result["latencies"]
    served = len(latencies)
    within = sum(1 for x in latencies if x * 1000 <= args.slo_ms)
    lost = sum(result["lost"].values())
    kinds: dict[str, int] = {}
    for event in events:
        if event.workload == "pretrain" or event.type == "Autoscaled":
            kinds[event.type] = kinds.get(event.type, 0) + 1
    useful = [r["allocated"] / r["total"] for r in timeline if r["total"]]
    print(f"\nrequests sent {result['sent']}, served {served}, lost {lost} {result['lost'] or ''}")
    if latencies:
        ordered = sorted(latencies)
        print(f"within the {args.slo_ms:g} ms SLO: {within / served:.1%}; latency p50 "
              f"{statistics.median(ordered) * 1000:.0f} ms, p99 "
              f"{ordered[int(0.99 * (len(ordered) - 1))] * 1000:.0f} ms")  # fmt: skip
    if useful:
        print(f"cards allocated: mean {statistics.fmean(useful):.1%}, min {min(useful):.1%}")
    print(f"autoscaled {kinds.get('Autoscaled', 0)} time(s); training shrunk "
          f"{kinds.get('Shrunk', 0)}, grown {kinds.get('Grown', 0)}, preempted "
          f"{kinds.get('Preempted', 0)}")  # fmt: skip


if __name__ == "__main__":
    main()
