"""Reading Model and Cluster files: every fault names file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from baige.api.loader import SpecError
from baige.plan import load_cluster, load_model, parse_cluster, parse_model

EXAMPLES = Path(__file__).parents[3] / "examples" / "plan"

CLUSTER = """\
kind: Cluster
name: c
groups:
  - chip: h100
    count: 64
    nic_gbps: 400
"""

MODEL = """\
kind: Model
name: m
layers: 4
hidden: 256
ffn_hidden: 1024
heads: 8
vocab: 1000
seq_len: 128
"""


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    kind = path.read_text().split("kind:", 1)[1].split()[0]
    loaded = load_cluster(path) if kind == "Cluster" else load_model(str(path))
    assert loaded.name


def test_mixed_example_is_the_cluster_of_the_issue() -> None:
    cluster = load_cluster(EXAMPLES / "mixed-10k.yaml")
    assert {g.chip: g.count for g in cluster.groups} == {
        "h100": 2048, "a100-80g": 4096, "ascend-910b": 4096,
    }  # fmt: skip
    assert any("assumed the low end, 256" in a for a in cluster.assumptions)


def test_a_model_file_becomes_the_same_model_as_its_fields() -> None:
    model = parse_model(
        MODEL + "kv_heads: 2\nmoe: {experts: 4, top_k: 1, expert_ffn_hidden: 512}\n"
    )
    assert (model.kv_heads, model.head_dim, model.experts, model.top_k) == (2, 32, 4, 1)
    assert model.params > 0


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (CLUSTER.replace("nic_gbps", "nic_gbs"), 6, "groups[0].nic_gbs", "did you mean 'nic_gbps'"),
        (CLUSTER.replace("    nic_gbps: 400\n", ""), 4, "groups[0].nic_gbps", "missing"),
        (CLUSTER.replace("h100", "h1000"), 4, "groups[0].chip", "unknown accelerator type"),
        (CLUSTER.replace("count: 64", "count: 0"), 5, "groups[0].count", "greater than or equal"),
        (CLUSTER.replace("h100", "kunlunxin-p800"), 4, "groups[0].peak_tflops", "set peak_tflops"),
        (CLUSTER.replace("h100", "ascend-910b"), 4, "groups[0].scale_up_gbs", "HCCS"),
        (CLUSTER + "  - chip: H100\n    count: 8\n    nic_gbps: 1\n", 4, "groups", "two groups"),
        (CLUSTER.replace("kind: Cluster", "kind: Model"), 1, "kind", "expected 'Cluster'"),
        (CLUSTER + "  efficiency: 2\n", 7, "", "invalid YAML"),
    ],
)
def test_cluster_errors_point_at_the_line(text: str, line: int, field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_cluster(text, "c.yaml")
    problem = next(p for p in caught.value.problems if p.field == field)
    assert (problem.source, problem.line) == ("c.yaml", line)
    assert message in problem.message


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ("kv_heads: 3\n", "", "multiple of kv_heads"),
        ("moe: {experts: 4, top_k: 5, expert_ffn_hidden: 8}\n", "moe", "exceeds experts"),
        ("heads_kv: 2\n", "heads_kv", "unknown field"),
    ],
)
def test_model_errors_name_the_field(extra: str, field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_model(MODEL + extra, "m.yaml")
    problem = caught.value.problems[0]
    assert problem.field == field and message in problem.message


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.yaml", "file not found"), ("llama3-9b", "unknown model 'llama3-9b'")],
)
def test_unknown_models(name: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        load_model(name)
