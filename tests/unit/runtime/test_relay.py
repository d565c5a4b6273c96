"""The launcher's terminal shows ranks' stderr without tracebacks, and one line per fault;
the rank's log file keeps everything."""

from __future__ import annotations

import textwrap
from pathlib import Path

from baige.runtime.relay import StderrRelay, TracebackFolder, exception_line
from baige.runtime.stacks import innermost_frame
from tests.integration.runtime.harness import run_baige

GLOO = """\
[rank0]: warming up
[rank0]: Traceback (most recent call last):
[rank0]:   File "train.py", line 120, in main
[rank0]:     loss = F.cross_entropy(net(x))
[rank0]:            ^^^^^^
[rank0]:
[rank0]: During handling of the above exception, another exception occurred:
[rank0]:
[rank0]: Traceback (most recent call last):
[rank0]:   File "train.py", line 121, in main
[rank0]:     raise
[rank0]: RuntimeError: [gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer
[rank0]: after the traceback
"""


def test_the_folder_drops_whole_tracebacks_chained_ones_included() -> None:
    folder = TracebackFolder()
    kept = [line for line in GLOO.splitlines() if folder.keep(line)]
    assert kept == ["[rank0]: warming up", "[rank0]: after the traceback"]
    assert folder.folded == 1


def test_exception_line_is_the_last_tracebacks_last_line() -> None:
    assert exception_line(GLOO) == (
        "RuntimeError: [gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer"
    )
    assert exception_line("no traceback here\n") is None


def test_the_relay_follows_files_across_attempts_and_keeps_partial_lines(tmp_path: Path) -> None:
    out: list[str] = []
    relay = StderrRelay(interval_s=3600, out=out.append)  # polled by hand
    first = tmp_path / "a.log"
    first.write_text("one\nTraceback (most recent call last):\n  File x\nValueError: boom\ntw")
    relay.follow([(str(first), "[rank0]:")])
    relay.poll()
    assert out == ["[rank0]:one\n"]
    with first.open("a") as f:
        f.write("o\n")
    second = tmp_path / "b.log"
    second.write_text("three")
    relay.follow([(str(second), "[rank1]:")])  # a new attempt: the old file is drained first
    relay.close()
    assert out == ["[rank0]:one\n", "[rank0]:two\n", "[rank1]:three\n"]


CRASHER = """\
import sys
from baige.runtime import attach

progress = attach(total_steps=10)
print("note to stderr", file=sys.stderr, flush=True)
for step in range(10):
    if step == 2:
        raise ValueError("boom at step 2")
    progress.step(step)
"""


def test_a_crash_is_one_line_on_the_terminal_and_whole_in_the_log(tmp_path: Path) -> None:
    script = tmp_path / "crasher.py"
    script.write_text(textwrap.dedent(CRASHER))
    run = run_baige(
        tmp_path / "run", ["--monitor-interval", "0.1", "--max-restarts", "0", "--", str(script)]
    )
    assert run.returncode == 1
    assert "[rank0]:note to stderr" in run.stderr  # other stderr still reaches the terminal
    assert "Traceback" not in run.stderr
    faults = [line for line in run.stderr.splitlines() if line.startswith("baige run: rank 0")]
    [fault_line] = faults  # one line for the one fault
    assert "ValueError: boom at step 2" in fault_line and "stderr.log" in fault_line
    [log] = (tmp_path / "run").glob("logs/*/attempt_0/0/stderr.log")
    text = log.read_text()
    assert "Traceback (most recent call last):" in text and "ValueError: boom at step 2" in text


STACKS = """\
Thread 0x00007f0000000002 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 324 in wait
  File "/usr/lib/python3.11/threading.py", line 622 in wait

Current thread 0x00007f0000000001 (most recent call first):
  File "/work/src/baige/runtime/faults.py", line 320 in hang_forever
  File "/work/src/baige/runtime/faults.py", line 280 in fire
  File "train.py", line 99 in <module>
"""


def test_a_hang_shows_one_line_per_rank_where_its_main_thread_was() -> None:
    where = innermost_frame(STACKS)
    assert where == 'File "/work/src/baige/runtime/faults.py", line 320 in hang_forever'
    assert innermost_frame("(pid 12 had already exited)") is None
