"""Hostile spec texts fail fast with a SpecError naming the line and the limit: aliases (the
"billion laughs" bomb), deep nesting, too many nodes, huge values; and the same for JSON."""

from __future__ import annotations

import json
import time

import pytest

from baige.api.loader import SpecError, load_specs, parse_spec
from baige.api.parse_limits import MAX_DEPTH, MAX_NODES, MAX_SCALAR, load_json
from baige.api.yaml_errors import MAX_ERRORS

JOB = """kind: TrainingJob
name: j
queue: default
command: [python, train.py]
accelerators: {types: [h100]}
"""


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The 485-byte bomb of issue 12: anchors of aliases of anchors, under ``labels:``."""
    lines = ["labels:", "  a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"  a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return JOB + "\n".join(lines) + "\n"


def fails_fast(text: str) -> SpecError:
    start = time.monotonic()
    with pytest.raises(SpecError) as caught:
        load_specs(text, "hostile.yaml")
    assert time.monotonic() - start < 5, "a hostile text must be refused quickly"
    return caught.value


def test_the_alias_bomb_is_refused_at_the_first_alias() -> None:
    error = fails_fast(alias_bomb())
    (problem,) = error.problems
    assert problem.line == 8  # the first line with an alias
    assert "YAML aliases (*a0) are not allowed" in problem.message
    assert str(problem).startswith("hostile.yaml:8: ")


def test_a_single_alias_is_refused_too() -> None:
    (problem,) = fails_fast(JOB + "labels: &l {a: b}\nnode_selector: *l\n").problems
    assert problem.line == 7 and "*l" in problem.message


def test_a_merge_key_is_an_alias() -> None:
    text = "base: &b {a: 1}\n" + JOB + "labels:\n  <<: *b\n"
    assert "aliases" in fails_fast(text).problems[0].message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 100_000 + "]" * 100_000, id="flow-lists"),
        pytest.param("a: {" * 100_000 + "}" * 100_000, id="flow-mappings"),
        pytest.param("".join(f"{'  ' * i}a:\n" for i in range(200)) + "  " * 200 + "b", id="block"),
        pytest.param("- " * 5000 + "x", id="block-lists"),
    ],
)
def test_deep_nesting_is_refused_naming_the_limit(text: str) -> None:
    (problem,) = fails_fast(text).problems
    assert f"more than {MAX_DEPTH} levels" in problem.message
    assert problem.line is not None


def test_nesting_within_the_limit_is_fine() -> None:
    # the spec's own depth plus a deep-ish label value is still refused by the model, not YAML
    text = JOB + "labels: " + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "\n"
    (problem,) = fails_fast(text).problems
    assert problem.field == "labels"


def test_too_many_nodes_is_refused_at_the_node_that_crosses() -> None:
    text = JOB + "labels:\n" + "".join(f"  k{i}: v\n" for i in range(MAX_NODES))
    (problem,) = fails_fast(text).problems
    assert f"more than {MAX_NODES} YAML nodes" in problem.message
    assert problem.line is not None and problem.line < MAX_NODES // 2 + 10


def test_a_huge_value_is_refused() -> None:
    (problem,) = fails_fast(JOB + "working_dir: " + "x" * (MAX_SCALAR + 1) + "\n").problems
    assert problem.line == 6 and f"at most {MAX_SCALAR}" in problem.message


def test_an_integer_python_cannot_build_is_a_spec_error() -> None:
    (problem,) = fails_fast(JOB + "replicas: " + "9" * 5000 + "\n").problems
    assert "cannot be read" in problem.message and "set_int_max_str_digits" not in problem.message


def test_an_explicit_null_document_is_skipped() -> None:
    (spec,) = load_specs("--- ~\n---\n" + JOB)
    assert spec.name == "j"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("labels: {" + ", ".join(f"k{i}: v" for i in range(300)) + "}", "labels"),
        ("labels: {" + "k" * 300 + ": v}", "labels"),
        ("labels: {k: " + "v" * 2000 + "}", "labels"),
        ("env: {" + ", ".join(f"E{i}: v" for i in range(1100)) + "}", "env"),
        ("node_selector: {k: " + "v" * 2000 + "}", "node_selector"),
        ("working_dir: " + "d" * 5000, "working_dir"),
    ],
)
def test_oversized_fields_are_refused_by_the_model(extra: str, field: str) -> None:
    problems = fails_fast(JOB + extra + "\n").problems
    assert any(p.field.startswith(field) for p in problems), problems


def test_a_long_command_is_refused() -> None:
    data = {**json.loads(json.dumps({"kind": "TrainingJob", "name": "j", "queue": "default"})),
            "accelerators": {"types": ["h100"]}, "command": ["x"] * 5000}  # fmt: skip
    with pytest.raises(SpecError) as caught:
        parse_spec(data)
    assert caught.value.problems[0].field == "command"


@pytest.mark.parametrize(
    "text", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000]
)
def test_deep_json_is_refused_before_json_recurses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError, match=f"more than {MAX_DEPTH} levels"):
        load_json(text)


def test_brackets_inside_json_strings_do_not_count() -> None:
    text = json.dumps({"a": "[" * 10_000, "b": ['\\"[' * 100]})
    assert load_json(text) == json.loads(text)


def test_thousands_of_unknown_fields_get_a_short_report() -> None:
    text = JOB + "".join(f"x{i}: 1\n" for i in range(9000))
    problems = fails_fast(text).problems
    assert len(problems) == MAX_ERRORS + 1
    assert problems[-1].message == f"and {9000 - MAX_ERRORS} more problems not listed"
