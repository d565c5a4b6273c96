"""What of the workers' stderr reaches the launcher's terminal: everything but tracebacks.

One injected fault makes every surviving rank fail its collective and print a long gloo
traceback; tee'd to the terminal (torchrun's ``--tee 3``), that is forty lines of noise around
the one line that matters, the agent's fault event. Each rank's stderr is kept whole in its
log file (torch's ``redirects``); this relay follows those files and copies them to the
terminal, prefixed by rank, folding Python tracebacks away: the fault line names the culprit
and its exception, and says where the full output is.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["StderrRelay", "TracebackFolder", "exception_line"]

_PREFIX = re.compile(r"^(\[[^\]\s]*rank\d+\]: ?)+")  # "[rank0]:", repeated by torch's own prefix
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_TRACEBACK = "Traceback (most recent call last):"


def _bare(line: str) -> str:
    return _PREFIX.sub("", line)


class TracebackFolder:
    """Line filter that drops Python traceback blocks, header to exception line inclusive.

    Only the lines it returns reach the terminal; nothing is dropped from the log files."""

    def __init__(self) -> None:
        self.inside = False
        self.folded = 0  # tracebacks folded so far

    def keep(self, line: str) -> bool:
        text = _bare(line).rstrip("\n")
        if text.startswith(_TRACEBACK):
            if not self.inside:
                self.folded += 1
            self.inside = True
            return False
        if not self.inside:
            return True
        if not text.strip() or text.startswith((" ", "\t")) or text in _CHAINED:
            return False
        self.inside = False  # the exception line ends the block
        return False


def exception_line(text: str) -> str | None:
    """The exception line of the last traceback in ``text`` ("RuntimeError: …"), if any."""
    lines = [_bare(line).rstrip() for line in text.splitlines()]
    found: str | None = None
    inside = False
    for line in lines:
        if line.startswith(_TRACEBACK):
            inside = True
            continue
        if inside and line and not line.startswith((" ", "\t")) and line not in _CHAINED:
            found, inside = line, False
    return found


@dataclass
class _Followed:
    path: str
    prefix: str
    offset: int = 0
    partial: bytes = b""
    folder: TracebackFolder = field(default_factory=TracebackFolder)


class StderrRelay:
    """Follows workers' stderr files and writes the kept lines to ``out`` with a prefix.

    ``follow`` replaces the set of files (a new attempt); the previous files are drained
    first, so nothing written before a restart is lost from the terminal."""

    def __init__(
        self,
        interval_s: float = 0.1,
        out: Callable[[str], object] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self._out = out or _write_stderr
        self._files: list[_Followed] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, files: Iterable[tuple[str, str]]) -> None:
        """Follow these ``(path, prefix)`` files from their start, after draining the old."""
        with self._lock:
            self._drain(final=True)
            self._files = [_Followed(path, prefix) for path, prefix in files]
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="baige-stderr", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            self._drain(final=True)
            self._files = []

    def poll(self) -> None:
        with self._lock:
            self._drain(final=False)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def _drain(self, final: bool) -> None:
        for followed in self._files:
            try:
                with open(followed.path, "rb") as src:
                    src.seek(followed.offset)
                    chunk = src.read()
            except OSError:
                continue
            followed.offset += len(chunk)
            data = followed.partial + chunk
            lines = data.split(b"\n")
            followed.partial = lines.pop()
            if final and followed.partial:
                lines.append(followed.partial)
                followed.partial = b""
            for raw in lines:
                line = raw.decode("utf-8", errors="replace")
                if followed.folder.keep(line):
                    self._out(f"{followed.prefix}{line}\n")


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()
