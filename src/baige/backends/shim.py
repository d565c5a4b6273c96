"""The process that runs one replica: ``python -m baige.backends.shim RUNDIR -- COMMAND...``.

It outlives the control plane (it runs in its own session), so a killed and restarted
controller finds every replica again: the shim writes its pid when it starts and the
command's exit status when it ends, both atomically, into the replica's run directory, and
sends the command's output to ``output.log`` there. SIGTERM is forwarded to the command.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from baige.backends.expand import expand_args


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write("usage: python -m baige.backends.shim RUNDIR -- COMMAND [ARGS...]\n")
        return 2
    rundir = Path(argv[0])
    command = expand_args(argv[2:], os.environ)  # $(PORT) and the like, from our env
    _write_atomically(rundir / "pid", str(os.getpid()))
    received: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        for child in children:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    with open(rundir / "output.log", "ab", buffering=0) as log:
        try:
            child = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        except OSError as err:
            log.write(f"baige: cannot start {command[0]!r}: {err}\n".encode())
            _write_atomically(rundir / "exit", "127")
            return 127
        children.append(child)
        for signum in received:  # a stop that arrived while the command was starting
            child.send_signal(signum)
        code = child.wait()
    _write_atomically(rundir / "exit", str(code))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
