"""Reading ``Model`` and ``Cluster`` YAML files with errors that name the file, line and field.

The only module of ``baige.plan`` that does I/O. It reuses the error types of
:mod:`baige.api.loader` (:class:`SpecError` holding :class:`SpecProblem` s), so
``baige plan`` reports a bad field exactly as ``baige validate`` does:
``cluster.yaml:9: groups[2].peak_tflops: …``.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from baige.api.loader import SpecError, SpecProblem, read_documents
from baige.plan.cluster import ChipGroup, Cluster, MissingFigureError
from baige.plan.model import ModelSpec, UnknownModelError, get_preset
from baige.plan.specs import ClusterFile, ModelFile

__all__ = ["load_cluster", "load_model", "parse_cluster", "parse_model"]

_Doc = TypeVar("_Doc", bound=BaseModel)


def _line(node: yaml.Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _walk(node: yaml.Node | None, loc: tuple[str | int, ...]) -> tuple[yaml.Node | None, bool]:
    """The deepest node along ``loc`` and whether the last step landed on a key (for fields
    that are present but unknown) rather than on its value."""
    on_key = False
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if str(k.value) == str(part)]
            if not match:
                break
            node, on_key = match[0][1], False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node, on_key = node.value[part], False
        else:
            break
    return node, on_key


def _field(loc: tuple[str | int, ...]) -> str:
    text = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)
    return text.replace(".[", "[")


def _message(error: Any, model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        owner: type[BaseModel] | None = model
        for part in loc[:-1]:
            if owner is None or isinstance(part, int):
                continue
            annotation = (
                owner.model_fields[str(part)].annotation if part in owner.model_fields else None
            )
            owner = _model_in(annotation)
        if owner is not None:
            allowed = sorted(owner.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            return f"unknown field{hint} (allowed: {', '.join(allowed)})"
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "literal_error":
        return f"must be {error['ctx']['expected']}"
    return str(error["msg"]).removeprefix("Value error, ")


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside an annotation such as ``X | None`` or ``tuple[X, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _parse(text: str, source: str, model: type[_Doc], kind: str) -> tuple[_Doc, yaml.Node]:
    nodes, documents = read_documents(text, source)
    if len(documents) != 1:
        what = "the file is empty" if not documents else f"it holds {len(documents)} documents"
        raise SpecError([SpecProblem(source, None, "", f"expected one document, but {what}")])
    node, data = nodes[0], documents[0]
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(source, _line(node), "", "expected a mapping of fields")])
    if data.get("kind") != kind:
        found = data.get("kind")
        message = (
            f"required field is missing: this file must say 'kind: {kind}'"
            if found is None
            else f"expected {kind!r}, found {found!r}: is this the right file?"
        )
        kind_node, _ = _walk(node, ("kind",))
        raise SpecError([SpecProblem(source, _line(kind_node), "kind", message)])
    try:
        return model.model_validate(data), node
    except ValidationError as err:
        problems = []
        for error in err.errors():
            loc = tuple(error["loc"])
            target, _ = _walk(node, loc)
            if error["type"] == "extra_forbidden":
                parent, _ = _walk(node, loc[:-1])
                if isinstance(parent, yaml.MappingNode):
                    keys = [k for k, _ in parent.value if str(k.value) == str(loc[-1])]
                    target = keys[0] if keys else target
            message = _message(error, model, loc)
            problems.append(SpecProblem(source, _line(target), _field(loc), message))
        raise SpecError(problems) from None


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecProblem(str(path), None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError([SpecProblem(str(path), None, "", f"cannot be read: {err}")]) from None


def parse_model(text: str, source: str = "<model>") -> ModelSpec:
    spec, _ = _parse(text, source, ModelFile, "Model")
    return spec.to_model()


def parse_cluster(text: str, source: str = "<cluster>") -> Cluster:
    """A cluster with every figure resolved; a figure the catalog lacks and the file does not
    give is a :class:`SpecError` at that group's line, naming the field to add."""
    spec, node = _parse(text, source, ClusterFile, "Cluster")
    groups: list[ChipGroup] = []
    problems = []
    for index, group in enumerate(spec.groups):
        try:
            groups.append(group.to_group())
        except MissingFigureError as err:
            target, _ = _walk(node, ("groups", index))
            field = f"groups[{index}].{err.field}"
            problems.append(SpecProblem(source, _line(target), field, str(err)))
    if problems:
        raise SpecError(problems)
    return spec.to_cluster(tuple(groups))


def load_model(name_or_path: str) -> ModelSpec:
    """A preset by name, or a ``Model`` YAML file by path."""
    if Path(name_or_path).suffix.lower() in {".yaml", ".yml"} or Path(name_or_path).is_file():
        return parse_model(_read(name_or_path), name_or_path)
    try:
        return get_preset(name_or_path)
    except UnknownModelError as err:
        raise SpecError([SpecProblem("--model", None, "", str(err))]) from None


def load_cluster(path: str | Path) -> Cluster:
    return parse_cluster(_read(path), str(path))
