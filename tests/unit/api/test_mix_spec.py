"""``accelerators.mix`` and ``batch``: what a job spanning chip types may say, refused with
the field named; and the split the controller plans for where such a job was placed."""

from __future__ import annotations

import pytest

from baige.api.loader import SpecError, load_specs
from baige.api.workloads import Mix, TrainingJobSpec
from baige.plan.runtime_split import chip_speed, split_for_placement
from baige.sched.from_api import workload_from_spec

JOB = """\
kind: TrainingJob
name: j
queue: default
replicas: 2
command: [python3, train.py]
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as caught:
        load_specs(text, "job.yaml")
    return [(p.field, p.message) for p in caught.value.problems]


def test_mix_reaches_the_scheduler_and_defaults_to_never() -> None:
    (spec,) = load_specs(JOB + "accelerators: {types: [h100, ascend-910b], mix: allowed}\n")
    assert isinstance(spec, TrainingJobSpec)
    assert workload_from_spec(spec).mix is Mix.ALLOWED
    (plain,) = load_specs(JOB + "accelerators: {types: [h100, ascend-910b]}\n")
    assert isinstance(plain, TrainingJobSpec) and plain.accelerators.mix is Mix.NEVER


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (JOB + "accelerators: {types: [h100], mix: allowed}\n", "accelerators", "two or more"),
        (JOB + "accelerators: {types: [h100, a100-80g], mix: often}\n", "accelerators.mix", ""),
        (
            JOB + "accelerators: {types: [h100, a100-80g], share: 0.5, mix: allowed}\n",
            "accelerators",
            "whole cards",
        ),
        (
            JOB + "accelerators: {types: [h100, a100-80g]}\nbatch: {size: 10, micro_batch: 4}\n",
            "batch",
            "multiple",
        ),
        (
            JOB + "accelerators: {count: 8, types: [h100, a100-80g]}\nbatch: {size: 8}\n",
            "",
            "16 ranks",
        ),
        (
            JOB + "accelerators: {types: [h100, a100-80g], mix: allowed}\n"
            "env: {BAIGE_HETERO_PLAN: /tmp/p.json}\n",
            "",
            "BAIGE_HETERO_PLAN",
        ),
        (
            JOB.replace("TrainingJob", "InferenceService")
            + "accelerators: {types: [h100, a100-80g], mix: allowed}\n",
            "",
            "training jobs",
        ),
    ],
)
def test_bad_mixes_name_the_field(text: str, field: str, words: str) -> None:
    found = problems(text)
    assert any(f.startswith(field) and words in m for f, m in found), found


def test_the_split_follows_the_types_speeds() -> None:
    """An A100 computes about a third of an H100 (the catalog's BF16 figures): it gets about
    a third of the micro-batches, and the batch is shared out whole."""
    plan = split_for_placement(["h100", "h100", "a100-80g"], global_batch=64, micro_batch=2)
    counts = [r.micro_batches for r in plan.ranks]
    assert sum(r.samples for r in plan.ranks) == 64
    assert counts[0] == counts[1] > counts[2] >= 1
    ratio = counts[2] / counts[0]
    assert abs(ratio - chip_speed("a100-80g")) < 0.15
    default = split_for_placement(["h100", "ascend-910b"])
    assert default.global_batch == 16 and default.types == ("h100", "ascend-910b")
    assert chip_speed("not-a-chip") == 1.0
