"""One `baige up` per SQLite database (one process's embedded database): a second is refused,
and told who holds the database. (On PostgreSQL several share it and one leads:
test_leadership.py.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from baige.control.platform import AlreadyRunning, already_running
from baige.store.db import Database


def test_a_second_baige_up_is_refused_naming_the_holder(sqlite_url: str, tmp_path: Path) -> None:
    first, second = Database(sqlite_url), Database(sqlite_url)
    try:
        with already_running(first, tmp_path):
            with pytest.raises(AlreadyRunning) as refused, already_running(second, tmp_path):
                pass
            assert f"pid {os.getpid()}" in str(refused.value)
        with already_running(second, tmp_path):  # released when the first stopped
            pass
    finally:
        first.dispose()
        second.dispose()
