"""$(VAR) expansion in a replica's arguments (Kubernetes' rules)."""

from __future__ import annotations

import pytest

from baige.backends.expand import expand_args

ENV = {"PORT": "8123", "BAIGE_REPLICA_INDEX": "2"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["--port", "$(PORT)"], ["--port", "8123"]),
        (["--port=$(PORT)", "r$(BAIGE_REPLICA_INDEX)"], ["--port=8123", "r2"]),
        (["$$(PORT)"], ["$(PORT)"]),
        (["$(MISSING)", "$PORT", "${PORT}"], ["$(MISSING)", "$PORT", "${PORT}"]),
        (["$(PORT)$(PORT)"], ["81238123"]),
    ],
)
def test_expansion(given: list[str], expected: list[str]) -> None:
    assert expand_args(given, ENV) == expected
