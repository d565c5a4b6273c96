"""Nothing a test starts may outlive it: agents, workers and checkpoint persisters all carry
the run directory, so they can be found, and killed by pid if a test failed to end them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.runtime.harness import processes_of


@pytest.fixture(autouse=True)
def no_leaked_processes(tmp_path: Path) -> Iterator[None]:
    yield
    deadline = time.monotonic() + 10
    left = processes_of(tmp_path)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = processes_of(tmp_path)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left behind: {left}"
