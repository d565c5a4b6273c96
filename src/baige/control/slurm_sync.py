"""Keeping Baige's nodes in step with a Slurm cluster's.

Every few seconds Slurm's inventory becomes Baige's nodes (GPU GRES mapped to catalog types),
which also serves as their heartbeat: a node Slurm reports down stops heartbeating and is
failed after the timeout, so its work is rescheduled. Draining is synchronised both ways: a
node drained in Slurm is drained in Baige (cordoned, and its work moved to other nodes), a
node cordoned in Baige is drained in Slurm (no new work; what runs there stays) — whichever
side changed since the last look wins.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from baige.api.nodes import AcceleratorGroup, NodeSpec
from baige.backends.slurm import SlurmBackend
from baige.control.auth import Principal
from baige.control.service import ControlService
from baige.store.tables import NodeRow

__all__ = ["SlurmSync"]

log = logging.getLogger("baige.slurm")


class SlurmSync:
    def __init__(self, service: ControlService, backend: SlurmBackend, who: Principal) -> None:
        self.service = service
        self.backend = backend
        self.who = who
        self.last: dict[str, tuple[bool, bool]] = {}  # node -> (drained in Slurm, cordoned here)

    def run_once(self) -> None:
        nodes = self.backend.inventory()
        with self.service.db.session() as session:
            rows = session.execute(
                select(NodeRow.name, NodeRow.cordoned).where(NodeRow.agent == "slurm")
            ).all()
        cordoned: dict[str, bool] = {str(row[0]): bool(row[1]) for row in rows}
        alive = [
            NodeSpec(
                name=node.name,
                accelerators=AcceleratorGroup(type=node.accel_type, count=node.gpus)
                if node.accel_type and node.gpus
                else None,
                cpu=node.cpus,  # cores, as a node spec reads a bare number
                memory=node.memory_mb * (1 << 20),  # bytes, likewise
                labels={"baige.io/slurm-gres": node.slurm_gpu_type} if node.slurm_gpu_type else {},
                topology=("slurm",),
                cordoned=node.drained,
            )
            for node in nodes
            if not node.down
        ]
        if alive:
            self.service.register_nodes(self.who, alive, agent="slurm")
        for node in nodes:
            here = cordoned.get(node.name, node.drained)
            previous = self.last.get(node.name)
            if previous is None or node.drained != previous[0]:
                if here != node.drained:  # Slurm changed (or first sight): follow it
                    if node.drained:  # an operator drained it in Slurm: move its work off
                        why = f"drained in Slurm ({node.reason or 'no reason given'})"
                        self.service.drain(self.who, node.name, why)
                    else:
                        self.service.set_cordon(self.who, node.name, False)
                    here = node.drained
                self.last[node.name] = (node.drained, here)
            elif here != previous[1]:  # cordoned or uncordoned in Baige: tell Slurm
                self.backend.set_drain(node.name, here, "cordoned in Baige")
                log.info("node %s %s in Slurm", node.name, "drained" if here else "resumed")
                self.last[node.name] = (here, here)
            else:
                self.last[node.name] = (node.drained, here)
