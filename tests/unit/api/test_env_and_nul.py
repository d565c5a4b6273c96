"""Specs that could only fail later, at launch or in the database, are refused when read:
NUL characters anywhere, and environment variables that Baige sets itself."""

from __future__ import annotations

import pytest

from baige.api.loader import SpecError, load_specs
from baige.api.workloads import RESERVED_ENV

BASE = """\
kind: TrainingJob
name: j
queue: default
accelerators: {count: 1, types: [h100]}
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        load_specs(text, "job.yaml")
    return [(p.field, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    "extra",
    [
        'command: [python3, "a\\0b"]',
        'command: [python3]\nenv: {A: "x\\0"}',
        'command: [python3]\nworking_dir: "/tmp\\0/x"',
        'command: [python3]\nlabels: {team: "a\\0"}',
        'command: [python3]\nnode_selector: {"k\\0": v}',
    ],
)
def test_a_nul_character_anywhere_is_refused_naming_the_field(extra: str) -> None:
    found = problems(BASE + extra + "\n")
    assert len(found) == 1
    field, message = found[0]
    assert field.split(".")[0] in {"command", "env", "working_dir", "labels", "node_selector"}
    assert "NUL" in message


@pytest.mark.parametrize("name", sorted(RESERVED_ENV))
def test_a_variable_baige_sets_is_refused_naming_it(name: str) -> None:
    found = problems(BASE + f"command: [python3]\nenv: {{{name}: '1'}}\n")
    assert found[0][0] == "env" and name in found[0][1] and "Baige sets" in found[0][1]


def test_the_reserved_set_covers_every_vendor_and_the_rendezvous() -> None:
    for name in ("CUDA_VISIBLE_DEVICES", "ASCEND_RT_VISIBLE_DEVICES", "RANK", "WORLD_SIZE",
                 "MASTER_ADDR", "MASTER_PORT", "BAIGE_TOKEN"):  # fmt: skip
        assert name in RESERVED_ENV


def test_ordinary_variables_still_pass() -> None:
    (spec,) = load_specs(BASE + "command: [python3]\nenv: {NCCL_DEBUG: WARN, BAIGE_FAULT: x}\n")
    assert spec.env == {"NCCL_DEBUG": "WARN", "BAIGE_FAULT": "x"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("priority: 1000000000000000000000000000000", "priority"),
        ("priority: -1180591620717411303424", "priority"),
        ("max_restarts: 1000000000000000000000000000000", "max_restarts"),
        ("time_limit: 1e300", "time_limit"),
        ("resources: {cpu: 1000000000000000000000000000000}", "resources.cpu"),
        ("resources: {memory: 1000000000000000000000000000000}", "resources.memory"),
        ("checkpoint: {interval: 1e-300}", "checkpoint.interval"),
    ],
)
def test_extreme_numbers_are_refused_naming_the_field(extra: str, field: str) -> None:
    found = problems(BASE + "command: [python3]\n" + extra + "\n")
    assert any(f == field for f, _ in found), found


def test_a_sliver_of_a_card_is_refused() -> None:
    text = BASE.replace("{count: 1, types: [h100]}", "{share: 0.001, types: [h100]}")
    found = problems(text + "command: [python3]\n")
    assert "at most 50 replicas share one card" in found[0][1]
