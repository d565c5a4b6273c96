"""The writes that come in bursts, each by group commit (``group_commit``): heartbeats
(10,000 nodes every 10 s are 1,000 requests a second), registrations (a cluster's agents
all register when it boots) and submissions (a sweep of thousands of jobs from a script).
Each request still gets its own answer and its own error."""

from __future__ import annotations

from collections.abc import Sequence

from baige.api.nodes import NodeSpec
from baige.api.views import WorkloadView
from baige.api.workloads import InferenceServiceSpec, TrainingJobSpec
from baige.control.auth import Principal
from baige.control.errors import NotFound
from baige.control.service import ControlService
from baige.server.group_commit import GroupCommit

__all__ = ["HeartbeatBatcher", "RegistrationBatcher", "SubmissionBatcher"]


class HeartbeatBatcher:
    """Heartbeats of concurrent requests marked in one statement
    (``ControlService.mark_alive``); a request naming a node not registered gets a 404
    that names only its own missing nodes."""

    def __init__(self, service: ControlService, max_names: int = 50_000) -> None:
        self.service = service
        self._commit: GroupCommit[frozenset[str], int] = GroupCommit(self._write, len, max_names)

    async def beat(self, names: list[str]) -> int:
        """Mark ``names`` alive (with whatever else is waiting); the count, or NotFound."""
        return await self._commit.submit(frozenset(names))

    def _write(self, batch: list[frozenset[str]]) -> list[int | Exception]:
        alive = self.service.mark_alive(sorted(set().union(*batch)))
        results: list[int | Exception] = []
        for names in batch:
            missing = names - alive
            results.append(
                NotFound(f"node(s) not registered: {', '.join(sorted(missing))}")
                if missing
                else len(names)
            )
        return results


class RegistrationBatcher:
    """Registrations of concurrent requests written in one transaction: where two name
    the same node, the later one's spec is the one kept, as if they had come one after
    the other. The caller has checked each request (``ControlService.check_registration``)."""

    def __init__(self, service: ControlService, max_nodes: int = 10_000) -> None:
        self.service = service
        self._commit: GroupCommit[tuple[Principal, Sequence[NodeSpec]], int] = GroupCommit(
            self._write, lambda item: len(item[1]), max_nodes
        )

    async def register(self, who: Principal, specs: Sequence[NodeSpec]) -> int:
        return await self._commit.submit((who, specs))

    def _write(self, batch: list[tuple[Principal, Sequence[NodeSpec]]]) -> list[int | Exception]:
        merged = {spec.name: spec for _, specs in batch for spec in specs}
        self.service.register_nodes(batch[0][0], list(merged.values()))
        return [len(specs) for _, specs in batch]


Submission = tuple[Principal, TrainingJobSpec | InferenceServiceSpec, str | None]


class SubmissionBatcher:
    """Submissions of concurrent requests in one transaction
    (``ControlService.submit_many``): each request gets its own workload, or its own
    error (an unknown queue, an idempotency key reused with another spec)."""

    def __init__(self, service: ControlService, max_items: int = 500) -> None:
        self.service = service
        self._commit: GroupCommit[Submission, tuple[WorkloadView, bool]] = GroupCommit(
            self._write, lambda _: 1, max_items
        )

    async def submit(self, item: Submission) -> tuple[WorkloadView, bool]:
        return await self._commit.submit(item)

    def _write(self, batch: list[Submission]) -> list[tuple[WorkloadView, bool] | Exception]:
        return self.service.submit_many(batch)
