"""Choosing a buddy across failure domains: another rack of the block first, then another
block, deterministically and spread evenly."""

from __future__ import annotations

import collections

import pytest

from baige.ckpt.peer_topology import choose_buddy


def cluster(blocks: int, racks: int, nodes: int) -> dict[str, tuple[str, ...]]:
    return {
        f"b{b}r{r}n{n}": (f"block-{b}", f"rack-{r}")
        for b in range(blocks)
        for r in range(racks)
        for n in range(nodes)
    }


def test_the_buddy_is_in_another_rack_of_the_same_block_and_everyone_gets_one() -> None:
    nodes = cluster(blocks=2, racks=3, nodes=4)
    pairs = {me: choose_buddy(nodes, me) for me in nodes}
    for me, buddy in pairs.items():
        assert buddy is not None
        assert nodes[buddy][0] == nodes[me][0], "stays in the block"
        assert nodes[buddy][1] != nodes[me][1], "leaves the rack"
    # equal racks: a permutation, every node holds exactly one other node's snapshots
    assert sorted(b for b in pairs.values() if b) == sorted(nodes)
    assert choose_buddy(nodes, "b1r2n3") == "b1r0n3"  # the next rack, wrapping around


def test_a_block_with_one_rack_pairs_across_blocks() -> None:
    nodes = {**cluster(blocks=1, racks=2, nodes=2), "solo-a": ("block-9", "rack-0"),
             "solo-b": ("block-9", "rack-0")}  # fmt: skip
    for me in ("solo-a", "solo-b"):
        buddy = choose_buddy(nodes, me)
        assert buddy is not None and nodes[buddy][0] != "block-9"
    # the others still pair inside their own block
    assert nodes[choose_buddy(nodes, "b0r0n0") or ""] == ("block-0", "rack-1")


def test_deterministic_whatever_the_input_order() -> None:
    nodes = cluster(blocks=2, racks=2, nodes=3)
    reordered = dict(reversed(list(nodes.items())))
    assert all(choose_buddy(nodes, me) == choose_buddy(reordered, me) for me in nodes)


def test_deeper_paths_prefer_the_nearest_other_domain() -> None:
    nodes = {
        "a": ("zone-1", "block-1", "rack-1"),
        "b": ("zone-1", "block-2", "rack-1"),
        "c": ("zone-2", "block-1", "rack-1"),
    }
    assert choose_buddy(nodes, "a") == "b"  # another block of the zone before another zone
    assert choose_buddy(nodes, "c") == "a"  # alone in its zone: crosses zones


def test_without_another_rack_the_next_node_of_the_rack_and_alone_none() -> None:
    nodes = {"n2": (), "n0": (), "n1": ()}
    assert [choose_buddy(nodes, n) for n in ("n0", "n1", "n2")] == ["n1", "n2", "n0"]
    assert choose_buddy({"only": ("b", "r")}, "only") is None
    # a node whose topology is unknown still gets a node elsewhere
    assert choose_buddy({"x": (), "y": ("b", "r")}, "x") == "y"
    with pytest.raises(ValueError, match="not among"):
        choose_buddy(nodes, "n9")


def test_uneven_racks_spread_the_load() -> None:
    nodes = {**{f"big{i}": ("b", "r1") for i in range(4)}, "s0": ("b", "r2"), "s1": ("b", "r2")}
    load = collections.Counter(choose_buddy(nodes, n) for n in nodes)
    assert load["s0"] == 2 and load["s1"] == 2  # the big rack's nodes alternate
    assert max(load.values()) == 2
