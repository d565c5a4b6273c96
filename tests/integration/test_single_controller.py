"""One `baige up` per database: a second is refused, and told who holds the database."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from baige.control.platform import AlreadyRunning, already_running
from baige.store.db import Database


def test_a_second_baige_up_is_refused_naming_the_holder(db_url: str, tmp_path: Path) -> None:
    first, second = Database(db_url), Database(db_url)
    try:
        with already_running(first, tmp_path):
            with pytest.raises(AlreadyRunning) as refused, already_running(second, tmp_path):
                pass
            message = str(refused.value)
            assert f"pid {os.getpid()}" in message
            if second.dialect == "postgresql":
                assert socket.gethostname()[:20] in message
        with already_running(second, tmp_path):  # released when the first stopped
            pass
    finally:
        first.dispose()
        second.dispose()
