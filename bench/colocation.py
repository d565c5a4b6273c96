"""Co-location, live: training and inference sharing cards in a real `baige up`.

A real control plane (local backend, fake accelerators: 4 nodes x 8 cards) runs an elastic
training job that fills the cluster and two services on Baige's fake engine behind the
gateway, autoscaled. A load generator replays the Alibaba GenAI QPS curve
(../shared/data/traces/alibaba-genai-2026/qps.csv, 22 hours compressed into --minutes) through
the gateway, on loopback only, with a bounded number of requests in flight. It prints, over
time, the cards allocated to training and to inference and the requests per second; then the
share of requests answered within the SLO, how fast scale-ups followed load, the training
shrink and grow counts, and the requests lost (any answer but 200: must be 0).

    python bench/colocation.py --minutes 10 --peak-qps 40 --slo-ms 2000

Everything it starts is stopped at the end, and every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

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
            if all(v.running_replicas for v in views):
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
                training = len(views[0].running_replicas)
                inference = sum(len(v.running_replicas) for v in views[1:])
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
        events = [e for s in [job, *services] for e in client.events(s)]
        report(result, timeline, samples, events, args)
    finally:
        stop_platform(process, home)


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
