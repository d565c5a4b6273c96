"""Warm worker starts: restarted ranks fork from a process that has already imported torch.

Where a restart's seconds went, measured here (2 ranks of
``examples/runtime/train_transformer.py``, a rank killed): 0.1 s to detect the death and 0.2 s
to stop the rest, then 4 s from the new workers' start to their first step — of which 1.6 s
is ``import torch`` and 1.5 s is ``torch._dynamo``, which ``DistributedDataParallel``
imports on construction. Restoring from memory took 5 ms. So a restart spends most of its
time re-importing what the previous attempt had already imported.

``baige run`` therefore starts a Python script's ranks through a multiprocessing *forkserver*
that preloads torch, ``torch.distributed``, ``torch._dynamo``, DDP and Baige's runtime and
checkpoint modules once, when the first attempt starts; every later attempt's workers are
forked from it with those modules already in memory, and run the script with :mod:`runpy`
as ``python script.py`` would (``__name__ == "__main__"``, ``sys.argv``, ``sys.path[0]``).
Each worker starts its own session so the agent can signal its whole process group, and
runs the script's ``atexit`` handlers before it exits (a forked child leaves through
``os._exit``). The forkserver imports nothing else and initializes no device: it never
touches CUDA, so forking from it is as safe as a DataLoader's workers.

Only ``python script.py …`` and ``python -m module …`` commands (of this interpreter) are
started warm; anything else, or ``baige run --cold``, is started as a new process as before.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import re
import runpy
import sys
import traceback
from collections.abc import Sequence

__all__ = ["PRELOAD", "ensure_forkserver", "run_python", "warm_args"]

# what a training script's ranks import anyway, and what costs seconds to import
PRELOAD = (
    "torch",
    "torch.distributed",
    "torch.nn.parallel",
    "torch._dynamo",
    "torch.distributed.checkpoint",
    "baige.runtime",
    "baige.ckpt",
    # multiprocessing makes every child import the parent's main module (`baige`'s console
    # script, or ``baige.cli.main`` under ``python -m``): a second of typer and rich per
    # worker unless the server has it already ("__main__": by path)
    "__main__",
    "baige.cli.main",
)


def warm_args(entrypoint: str, args: Sequence[str]) -> tuple[str, ...] | None:
    """The argv to run warm (``[script, *args]`` or ``["-m", module, *args]``) when the
    command is this interpreter running a script or a module; None otherwise."""
    # this interpreter: the same bin directory (a venv's python3 is its python, while the
    # base interpreter a venv links to has other packages), named python, python3, python3.11
    here, there = os.path.split(os.path.abspath(entrypoint)), os.path.split(sys.executable)
    if os.path.realpath(here[0]) != os.path.realpath(there[0]) or not re.fullmatch(
        r"python(\d+(\.\d+)?)?", here[1]
    ):
        return None
    rest = list(args)
    while rest and rest[0] == "-u":  # python's unbuffered flag (the warm worker flushes every
        rest.pop(0)  # line); a -u after the script is the script's own argument
    if not rest or (rest[0].startswith("-") and rest[0] != "-m"):
        return None  # other interpreter options (-c, -X, -O …) are left to a real python
    if rest[0] == "-m":
        return tuple(rest) if len(rest) > 1 else None
    return tuple(rest)


def ensure_forkserver() -> None:
    """Start the forkserver with the modules preloaded (once per process; it lives as long
    as the agent)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    from multiprocessing import forkserver  # noqa: PLC0415

    forkserver.ensure_running()


def run_python(*argv: str) -> None:
    """A worker's body: run ``argv`` (``script args…`` or ``-m module args…``) in this
    process as the ``python`` command would, exiting with its status."""
    os.setsid()  # its own process group: the agent stops the rank with everything it started
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True, write_through=True)
    code: int | str | None = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            sys.path.insert(0, os.getcwd())
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as done:
        code = done.code
    except BaseException:  # as python would: the traceback on stderr (the rank's log), exit 1
        traceback.print_exc()
        code = 1
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    if code not in (0, None):
        if isinstance(code, str):
            print(code, file=sys.stderr, flush=True)
            code = 1
        os._exit(int(code) & 0xFF if isinstance(code, int) else 1)
