"""The shim's "cannot start" line becomes the reason of a replica that exited 127."""

from __future__ import annotations

import pytest

from baige.control.failure_reason import launch_failure_message

LINE = "baige: cannot start 'trian.py': [Errno 2] No such file or directory: 'trian.py'"


@pytest.mark.parametrize(
    ("log", "code", "expected"),
    [
        (f"{LINE}\n", 127, LINE.removeprefix("baige: ")),
        (f"some output\n{LINE}\n\n", 127, LINE.removeprefix("baige: ")),
        (f"{LINE}\n", 126, LINE.removeprefix("baige: ")),
        (f"{LINE}\n", 1, None),  # the command ran and failed: its own output says why
        (f"{LINE}\n", None, None),
        ("Traceback ...\nValueError: boom\n", 127, None),
        ("", 127, None),
    ],
)
def test_launch_failure_message(tmp_path, log, code, expected):
    path = tmp_path / "output.log"
    path.write_text(log)
    assert launch_failure_message(str(path), code) == expected


def test_reads_only_the_tail_of_a_long_log(tmp_path):
    path = tmp_path / "output.log"
    path.write_text("x" * 100_000 + "\n" + LINE + "\n")
    assert launch_failure_message(str(path), 127) == LINE.removeprefix("baige: ")


def test_missing_log_or_path_is_no_message(tmp_path):
    assert launch_failure_message(None, 127) is None
    assert launch_failure_message(str(tmp_path / "absent.log"), 127) is None
