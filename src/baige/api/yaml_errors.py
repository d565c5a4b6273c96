"""From a pydantic error on a YAML document to the line, the field and a message a person reads.

Specs (:mod:`baige.api.loader`), plan files (:mod:`baige.plan.loader`) and simulation scenarios
(:mod:`baige.sim.scenario`) are all YAML validated by pydantic models, and all report a fault as
``file.yaml:14: accelerators.count: must be at least 1``. This module is the one place that
turns a pydantic error location (``("accelerators", "count")``) into the YAML node it came
from (so its line), a readable field path (``groups[2].peak_tflops``) and a message: an unknown
field names the fields allowed there and the likely one meant, a missing one says so.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TypeAlias

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = [
    "MAX_ERRORS",
    "FieldError",
    "Loc",
    "describe",
    "field_errors",
    "field_path",
    "key_node",
    "line_of",
    "model_at",
    "node_at",
]

Loc: TypeAlias = tuple[str | int, ...]
"""A pydantic error location: field names and list indexes, outermost first."""

_PREFIXES = ("Value error, ",)

MAX_ERRORS = 50
"""Errors reported for one document: a text with 9,000 unknown fields gets the first few, not
9,000 messages (each placing its field costs a walk of the document)."""


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation error, placed: the YAML line (if known), the field path and the message."""

    line: int | None
    field: str
    message: str


def line_of(node: yaml.Node | None) -> int | None:
    """The 1-based line a node starts on; ``None`` without a node."""
    return None if node is None else node.start_mark.line + 1


def _entry(node: yaml.Node | None, name: str | int) -> tuple[yaml.Node, yaml.Node] | None:
    """The key and value nodes of ``name`` in a mapping node; ``None`` if absent."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if str(key.value) == str(name):
                entry: tuple[yaml.Node, yaml.Node] = (key, value)
                return entry
    return None


def _child(node: yaml.Node | None, part: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.SequenceNode):
        if isinstance(part, int) and part < len(node.value):
            item: yaml.Node = node.value[part]
            return item
        return None
    entry = _entry(node, part)
    return None if entry is None else entry[1]


def _path(node: yaml.Node | None, loc: Loc) -> list[yaml.Node | None]:
    """``node`` and the nodes along ``loc`` below it, as far as the document goes."""
    nodes = [node]
    for part in loc:
        child = _child(nodes[-1], part)
        if child is None:
            break
        nodes.append(child)
    return nodes


def node_at(node: yaml.Node | None, loc: Loc) -> yaml.Node | None:
    """The deepest node along ``loc``: the value at ``loc`` itself, or where the path stops
    (the mapping that lacks a required field, say)."""
    return _path(node, loc)[-1]


def key_node(node: yaml.Node | None, name: str | int) -> yaml.Node | None:
    """The key ``name`` of a mapping node (not its value); ``None`` if absent."""
    entry = _entry(node, name)
    return None if entry is None else entry[0]


def field_path(loc: Loc) -> str:
    """``("groups", 2, "peak_tflops")`` as ``groups[2].peak_tflops``."""
    text = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)
    return text.replace(".[", "[")


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None`` or ``tuple[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model whose fields sit at ``loc`` below ``model`` (list indexes pass through);
    ``None`` where ``loc`` leaves the models (a dict's key, a field that does not exist)."""
    owner: type[BaseModel] | None = model
    for part in loc:
        if owner is None or isinstance(part, int):
            continue
        field = owner.model_fields.get(part)
        owner = None if field is None else _model_in(field.annotation)
    return owner


def describe(
    error: ErrorDetails,
    model: type[BaseModel],
    *,
    strip: tuple[str, ...] = _PREFIXES,
    literals: bool = True,
) -> str:
    """The message for one error of validating ``model``. An unknown field lists those allowed
    and the closest; ``strip`` are prefixes pydantic puts before a validator's own words; with
    ``literals``, a value outside a ``Literal`` reads ``must be 'a' or 'b'``."""
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        owner = model_at(model, loc[:-1])
        if owner is not None:
            allowed = sorted(owner.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown field{hint} (allowed: {', '.join(allowed)})"
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if literals and kind == "literal_error":
        return f"must be {error['ctx']['expected']}"
    message = str(error["msg"])
    for prefix in strip:
        message = message.removeprefix(prefix)
    return message


def field_errors(
    err: ValidationError,
    model: type[BaseModel],
    node: yaml.Node | None,
    *,
    strip: tuple[str, ...] = _PREFIXES,
    literals: bool = True,
    limit: int = MAX_ERRORS,
) -> list[FieldError]:
    """The errors of validating ``model`` from the document whose node tree is ``node``, in
    pydantic's order, the first ``limit`` of them (then one saying how many more). An unknown
    field is placed at its key, anything else at its value (or where the path stops).
    ``strip`` and ``literals`` are as for :func:`describe`."""
    found: list[FieldError] = []
    errors = err.errors()
    for error in errors[:limit]:
        loc = tuple(error["loc"])
        nodes = _path(node, loc)
        target = nodes[-1]
        if error["type"] == "extra_forbidden" and loc and len(nodes) >= len(loc):
            target = key_node(nodes[len(loc) - 1], loc[-1]) or target
        message = describe(error, model, strip=strip, literals=literals)
        found.append(FieldError(line_of(target), field_path(loc), message))
    if len(errors) > limit:
        found.append(FieldError(None, "", f"and {len(errors) - limit} more problems not listed"))
    return found
