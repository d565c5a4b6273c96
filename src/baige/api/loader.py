"""Reading specs from YAML with errors that point at the file, line and field.

A user who mistypes a field in a 200-line spec should be told ``job.yaml:14: accelerators.count:
must be at least 1``, not shown a traceback; so the loader keeps the YAML node tree alongside
the data and maps every validation error back to the line it came from.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import yaml
from pydantic import BaseModel, ValidationError

from baige.api.nodes import NodeSpec, PoolSpec
from baige.api.parse_limits import LimitExceeded, read_yaml
from baige.api.queues import QueueSpec
from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.api.yaml_errors import field_errors, line_of, node_at

__all__ = [
    "KINDS",
    "AnySpec",
    "SpecError",
    "SpecProblem",
    "load_spec_file",
    "load_specs",
    "parse_spec",
    "read_documents",
]

AnySpec: TypeAlias = TrainingJobSpec | InferenceServiceSpec | QueueSpec | NodeSpec | PoolSpec

KINDS: dict[str, type[BaseModel]] = {
    "TrainingJob": TrainingJobSpec,
    "InferenceService": InferenceServiceSpec,
    "Queue": QueueSpec,
    "Node": NodeSpec,
    "Pool": PoolSpec,
}


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """One thing wrong with a spec, located as precisely as the input allows."""

    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class SpecError(ValueError):
    """A spec could not be read; ``problems`` lists every fault found, each with its line."""

    def __init__(self, problems: list[SpecProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems

    def as_dicts(self) -> list[dict[str, object]]:
        """The problems in a shape an API can return as JSON."""
        return [
            {"source": p.source, "line": p.line, "field": p.field, "message": p.message}
            for p in self.problems
        ]


# pydantic's prefixes before a validator's own words, dropped from the messages
_PREFIXES = ("Value error, ", "Assertion failed, ")


def _duplicate_keys(node: yaml.Node, source: str, path: str = "") -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            field = f"{path}.{name}" if path else name
            if name in seen:
                problems.append(
                    SpecProblem(source, line_of(key), field, "appears twice; each field once")
                )
            seen.add(name)
            problems += _duplicate_keys(value, source, field)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            problems += _duplicate_keys(item, source, f"{path}[{index}]")
    return problems


def parse_spec(data: object, source: str = "<spec>", node: yaml.Node | None = None) -> AnySpec:
    """Validate one already-parsed document (a dict) into its spec model by ``kind``."""
    if not isinstance(data, dict):
        raise SpecError(
            [SpecProblem(source, line_of(node), "", "a spec must be a mapping with a 'kind' field")]
        )
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:  # a mapping is no kind (nor hashable)
        close = difflib.get_close_matches(str(kind), list(KINDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        message = "required field is missing" if kind is None else f"unknown kind {kind!r}{hint}"
        raise SpecError(
            [
                SpecProblem(
                    source,
                    line_of(node_at(node, ("kind",))),
                    "kind",
                    f"{message} (one of: {', '.join(KINDS)})",
                )
            ]
        )
    model = KINDS[str(kind)]
    try:
        spec = model.model_validate(data)
    except ValidationError as err:
        problems = [
            SpecProblem(source, e.line, e.field, e.message)
            for e in field_errors(err, model, node, strip=_PREFIXES, literals=False)
        ]
        raise SpecError(problems) from None
    return typing.cast(AnySpec, spec)


def read_documents(text: str, source: str) -> tuple[list[yaml.Node], list[object]]:
    """The non-empty YAML documents in ``text``: their node trees (for line numbers) and their
    data. Syntax errors, and texts over the limits of :mod:`baige.api.parse_limits` (aliases,
    depth, node count, value size), become a :class:`SpecError` naming the line; the limits are
    checked while composing, so a hostile text fails fast."""
    try:
        documents = read_yaml(text)
    except LimitExceeded as err:
        mark = err.problem_mark
        line = None if mark is None else mark.line + 1
        raise SpecError([SpecProblem(source, line, "", str(err.problem))]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = None if mark is None else mark.line + 1
        problem = err.problem or err.context or "cannot be parsed"
        raise SpecError([SpecProblem(source, line, "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as err:
        raise SpecError([SpecProblem(source, None, "", f"invalid YAML: {err}")]) from None
    return [d.node for d in documents], [d.data for d in documents]


def load_specs(text: str, source: str = "<string>") -> list[AnySpec]:
    """Every spec in a (multi-document) YAML text, or a :class:`SpecError` listing all faults."""
    nodes, documents = read_documents(text, source)
    if not documents:
        raise SpecError([SpecProblem(source, None, "", "no spec found: the file is empty")])
    problems: list[SpecProblem] = []
    specs: list[AnySpec] = []
    for node, data in zip(nodes, documents, strict=True):
        duplicates = _duplicate_keys(node, source)
        if duplicates:
            problems += duplicates
            continue
        try:
            specs.append(parse_spec(data, source, node))
        except SpecError as err:
            problems += err.problems
    if problems:
        raise SpecError(problems)
    return specs


def read_spec_text(path: str | Path) -> str:
    """A spec file's text; a missing or unreadable file is a :class:`SpecError` naming it,
    so every loader reports it the same way."""
    location = str(path)
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecProblem(location, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([SpecProblem(location, None, "", f"cannot be read: {err}")]) from None


def load_spec_file(path: str | Path) -> list[AnySpec]:
    """Every spec in a YAML file; an unreadable file is a :class:`SpecError` naming it."""
    return load_specs(read_spec_text(path), str(path))
