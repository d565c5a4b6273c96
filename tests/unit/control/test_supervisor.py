"""The supervisor of a split `baige up`: a child that keeps dying is started again with a
growing pause, and stopping leaves no process behind (that the others are left alone is
``tests/integration/test_supervised.py``'s). Real child
processes (``python -m baige.control.processes``), given a launch they refuse (exit 2)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from baige.control.platform import PlatformOptions
from baige.control.processes import FIRST_BACKOFF_S, Child, Launch, Supervisor


def test_a_dying_child_is_restarted_with_a_growing_pause_and_stop_ends_all(tmp_path: Path) -> None:
    options = PlatformOptions(db_url=f"sqlite:///{tmp_path / 'x.db'}", home=Path(tmp_path),
                              accelerators=None)  # fmt: skip
    dying = Child("broken", Launch(options, "test", "nonsense"))  # type: ignore[arg-type]
    supervisor = Supervisor([dying], poll_s=0.05)
    runner = threading.Thread(target=supervisor.run)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while dying.restarts < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dying.restarts >= 2
        assert set(dying.exits) == {2}  # what the child said of its launch, each time
        assert dying.backoff >= 4 * FIRST_BACKOFF_S  # 0.5 s, then 1 s, then 2 s …
    finally:
        supervisor.stop()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert dying.process is not None and dying.process.poll() is not None
