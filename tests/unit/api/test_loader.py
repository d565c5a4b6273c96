"""Specs read from YAML: valid ones load, invalid ones name the file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.api import (
    InferenceServiceSpec,
    NodeSpec,
    QueueSpec,
    SpecError,
    TrainingJobSpec,
    load_spec_file,
    load_specs,
)

EXAMPLES = Path(__file__).parents[3] / "examples" / "specs"

JOB = """\
kind: TrainingJob
name: train
queue: research
replicas: 4
accelerators:
  count: 8
  types: [H100, a100-80g]
command: [python, train.py]
"""


def test_examples_load() -> None:
    kinds = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for spec in load_spec_file(path):
            kinds[spec.kind] = spec
    assert set(kinds) == {"TrainingJob", "InferenceService", "Queue", "Node"}
    job = kinds["TrainingJob"]
    assert isinstance(job, TrainingJobSpec) and job.elastic and job.time_limit == 2 * 86400
    assert job.resources.memory == 1024 * 1024
    service = kinds["InferenceService"]
    assert isinstance(service, InferenceServiceSpec)
    assert service.accelerators.milli == 400 and service.priority > job.priority
    node = kinds["Node"]
    assert isinstance(node, NodeSpec)


def test_accelerator_names_are_normalised() -> None:
    (spec,) = load_specs(JOB)
    assert isinstance(spec, TrainingJobSpec)
    assert spec.accelerators.types == ("h100", "a100-80g")


@pytest.mark.parametrize(
    ("replace", "line", "field", "words"),
    [
        (("replicas: 4", "replicas: -1"), 4, "replicas", "greater than or equal to 1"),
        (("replicas: 4", "replica: 4"), 4, "replica", "did you mean 'replicas'"),
        (("count: 8", "count: -1"), 6, "accelerators.count", "greater than or equal"),
        (("[H100, a100-80g]", "[h100, tpu-v5]"), 7, "accelerators.types[1]", "unknown"),
        (
            ("[python, train.py]", "python train.py"),
            8,
            "command",
            "never runs commands through a shell",
        ),
        (("queue: research", "queue: Research!"), 3, "queue", "not a valid name"),
        (("name: train\n", ""), None, "name", "required"),
        (("kind: TrainingJob", "kind: TrainJob"), 1, "kind", "did you mean 'TrainingJob'"),
    ],
)
def test_errors_name_line_and_field(replace, line, field, words) -> None:
    text = JOB.replace(*replace)
    with pytest.raises(SpecError) as caught:
        load_specs(text, "job.yaml")
    problems = caught.value.problems
    assert any(p.field == field for p in problems), problems
    problem = next(p for p in problems if p.field == field)
    assert problem.source == "job.yaml"
    if line is not None:
        assert problem.line == line, problem
    assert words in problem.message, problem.message
    assert str(problem).startswith("job.yaml")


def test_every_error_is_reported_at_once() -> None:
    text = JOB.replace("replicas: 4", "replicas: 0").replace("count: 8", "count: 99")
    with pytest.raises(SpecError) as caught:
        load_specs(text, "job.yaml")
    assert {p.field for p in caught.value.problems} == {"replicas", "accelerators.count"}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("kind: TrainingJob\nname: [unclosed\n", "invalid YAML"),
        ("", "empty"),
        ("- just\n- a list\n", "mapping"),
        ("kind: Queue\nname: a\nname: b\n", "appears twice"),
    ],
)
def test_malformed_documents(text, words) -> None:
    with pytest.raises(SpecError) as caught:
        load_specs(text, "x.yaml")
    assert words in str(caught.value)


def test_multi_document_error_points_at_the_right_document() -> None:
    text = "kind: Queue\nname: ok\n---\nkind: Queue\nname: bad\nweight: -1\n"
    with pytest.raises(SpecError) as caught:
        load_specs(text, "q.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.field) == (6, "weight")


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_file(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(caught.value) and "not found" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("accelerators: {count: 2, share: 0.5, types: [h100]}", "single card"),
        ("accelerators: {count: 1, types: [h100, h100]}", "twice"),
        ("accelerators: {count: 1, types: []}", "list the accelerator types"),
        ("accelerators: {share: 0.0001, types: [h100]}", "smallest share"),
        # CPU-only: it must ask for host resources, and takes no share and no mix
        ("accelerators: {count: 0}", "resources: a CPU-only workload"),
        ("resources: {}", "resources: a CPU-only workload"),
        ("accelerators: {count: 0, share: 0.5}\nresources: {cpu: 1}", "needs count: 1"),
        ("resources: {cpu: 20000}", "resources.cpu: at most 10,000 cores"),  # not in milli
    ],
)
def test_accelerator_request_rules(body, words) -> None:
    text = f"kind: InferenceService\nname: s\nqueue: q\ncommand: [serve]\n{body}\n"
    with pytest.raises(SpecError) as caught:
        load_specs(text)
    assert words in str(caught.value)


def test_a_spec_without_accelerators_is_cpu_only() -> None:
    text = "kind: TrainingJob\nname: prep\nqueue: q\ncommand: [prep]\nresources: {cpu: 1.5, memory: 2Gi}\n"
    (spec,) = load_specs(text)
    assert spec.accelerators.count == 0 and spec.accelerators.types == ()
    # a stored spec is read back as written: 1.5 cores and 2 GiB, not 1500 cores or 0 bytes
    again = TrainingJobSpec.model_validate(spec.model_dump(mode="json"))
    assert (again.resources.cpu, again.resources.memory) == (1500, 2048)


def test_queue_quota_rules() -> None:
    with pytest.raises(SpecError) as caught:
        load_specs("kind: Queue\nname: q\nquotas:\n  h100: {guaranteed: 8, limit: 4}\n")
    assert "below guaranteed" in str(caught.value)
    (queue,) = load_specs("kind: Queue\nname: q\nquotas:\n  H100: {guaranteed: 2.5}\n")
    assert isinstance(queue, QueueSpec) and queue.quotas["h100"].guaranteed == 2.5
