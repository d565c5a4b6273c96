"""Recovery models: what a node failure costs a training job, as data with its provenance.

ETTR at 10,000 cards is decided less by the work a failure loses (at most one checkpoint
interval) than by what every failure and every checkpoint costs on the clock: noticing the
failure, getting a node back (a hot spare swapped in, or the whole job requeued and placed
again), starting the processes, and restoring the state from a buddy's memory or from disk.
Guessed costs made the simulator's figures guesses too, so those costs live in a JSON file a
benchmark writes (``bench/runtime_faults.py --write-model``) and a scenario names
(``training.recovery.model``); every figure says where it came from (``sources``).

The file (``kind: RecoveryModel``, ``version: 1``; seconds throughout)::

    {"kind": "RecoveryModel", "version": 1, "name": "...",
     "source": "how the file was produced",
     "detection": 0.4,        # fault → noticed
     "swap": 0.0,             # a hot spare takes the failed node's place
     "reschedule": 30,        # no spare: the job is requeued and placed again
     "restart": 3.9,          # processes started, rendezvous, up to the restore
     "restore": {"local_memory": 0.3, "peer_memory": 0.3, "disk": 0.3},
     "checkpoint_stall": 0.01,  # training blocked per save
     "sources": {"detection": "measured by …", "swap": "given …"},  # per figure
     "measured": {...}}       # anything else the benchmark saw (free-form)

A mistake is a :class:`~baige.api.loader.SpecError` naming the file, the line and the field
(``model.json:7: restore.disk: Input should be greater than or equal to 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baige.api.loader import SpecError, SpecProblem, read_documents, read_spec_text
from baige.api.yaml_errors import field_errors
from baige.sim.scenario import LoadedScenario

__all__ = [
    "DEFAULT_STALL",
    "Recovery",
    "RecoveryModel",
    "RestoreSource",
    "RestoreTimes",
    "checkpoint_stall",
    "load_recovery_model",
    "parse_recovery_model",
    "recovery_for",
]

Seconds = Annotated[float, Field(ge=0, le=86400)]
DEFAULT_STALL = 30.0  # a save's stall when neither the scenario nor a model gives one


class RestoreSource(StrEnum):
    """Where a restarted job reads its checkpoint from (the slowest of its ranks counts)."""

    LOCAL_MEMORY = "local_memory"
    PEER_MEMORY = "peer_memory"
    DISK = "disk"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RestoreTimes(_Model):
    local_memory: Seconds  # the node's own shared memory (a process restarted in place)
    peer_memory: Seconds  # a buddy node's memory, over the network (a node was lost)
    disk: Seconds  # the persisted checkpoint (no replica in memory survived)


class RecoveryModel(_Model):
    """One recovery model file; see the module docstring for the fields."""

    kind: Literal["RecoveryModel"]
    version: Literal[1]
    name: str = ""
    source: str = Field(min_length=1)
    detection: Seconds
    swap: Seconds
    reschedule: Seconds
    restart: Seconds
    restore: RestoreTimes
    checkpoint_stall: Seconds = 0.0
    sources: dict[str, str] = Field(default_factory=dict)
    measured: dict[str, object] = Field(default_factory=dict)


def parse_recovery_model(text: str, source: str = "<recovery model>") -> RecoveryModel:
    """A model from JSON text (read as YAML, so problems carry line numbers)."""
    nodes, documents = read_documents(text, source)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise SpecError([SpecProblem(source, None, "", "expected one JSON object")])
    try:
        return RecoveryModel.model_validate(documents[0])
    except ValidationError as err:
        problems = [
            SpecProblem(source, e.line, e.field, e.message)
            for e in field_errors(err, RecoveryModel, nodes[0])
        ]
        raise SpecError(problems) from None


def load_recovery_model(path: str | Path) -> RecoveryModel:
    return parse_recovery_model(read_spec_text(path), str(path))


@dataclass(frozen=True, slots=True)
class Recovery:
    """A recovery model as the engine charges it, with the scenario's choices: ``spares``
    hot spare nodes per accelerator type (held out of the scheduler), and ``peer``: whether
    checkpoints are replicated to a buddy node's memory."""

    detection: float
    swap: float
    reschedule: float
    restart: float
    restore_local: float
    restore_peer: float
    restore_disk: float
    spares: int = 0
    peer: bool = True

    @classmethod
    def from_model(
        cls, model: RecoveryModel, *, spares: int, peer: bool, restart: float | None = None
    ) -> Recovery:
        return cls(
            detection=model.detection,
            swap=model.swap,
            reschedule=model.reschedule,
            restart=model.restart if restart is None else restart,
            restore_local=model.restore.local_memory,
            restore_peer=model.restore.peer_memory,
            restore_disk=model.restore.disk,
            spares=spares,
            peer=peer,
        )

    def restore(self, source: RestoreSource) -> float:
        if source is RestoreSource.LOCAL_MEMORY:
            return self.restore_local
        if source is RestoreSource.PEER_MEMORY:
            return self.restore_peer
        return self.restore_disk

    @property
    def after_node_loss(self) -> RestoreSource:
        """Where a job that lost a node restores from when its buddy holds the replica."""
        return RestoreSource.PEER_MEMORY if self.peer else RestoreSource.DISK

    def swapped(self, source: RestoreSource) -> float:
        """Failure to training again with a spare: the job never leaves the scheduler."""
        return self.detection + self.swap + self.restart + self.restore(source)

    def requeued(self, source: RestoreSource) -> float:
        """From the scheduler placing the job again to training (detection and the wait for
        a pass and free nodes are on the clock already)."""
        return self.reschedule + self.restart + self.restore(source)

    @property
    def first_start(self) -> float:
        return self.reschedule + self.restart

    def failure_cost(self) -> float:
        """Fault to training again, the ``R`` of Young/Daly, when the buddy holds the
        replica: through a spare if there are any, else a requeue."""
        source = self.after_node_loss
        if self.spares > 0:
            return self.swapped(source)
        return self.detection + self.requeued(source)


def recovery_for(loaded: LoadedScenario) -> Recovery | None:
    """The scenario's recovery (``training.recovery``), its model file read; None when the
    scenario charges the fixed ``training.restart`` costs instead."""
    spec = loaded.scenario.training.recovery
    if spec is None:
        return None
    path = loaded.resolve(("training", "recovery", "model"), spec.model)
    model = load_recovery_model(path)
    return Recovery.from_model(model, spares=spec.spares, peer=spec.peer, restart=spec.restart)


def checkpoint_stall(loaded: LoadedScenario) -> float:
    """Seconds a save blocks training: the scenario's ``checkpoint.stall``, else its recovery
    model's ``checkpoint_stall``, else 30 s."""
    training = loaded.scenario.training
    if training.checkpoint.stall is not None:
        return training.checkpoint.stall
    if training.recovery is not None:
        path = loaded.resolve(("training", "recovery", "model"), training.recovery.model)
        return load_recovery_model(path).checkpoint_stall
    return DEFAULT_STALL
