"""Reading ``Model`` and ``Cluster`` YAML files with errors that name the file, line and field.

The only module of ``baige.plan`` that does I/O. It reuses the error types of
:mod:`baige.api.loader` (:class:`SpecError` holding :class:`SpecProblem` s), so
``baige plan`` reports a bad field exactly as ``baige validate`` does:
``cluster.yaml:9: groups[2].peak_tflops: …``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from baige.api.loader import SpecError, SpecProblem, read_documents, read_spec_text
from baige.api.yaml_errors import field_errors, line_of, node_at
from baige.plan.cluster import ChipGroup, Cluster, MissingFigureError
from baige.plan.model import ModelSpec, UnknownModelError, get_preset
from baige.plan.software import Software, get_software
from baige.plan.specs import ClusterFile, ModelFile, SoftwareFile

__all__ = [
    "load_cluster",
    "load_model",
    "load_software",
    "parse_cluster",
    "parse_model",
    "parse_software",
]

_Doc = TypeVar("_Doc", bound=BaseModel)


def _parse(text: str, source: str, model: type[_Doc], kind: str) -> tuple[_Doc, yaml.Node]:
    nodes, documents = read_documents(text, source)
    if len(documents) != 1:
        what = "the file is empty" if not documents else f"it holds {len(documents)} documents"
        raise SpecError([SpecProblem(source, None, "", f"expected one document, but {what}")])
    node, data = nodes[0], documents[0]
    if not isinstance(data, dict):
        raise SpecError([SpecProblem(source, line_of(node), "", "expected a mapping of fields")])
    if data.get("kind") != kind:
        found = data.get("kind")
        message = (
            f"required field is missing: this file must say 'kind: {kind}'"
            if found is None
            else f"expected {kind!r}, found {found!r}: is this the right file?"
        )
        kind_node = node_at(node, ("kind",))
        raise SpecError([SpecProblem(source, line_of(kind_node), "kind", message)])
    try:
        return model.model_validate(data), node
    except ValidationError as err:
        problems = [
            SpecProblem(source, e.line, e.field, e.message) for e in field_errors(err, model, node)
        ]
        raise SpecError(problems) from None


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
            target = node_at(node, ("groups", index))
            field = f"groups[{index}].{err.field}"
            problems.append(SpecProblem(source, line_of(target), field, str(err)))
    if problems:
        raise SpecError(problems)
    return spec.to_cluster(tuple(groups))


def load_model(name_or_path: str) -> ModelSpec:
    """A preset by name, or a ``Model`` YAML file by path."""
    if Path(name_or_path).suffix.lower() in {".yaml", ".yml"} or Path(name_or_path).is_file():
        return parse_model(read_spec_text(name_or_path), name_or_path)
    try:
        return get_preset(name_or_path)
    except UnknownModelError as err:
        raise SpecError([SpecProblem("--model", None, "", str(err))]) from None


def load_cluster(path: str | Path) -> Cluster:
    return parse_cluster(read_spec_text(path), str(path))


def parse_software(text: str, source: str = "<software>") -> Software:
    spec, _ = _parse(text, source, SoftwareFile, "Software")
    try:
        return spec.to_software()
    except ValueError as err:  # a combination the profile rejects (fsdp + distributed optimizer)
        raise SpecError([SpecProblem(source, None, "", str(err))]) from None


def load_software(name_or_path: str) -> Software:
    """A named profile (``megatron-core``, …) or a ``Software`` YAML file by path."""
    if Path(name_or_path).suffix.lower() in {".yaml", ".yml"} or Path(name_or_path).is_file():
        return parse_software(read_spec_text(name_or_path), name_or_path)
    return get_software(name_or_path)
