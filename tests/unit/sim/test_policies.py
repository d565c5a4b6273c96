"""The FGD paper's baselines, each on a small cluster whose outcome was worked out by hand
from the paper's simulator's formulas (hkust-adsl/kubernetes-scheduler-simulator,
``pkg/simulator/plugin/*_score.go``): which node, and why."""

from __future__ import annotations

from dataclasses import replace

import pytest

from baige.sched import Admit, run_cycle
from baige.sched.cycle import access_shares
from baige.sched.model import Node
from baige.sched.plugins import fragmentation_of
from baige.sched.testing import make_job, make_node, make_snapshot
from baige.sim.policies import get_policy


def _node(name: str, devices: int = 8, cpu_cores: int = 64) -> Node:
    return replace(make_node(name, "h100", devices), cpu_milli=cpu_cores * 1000)


def _placed(policy: str, nodes: list[Node], running: list, task) -> tuple[str, tuple[int, ...]]:
    snapshot = make_snapshot(nodes, workloads=[*running, task])
    result = run_cycle(snapshot, 0.0, get_policy(policy))
    (admit,) = [d for d in result.decisions if isinstance(d, Admit)]
    (placement,) = admit.placements
    return placement.node, placement.devices


def _busy(name: str, node: str, cards: int, cpu_cores: int, milli: int = 1000):
    job = make_job(name).host(cpu_milli=cpu_cores * 1000)
    job = job.share(milli) if milli < 1000 else job.gpus(cards)
    return job.running("h100", [(node, range(cards), milli)])


def test_best_fit_weighs_cpu_left_as_much_as_cards_left():
    # a: 4 cards and 32 of 64 cores free; b: 2 cards but 60 cores free. A 1-card, 4-core
    # task leaves a: 0.5×3/8 + 0.5×28/64 = 0.406 → 59; b: 0.5×1/8 + 0.5×56/64 = 0.5 → 50
    nodes = [_node("a"), _node("b")]
    running = [_busy("ra", "a", 4, 32), _busy("rb", "b", 6, 4)]
    task = make_job("t").gpus(1).host(cpu_milli=4000)
    assert _placed("best-fit", nodes, running, task)[0] == "a"


def test_dot_product_prefers_the_free_vector_least_aligned_with_the_request():
    # a: free (32/64 cores, 4/8 cards) · request (4/64, 1/8) = 0.094 → 95; b: free (16/64,
    # 2/8) → 0.047 → 97: b wins
    nodes = [_node("a"), _node("b")]
    running = [_busy("ra", "a", 4, 32), _busy("rb", "b", 6, 48)]
    task = make_job("t").gpus(1).host(cpu_milli=4000)
    assert _placed("dot-product", nodes, running, task)[0] == "b"


def test_gpu_packing_shared_card_then_busy_node_then_the_smallest_idle_node():
    nodes = [_node("idle8"), _node("idle4", devices=4), _node("shared"), _node("busy")]
    running = [_busy("half", "shared", 1, 1, milli=500), _busy("whole", "busy", 2, 1)]
    # a share goes on the shared card (100 - 50/10 = 95), not a free card of it (49)
    assert _placed("gpu-packing", nodes, running, make_job("s").share(300)) == ("shared", (0,))
    # a whole card: a node in use (50 - 1 = 49) before an idle one (33 - 8 = 25);
    # "shared" and "busy" tie at 49, and a tie goes to the node first in the snapshot
    assert _placed("gpu-packing", nodes, running, make_job("w").gpus(1))[0] == "shared"
    # no node in use: the smaller idle node (33 - 4 = 29 against 25)
    assert _placed("gpu-packing", nodes[:2], [], make_job("w").gpus(1))[0] == "idle4"


def test_gpu_clustering_groups_by_the_papers_pod_tags():
    nodes = [_node("idle"), _node("shares"), _node("ones")]
    running = [_busy("half", "shares", 1, 1, milli=500), _busy("one", "ones", 1, 1)]
    # a share of another size has the same tag as the 0.5 share: 75 + 25×500/8000 → "shares"
    assert _placed("gpu-clustering", nodes, running, make_job("s").share(300))[0] == "shares"
    assert _placed("gpu-clustering", nodes, running, make_job("w").gpus(1))[0] == "ones"
    # a 2-card task has no like node: an idle node (25) beats nodes of other tags (1, 3)
    assert _placed("gpu-clustering", nodes, running, make_job("d").gpus(2))[0] == "idle"


def test_random_picks_nodes_uniformly_not_cards():
    # "many" has eight half-used cards a 0.3 share fits, "one" a single one: a random
    # choice per card would pick "many" 8 times in 9; the paper picks the node uniformly
    nodes = [_node("many"), _node("one")]
    running = [make_job(f"m{i}").share(500).running("h100", [("many", [i], 500)]) for i in range(8)]
    running.append(make_job("o").share(500).running("h100", [("one", [0], 500)]))
    running.append(make_job("f").gpus(7).running("h100", [("one", range(1, 8))]))
    picks = [_placed("random", nodes, running, make_job(f"t{i}").share(300))[0] for i in range(300)]
    assert 0.4 < picks.count("many") / len(picks) < 0.6


@pytest.mark.parametrize("policy", ["gpu-packing", "gpu-clustering"])
def test_cpu_only_tasks_are_indifferent_to_card_based_policies(policy):
    nodes = [_node("a"), _node("b")]
    running = [_busy("rb", "b", 4, 4)]
    # every node scores 0: the first node in the snapshot takes it
    task = make_job("c").cpu_only(8000)
    assert _placed(policy, nodes, running, task) == ("a", ())


def test_fragmentation_counts_every_free_card_as_idle_to_a_cpu_only_task():
    assert fragmentation_of((1000,) * 8, 0, {(0, 1000): 1.0}) == 8000
    assert fragmentation_of((1000,) * 8, 0, {(0, 1000): 0.5, (1, 1000): 0.5}) == 4000


def test_cards_of_a_type_a_shape_cannot_use_are_fragmented_to_it():
    # half of the 1-card demand accepts this node's type: half of its 8 free cards count
    free = (1000,) * 8
    assert fragmentation_of(free, 0, {(1, 1000): 1.0}, access={(1, 1000): 0.5}) == 4000
    assert fragmentation_of(free, 0, {(1, 1000): 1.0}, access={}) == 0


def test_access_shares_per_shape_and_type():
    counts = {(1, 1000): {("t4",): 1, (): 3}, (8, 1000): {(): 2}, (2, 1000): {("t4", "g2"): 4}}
    shares = access_shares(counts, ["g2", "t4"])
    assert shares[(1, 1000)] == {"*": 0.75, "g2": 0.75, "t4": 1.0}
    assert (8, 1000) not in shares  # every replica accepts every type: nothing to weigh
    assert (2, 1000) not in shares  # both of the cluster's types: the same
