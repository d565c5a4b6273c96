"""Nested training state ↔ a picklable skeleton plus a flat list of tensors.

A training state is a nest of dicts, lists and tuples (model, optimizer, scheduler, data
position, RNG states) with tensors at the leaves. Tensors go to the safetensors image by
name; everything else stays in the skeleton, which is pickled. Names follow
``torch.distributed.checkpoint``'s flattening (keys joined by ``.``) so a sharded tensor has
the same fully qualified name in Baige's manifest and in DCP's metadata.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch

from baige.ckpt.safetensors_format import DTYPE_CODES

__all__ = [
    "MARK_DTENSOR",
    "MARK_TENSOR",
    "DTensorInfo",
    "Leaf",
    "dtensor_leaves",
    "dtype_code",
    "flatten",
    "tensor_leaves",
    "torch_dtype",
    "unflatten",
]

MARK_TENSOR = "__baige_tensor__"
MARK_DTENSOR = "__baige_dtensor__"
_MARKS = (MARK_TENSOR, MARK_DTENSOR)

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class DTensorInfo:
    """Where this rank's local chunk sits in the global tensor, and whether this rank is the
    one that persists it (replicas of a chunk are written once)."""

    fqn: str
    path: Path_
    global_shape: tuple[int, ...]
    offsets: tuple[int, ...]
    persist: bool


@dataclass(frozen=True)
class Leaf:
    key: str
    tensor: torch.Tensor
    dtensor: DTensorInfo | None = None


_TORCH_DTYPES: dict[str, torch.dtype] = {
    code: getattr(torch, name) for name, code in DTYPE_CODES.items()
}


def torch_dtype(code: str) -> torch.dtype:
    """The torch dtype of a safetensors dtype code (``F32`` → ``torch.float32``)."""
    return _TORCH_DTYPES[code]


def dtype_code(dtype: torch.dtype, where: str) -> str:
    name = str(dtype).removeprefix("torch.")
    code = DTYPE_CODES.get(name)
    if code is None:
        raise TypeError(
            f"{where}: dtype {name} cannot be stored in safetensors "
            f"(supported: {', '.join(sorted(DTYPE_CODES))})"
        )
    return code


def _where(path: Path_) -> str:
    return "state" + "".join(f"[{p!r}]" for p in path)


def _dtensor_type() -> type | None:
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor  # noqa: PLC0415 - not in every torch build

    return DTensor


def flatten(state: Mapping[str, Any]) -> tuple[Any, list[Leaf]]:
    """Split ``state`` into (skeleton, leaves). The skeleton has the same containers, with
    each tensor replaced by ``{MARK_TENSOR: key}`` (or ``MARK_DTENSOR`` for a DTensor)."""
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    dtensor_cls = _dtensor_type()
    leaves: list[Leaf] = []
    used: set[str] = set()

    def name(path: Path_, unique: bool) -> str:
        base = ".".join(map(str, path))
        if base not in used:
            used.add(base)
            return base
        if not unique:
            raise ValueError(f"{_where(path)}: two sharded tensors flatten to the name {base!r}")
        n = 2
        while f"{base}#{n}" in used:
            n += 1
        used.add(f"{base}#{n}")
        return f"{base}#{n}"

    def walk(value: Any, path: Path_) -> Any:
        if isinstance(value, torch.Tensor):
            if dtensor_cls is not None and isinstance(value, dtensor_cls):
                info = _dtensor_info(value, path, name(path, unique=False))
                local = cast(Any, value).to_local().detach()
                dtype_code(local.dtype, _where(path))
                leaves.append(Leaf(info.fqn, local, info))
                return {MARK_DTENSOR: info.fqn}
            if value.layout != torch.strided or value.is_meta:
                raise TypeError(f"{_where(path)}: only dense tensors can be saved ({value.layout})")
            dtype_code(value.dtype, _where(path))
            key = name(path, unique=True)
            leaves.append(Leaf(key, value.detach()))
            return {MARK_TENSOR: key}
        if isinstance(value, Mapping):
            if len(value) == 1 and next(iter(value)) in _MARKS:
                raise ValueError(f"{_where(path)}: a dict whose only key is {next(iter(value))!r} "
                                 "is reserved by baige.ckpt")  # fmt: skip
            items = [(k, walk(v, (*path, str(k))))
                     for k, v in value.items()]  # fmt: skip
            return _rebuild_mapping(value, items)
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, tuple):
            items_t = [walk(v, (*path, i)) for i, v in enumerate(value)]
            return type(value)(*items_t) if hasattr(value, "_fields") else tuple(items_t)
        return value

    skeleton = {k: walk(v, (str(k),)) for k, v in state.items()}
    return skeleton, leaves


def _rebuild_mapping(value: Mapping[Any, Any], items: list[tuple[Any, Any]]) -> Any:
    if type(value) is dict:
        return dict(items)
    if isinstance(value, dict):
        out = copy.copy(value)  # keeps the subclass (OrderedDict, defaultdict's factory…)
        out.clear()
        out.update(items)
        return out
    return dict(items)


def _dtensor_info(value: Any, path: Path_, fqn: str) -> DTensorInfo:
    from torch.distributed.tensor import Partial, Shard  # noqa: PLC0415 - as above

    placements = tuple(value.placements)
    if any(isinstance(p, Partial) for p in placements):
        raise ValueError(
            f"{_where(path)}: DTensor with a Partial placement; redistribute it to "
            "Shard/Replicate before saving"
        )
    local = value.to_local()
    coord = value.device_mesh.get_coordinate()
    chunks = value.__create_chunk_list__()
    offsets = tuple(int(o) for o in chunks[0].offsets) if chunks else (0,) * value.dim()
    owner = coord is not None and all(
        coord[i] == 0 for i, p in enumerate(placements) if not isinstance(p, Shard)
    )
    has_data = local.numel() > 0 or (value.numel() == 0 and all(o == 0 for o in offsets))
    return DTensorInfo(
        fqn=fqn,
        path=path,
        global_shape=tuple(int(s) for s in value.shape),
        offsets=offsets,
        persist=owner and has_data,
    )


def dtensor_leaves(state: Mapping[str, Any]) -> dict[str, Any]:
    """The DTensors in ``state`` by fully qualified name (a load template's targets)."""
    dtensor_cls = _dtensor_type()
    out: dict[str, Any] = {}
    if dtensor_cls is None:
        return out

    def walk(value: Any, path: Path_) -> None:
        if isinstance(value, dtensor_cls):
            out[".".join(map(str, path))] = value
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, (*path, str(k)))
        elif isinstance(value, list | tuple):
            for i, v in enumerate(value):
                walk(v, (*path, i))

    for k, v in state.items():
        walk(v, (str(k),))
    return out


def tensor_leaves(state: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The plain (non-DTensor) tensors in ``state`` by the names ``flatten`` gives them: a
    load template's tensors, which a restore fills in place. The objects themselves (a
    ``Parameter`` stays one), not detached copies."""
    try:
        _, leaves = flatten(state)
    except (TypeError, ValueError):  # meta or sparse tensors: nothing to fill in place
        return {}
    dtensor_cls = _dtensor_type()
    found: list[torch.Tensor] = []

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if dtensor_cls is None or not isinstance(value, dtensor_cls):
                found.append(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v)

    walk(state)
    plain = [leaf.key for leaf in leaves if leaf.dtensor is None]
    return dict(zip(plain, found, strict=True))


def unflatten(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Rebuild the state: every marker becomes ``tensors[key]`` (plain and sharded alike)."""

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            if len(value) == 1:
                mark, key = next(iter(value.items()))
                if mark in _MARKS:
                    return tensors[key]
            return _rebuild_mapping(value, [(k, walk(v)) for k, v in value.items()])
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, tuple):
            items = [walk(v) for v in value]
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        return value

    return walk(skeleton)
