"""``dlrover-run`` on this machine's torch, for the benchmarks that compare against it.

DLRover 0.6.1 (the newest on PyPI) starts its local master through torch's
``SubprocessHandler`` with six arguments; torch 2.13 added a seventh, ``numa_options``,
without a default, so ``dlrover-run --standalone`` stops before any worker starts. This
passes ``None`` for it (no NUMA binding, which is what the six-argument call meant) and then
runs ``dlrover-run`` unchanged: its agent, rendezvous and restart path are DLRover's own.

    PYTHONPATH=<dlrover dir> python bench/dlrover_run_compat.py --standalone \
        --nproc_per_node 2 --max-restarts 100 train.py ...
"""

from __future__ import annotations

import inspect
import sys
from typing import Any

from dlrover.trainer.torch import elastic_run  # type: ignore[import-not-found]


def _compatible_handler() -> type:
    base: Any = elastic_run.SubprocessHandler
    wanted = len(inspect.signature(base.__init__).parameters) - 1  # without self

    class Handler(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any) -> None:
            super().__init__(*args, *([None] * max(0, wanted - len(args))))

    return Handler


if __name__ == "__main__":
    elastic_run.SubprocessHandler = _compatible_handler()
    sys.argv[0] = "dlrover-run"
    sys.exit(elastic_run.main())
