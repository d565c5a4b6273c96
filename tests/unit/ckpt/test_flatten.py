"""Nested state ↔ skeleton + named tensors, with DCP's naming."""

from __future__ import annotations

import collections
from typing import Any

import pytest

torch = pytest.importorskip("torch", reason="baige.ckpt needs torch: pip install 'baige[train]'")

from torch.distributed.checkpoint._nested_dict import flatten_state_dict  # noqa: E402

from baige.ckpt.flatten import MARK_TENSOR, flatten, unflatten  # noqa: E402

Pair = collections.namedtuple("Pair", "a b")


def test_round_trip_keeps_containers_and_values() -> None:
    state = {
        "model": collections.OrderedDict(w=torch.ones(2), b=torch.zeros(1)),
        "optim": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 0.1}]},
        "list": [torch.arange(3), "x", (1, torch.full((1,), 2.0))],
        "pair": Pair(torch.ones(1), None),
        "counter": collections.defaultdict(int, a=1),
    }
    skeleton, leaves = flatten(state)
    assert skeleton["model"]["w"] == {MARK_TENSOR: "model.w"}
    rebuilt = unflatten(skeleton, {leaf.key: leaf.tensor for leaf in leaves})
    assert type(rebuilt["model"]) is collections.OrderedDict
    assert type(rebuilt["pair"]) is Pair
    assert type(rebuilt["counter"]) is collections.defaultdict
    assert rebuilt["counter"]["missing"] == 0
    assert rebuilt["optim"]["param_groups"] == [{"lr": 0.1}]
    assert torch.equal(rebuilt["list"][2][1], torch.full((1,), 2.0))
    assert isinstance(rebuilt["list"][2], tuple)


def test_names_follow_dcp_flattening() -> None:
    state: dict[str, Any] = {
        "model": {"layer.0.weight": torch.ones(1)},
        "optim": {"state": {0: {"exp_avg": torch.ones(1)}}},
        "nested": [torch.ones(1), {"x": torch.ones(1)}],
    }
    _, leaves = flatten(state)
    flat, _ = flatten_state_dict(state)
    assert sorted(leaf.key for leaf in leaves) == sorted(flat)


def test_colliding_names_stay_unique() -> None:
    state = {"a.b": torch.ones(1), "a": {"b": torch.zeros(1)}}
    skeleton, leaves = flatten(state)
    assert sorted(leaf.key for leaf in leaves) == ["a.b", "a.b#2"]
    rebuilt = unflatten(skeleton, {leaf.key: leaf.tensor for leaf in leaves})
    assert rebuilt["a.b"].item() == 1 and rebuilt["a"]["b"].item() == 0


@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        ({"m": {"c": torch.zeros(1, dtype=torch.complex64)}}, TypeError,
         r"state\['m'\]\['c'\]: dtype complex64 cannot be stored"),
        ({"s": [torch.zeros(2).to_sparse()]}, TypeError, r"state\['s'\]\[0\]: only dense"),
        ({"x": {"__baige_tensor__": "y"}}, ValueError, r"state\['x'\]: a dict whose only key"),
        ([torch.ones(1)], TypeError, "state must be a dict"),
    ],
)  # fmt: skip
def test_bad_states_name_the_value(state: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        flatten(state)
