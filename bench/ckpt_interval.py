"""Benchmark: what a flash checkpoint every step (or every 10) costs a training step.

Young/Daly says a 99.5% effective training time at 10,000 cards needs a save every minute or
two with a stall of at most ~0.2 s — or, cheaper still, a save every step, so a fault loses at
most one step. This measures the step-time overhead of that knob on the example transformer
(``examples/runtime/train_transformer.py --save-every N``) under ``baige run`` (2 ranks, gloo,
CPU): the same run with saves every step, every 10 steps, and only at the end (the baseline),
interleaved in rounds (baseline, every 10, every 1, baseline, …) after a warm-up round, at
one or more model sizes. Per run it takes the steady-state step time: the time from step 20
to step ``steps - 20`` over that many steps (start-up and the last save excluded).

It prints, per model size, the state's size, the median step time of each setting, the
overhead against the baseline (median of the per-round ratios) and each round's ratio.

    python bench/ckpt_interval.py [--rounds 5] [--steps 200] [--sizes 64x2,256x4]

On a GPU the save is a device-to-host copy into pinned shared memory; here (CPU) it is a
host memory copy, and the persister writing to disk competes with training for the same
two cores — the figure is an upper bound of what a GPU node (with spare host cores) pays.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "runtime" / "train_transformer.py"
STEP = re.compile(r"rank=0 step=(\d+) loss=\S+ t=([\d.]+)")
SKIP = 20  # steps left out at each end of a run


@dataclass(frozen=True)
class Size:
    d_model: int
    layers: int

    @property
    def label(self) -> str:
        return f"d_model {self.d_model} × {self.layers} layers"

    def state_mib(self, vocab: int, seq: int) -> float:
        """Model + AdamW's two moments, fp32: what one rank copies per save."""
        d = self.d_model
        per_layer = 12 * d * d + 13 * d  # attention 4d², MLP 8d², biases and norms
        params = vocab * d + seq * d + self.layers * per_layer + 2 * d
        return params * 4 * 3 / 2**20


def parse_sizes(text: str) -> list[Size]:
    sizes = []
    for part in text.split(","):
        try:
            d, layers = part.lower().split("x")
            sizes.append(Size(int(d), int(layers)))
        except ValueError:
            raise SystemExit(f"--sizes: {part!r} is not D_MODELxLAYERS (e.g. 256x4)") from None
    return sizes


def run_once(size: Size, save_every: int, args: argparse.Namespace, work: Path) -> float:
    """One ``baige run``; the steady-state seconds per step of rank 0."""
    run_dir = Path(tempfile.mkdtemp(dir=work))
    cmd = [
        sys.executable, "-m", "baige.runtime", "--run-dir", str(run_dir),
        "--nproc-per-node", "2", "--",
        sys.executable, str(EXAMPLE),
        "--steps", str(args.steps), "--save-every", str(save_every),
        "--log-every", "1", "--d-model", str(size.d_model), "--layers", str(size.layers),
        "--seq", str(args.seq), "--vocab", str(args.vocab), "--batch", str(args.batch),
        "--ckpt-dir", str(run_dir / "ckpt"), "--linger", "0",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BAIGE_")}
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    times = {int(m[1]): float(m[2]) for m in STEP.finditer(done.stdout)}
    first, last = SKIP, args.steps - SKIP
    if first not in times or last not in times:
        raise SystemExit(f"steps {first} and {last} missing from the log:\n{done.stdout[-2000:]}")
    return (times[last] - times[first]) / (last - first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--sizes", default="64x2,256x4", help="D_MODELxLAYERS, comma-separated")
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--timeout", type=float, default=600.0)
    args = p.parse_args()
    if args.steps < 3 * SKIP:
        raise SystemExit(f"--steps must be at least {3 * SKIP}")
    settings = {"end only": args.steps + 1, "every 10": 10, "every step": 1}
    with tempfile.TemporaryDirectory(prefix="baige-ckpt-interval-") as tmp:
        work = Path(tmp)
        for size in parse_sizes(args.sizes):
            mib = size.state_mib(args.vocab, args.seq)
            print(f"\n{size.label}: {mib:.1f} MiB of state per rank", flush=True)
            for every in settings.values():  # warm-up: imports, page cache, allocator
                run_once(size, every, args, work)
            step_s: dict[str, list[float]] = {name: [] for name in settings}
            for r in range(args.rounds):
                for name, every in settings.items():
                    step_s[name].append(run_once(size, every, args, work))
                row = "  ".join(f"{n} {step_s[n][-1] * 1e3:6.1f} ms" for n in settings)
                print(f"  round {r + 1}: {row}", flush=True)
            base = step_s["end only"]
            print(f"  {'setting':<12}{'step (median)':>15}{'overhead':>10}  per-round ratios")
            for name in settings:
                ratios = [a / b for a, b in zip(step_s[name], base, strict=True)]
                overhead = statistics.median(ratios) - 1
                per_round = " ".join(f"{x:.3f}" for x in ratios)
                median_ms = statistics.median(step_s[name]) * 1e3
                print(f"  {name:<12}{median_ms:>12.1f} ms{overhead:>+10.1%}  {per_round}")


if __name__ == "__main__":
    main()
