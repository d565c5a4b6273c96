"""Benchmark: how reliably ``baige diagnose`` names a slowed link or node, and how small a
slowdown it still finds.

A lab network (``baige.diag.netlab``: ``--nodes`` network namespaces on a bridge, every
port shaped to ``--rate`` Mbit/s with HTB) gets one fault at a time: a link between two nodes
(HTB class + u32 filter on both ends) or one node's port, slowed by each of ``--factors``.
Every link and every node is the target in turn (``--repeat`` times). A trial is right when
the diagnosis names exactly the target and nothing else; between faults, a healthy network
must name nothing (false alarms are counted on those).

Per factor it prints the accuracy (right / trials), the wrong verdicts, and the median time
a diagnosis took; then the smallest factor at which every trial was right.

Needs root and iproute2 (``ip``, ``tc``). The measurements run inside the lab's coordinator
namespace: the script re-executes itself there (``ip netns exec``) once the lab is built.

    sudo python bench/diagnose_links.py [--nodes 4] [--rate 200] [--factors 1.25,1.5,2,3,5]
        [--seconds 0.2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from baige.diag.links import diagnose_links
from baige.diag.netlab import NetLab, lab_available
from baige.diag.probe import ProbeError


def inner(args: argparse.Namespace) -> None:
    """Runs in the coordinator's namespace: every fault, every factor, one JSON line each."""
    lab = NetLab(args.nodes, rate_mbit=args.rate, tag=args.tag)
    addresses = [lab.address(i) for i in range(args.nodes)]
    targets: list[tuple[str, tuple[int, ...]]] = [
        ("link", pair) for pair in itertools.combinations(range(args.nodes), 2)
    ] + [("node", (i,)) for i in range(args.nodes)]
    for factor in [float(f) for f in args.factors.split(",")]:
        for _ in range(args.repeat):
            for kind, ends in targets:
                if kind == "link":
                    lab.slow_link(ends[0], ends[1], factor)
                    want = [("link", f"{lab.name(ends[0])}<->{lab.name(ends[1])}")]
                else:
                    lab.slow_node(ends[0], factor)
                    want = [("node", lab.name(ends[0]))]
                record = _trial(addresses, args, want)
                lab.heal()
                record.update(factor=factor, target=want[0][1])
                print(json.dumps(record), flush=True)
        record = _trial(addresses, args, [])
        record.update(factor=factor, target="healthy")
        print(json.dumps(record), flush=True)


def _trial(addresses: list[str], args: argparse.Namespace, want: list[tuple[str, str]]) -> dict:
    started = time.monotonic()
    try:
        report = diagnose_links(addresses, seconds=args.seconds, pings=5, ring=False)
    except ProbeError as err:
        return {"right": False, "named": [], "error": str(err), "wall_s": 0.0}
    named = [(s.kind, s.name) for s in report.suspects]
    return {
        "right": sorted(named) == sorted(want),
        "named": named,
        "wall_s": round(time.monotonic() - started, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=4)
    p.add_argument("--rate", type=float, default=200.0, help="Mbit/s of every port")
    p.add_argument("--factors", default="1.25,1.5,2,3,5")
    p.add_argument("--seconds", type=float, default=0.2, help="seconds per bandwidth test")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inner:
        inner(args)
        return
    why = lab_available()
    if why is not None:
        sys.exit(f"bench/diagnose_links.py {why}")
    print(f"# {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{args.nodes} nodes at {args.rate:g} Mbit/s, {args.seconds:g} s per test")  # fmt: skip
    results: list[dict] = []
    with NetLab(args.nodes, rate_mbit=args.rate) as lab:
        lab.start_probes()
        cmd = [*lab.exec_prefix(lab.ctl), sys.executable, str(Path(__file__).resolve()),
               "--inner", "--tag", lab.tag, "--nodes", str(args.nodes), "--rate",
               str(args.rate), "--factors", args.factors, "--seconds", str(args.seconds),
               "--repeat", str(args.repeat)]  # fmt: skip
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                record = json.loads(line)
                results.append(record)
                mark = "ok " if record["right"] else "BAD"
                print(f"  {mark} x{record['factor']:<5g} {record['target']:<16} named "
                      f"{record['named'] or 'nothing'} ({record['wall_s']:.1f} s)",
                      flush=True)  # fmt: skip
    if not results:
        sys.exit("no trial ran")
    print()
    print(f"{'slowdown':>9} {'accuracy':>9} {'false alarms':>13} {'median s':>9}")
    perfect: list[float] = []
    for factor in sorted({r["factor"] for r in results}):
        faults = [r for r in results if r["factor"] == factor and r["target"] != "healthy"]
        healthy = [r for r in results if r["factor"] == factor and r["target"] == "healthy"]
        right = sum(r["right"] for r in faults)
        alarms = sum(not r["right"] for r in healthy)
        wall = statistics.median(r["wall_s"] for r in faults)
        print(f"{factor:>8g}x {right:>4}/{len(faults):<4} {alarms:>8}/{len(healthy):<4} "
              f"{wall:>9.2f}")  # fmt: skip
        if right == len(faults):
            perfect.append(factor)
    smallest = min(perfect) if perfect else None
    print(f"smallest slowdown found every time: {f'{smallest:g}x' if smallest else 'none'}")


if __name__ == "__main__":
    main()
