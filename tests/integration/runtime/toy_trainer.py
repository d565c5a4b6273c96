"""A trainer without torch, for the ways a script can go wrong under ``baige run``: it starts
in a fraction of a second, so each of those tests costs little more than its timeout.

    python toy_trainer.py --mode ok|no-attach|no-step|early-exit [--crash-at N]
"""

from __future__ import annotations

import argparse
import sys
import time

from baige.runtime import attach


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mode", default="ok")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--step-s", type=float, default=0.02)
    p.add_argument("--crash-at", type=int, default=-1)
    args = p.parse_args()
    if args.mode == "no-attach":
        time.sleep(600)
    progress = attach(total_steps=args.steps)
    if args.mode == "no-step":
        time.sleep(600)
    for step in range(args.steps):
        if args.mode == "early-exit" and step == 3:
            sys.exit(0)
        if step == args.crash_at:
            raise SystemExit(f"toy crash at step {step}")
        time.sleep(args.step_s)
        progress.step(step)


if __name__ == "__main__":
    main()
