"""The process that runs one replica: ``python -m baige.backends.shim RUNDIR [--as UID:GID]
[--cwd DIR] [--env FILE] -- COMMAND...``.

It outlives the control plane (it runs in its own session), so a killed and restarted
controller finds every replica again: the shim writes its pid when it starts and the
command's exit status when it ends, both atomically, into the replica's run directory, and
sends the command's output to ``output.log`` there. SIGTERM is forwarded to the command.

The shim may stay root (to write the run directory, which the job cannot read); the command
alone runs as the tenant's user (``--as``), with no supplementary groups. The command dies
with the shim (``PR_SET_PDEATHSIG``), and stays in the shim's process group, so the backend
can end a replica whose shim was killed by killing that group: no orphan keeps the cards.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from baige.backends.expand import expand_args

PR_SET_PDEATHSIG = 1


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _from_slurm(name: str) -> bool:
    """Variables Slurm sets for the job (and the cards it bound) that the command keeps."""
    return name.startswith(("SLURM_", "SLURMD_")) or name.endswith("_VISIBLE_DEVICES")


def die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec function: SIGKILL this child when ``parent`` dies (after the uid change,
    which would clear the setting)."""

    def arm() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            return  # not Linux: the backend's group kill still ends it
        if os.getppid() != parent:  # the parent died before the setting took hold
            os._exit(137)

    return arm


def main(argv: list[str]) -> int:
    usage = (
        "usage: python -m baige.backends.shim RUNDIR [--as UID:GID] [--cwd DIR] [--env FILE] "
        "-- COMMAND\n"
    )
    if len(argv) < 3 or "--" not in argv[1:]:
        sys.stderr.write(usage)
        return 2
    rundir = Path(argv[0])
    split = argv.index("--", 1)
    options, rest = argv[1:split], argv[split + 1 :]
    uid = gid = None
    cwd = env_file = None
    while options:
        flag, value, options = options[0], options[1] if len(options) > 1 else "", options[2:]
        if flag == "--as":
            uid_text, _, gid_text = value.partition(":")
            uid, gid = int(uid_text), int(gid_text or uid_text)
        elif flag == "--cwd":
            cwd = value
        elif flag == "--env":
            env_file = value
        else:
            sys.stderr.write(usage)
            return 2
    if not rest:
        sys.stderr.write(usage)
        return 2
    env = dict(os.environ)
    if env_file is not None:  # the command's whole environment, and what Slurm sets
        env = {k: v for k, v in env.items() if _from_slurm(k)}
        env.update(json.loads(Path(env_file).read_text()))
    command = expand_args(rest, env)  # $(PORT) and the like, from its env
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
        if cwd is not None and not os.path.isdir(cwd):
            reason = f"working_dir {cwd} does not exist (or is not a directory) at launch"
            log.write(f"baige: {reason}\n".encode())
            _write_atomically(rundir / "reason", reason)
            _write_atomically(rundir / "exit", "127")
            return 127
        try:
            child = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                env=env,
                preexec_fn=die_with_parent(os.getpid()),  # noqa: PLW1509 - prctl only
                # as the tenant's user, with no group of ours and the usual umask
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
                umask=0o022 if uid is not None else -1,
            )
        except (OSError, subprocess.SubprocessError) as err:
            log.write(f"baige: cannot start {command[0]!r}: {err}\n".encode())
            _write_atomically(rundir / "reason", f"cannot start {command[0]!r}: {err}")
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
