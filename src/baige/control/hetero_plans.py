"""The split of a job spanning accelerator types, planned where it was placed.

A training job with ``accelerators.mix`` may be admitted on several types at once. At every
admission and resize the controller plans its split for the chips it actually got (ranks in
replica order, each rank's type from its node; micro-batches by the types' relative speeds,
:func:`baige.plan.runtime_split.split_for_placement`), keeps it on the job (the
``hetero_plan`` column, shown as ``split`` in the job's view) and hands it to every replica
as a file named by ``BAIGE_HETERO_PLAN``. A restart is a new admission, so it re-plans too.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from baige.api.views import SplitPart, SplitView
from baige.api.workloads import Mix, TrainingJobSpec
from baige.plan.runtime_split import split_for_placement
from baige.store.tables import NodeRow, WorkloadRow
from baige.train.plan import PLAN_ENV, HeteroPlan, PlanError

__all__ = ["PLAN_ENV", "replan", "split_view"]

log = logging.getLogger("baige.controller")


def replan(session: Session, workload: WorkloadRow) -> None:
    """Plan (or clear) the split of ``workload`` for its current placements."""
    if workload.kind != "TrainingJob":
        return
    spec = TrainingJobSpec.model_validate(workload.spec)
    if spec.accelerators.mix is Mix.NEVER:
        return
    nodes = [str(p.get("node", "")) for p in workload.placements]
    if not nodes:
        workload.hetero_plan = None
        return
    query = select(NodeRow.name, NodeRow.accel_type).where(NodeRow.name.in_(set(nodes)))
    types: dict[str, str] = dict(session.execute(query).all())
    # one rank per card, replica by replica: torchrun's order when each replica runs one
    # process per card (global rank = replica index × cards + local rank)
    rank_types = [
        types.get(str(p.get("node", ""))) or workload.accel_type or ""
        for p in workload.placements
        for _ in range(max(1, len(p.get("devices") or ())))  # type: ignore[arg-type]
    ]
    batch = spec.batch
    try:
        plan = split_for_placement(
            rank_types,
            None if batch is None else batch.size,
            1 if batch is None else batch.micro_batch,
        )
    except PlanError as err:  # e.g. grown past the batch's micro-batches: run unplanned
        log.warning("job %s: no split planned for %d ranks: %s", workload.id, len(nodes), err)
        workload.hetero_plan = None
        return
    workload.hetero_plan = plan.model_dump(mode="json")


def split_view(data: dict[str, object] | None) -> SplitView | None:
    """The job view's summary of a stored plan (None: the job has none)."""
    if not data:
        return None
    plan = HeteroPlan.model_validate(data)
    parts = [
        SplitPart(
            type=accel,
            ranks=list(plan.ranks_of(accel)),
            micro_batches=[plan.share(r).micro_batches for r in plan.ranks_of(accel)],
            samples=sum(plan.share(r).samples for r in plan.ranks_of(accel)),
        )
        for accel in plan.types
    ]
    micro = plan.ranks[0].micro_batch_size
    return SplitView(global_batch=plan.global_batch, micro_batch_size=micro, parts=parts)
