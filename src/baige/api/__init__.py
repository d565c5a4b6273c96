"""The typed objects users write and read: specs and statuses shared by every layer.

Everything here is a pydantic model a user can write in YAML; ``load_specs`` reads them with
errors that name the file, line and field.
"""

from baige.api.loader import (
    KINDS,
    AnySpec,
    SpecError,
    SpecProblem,
    load_spec_file,
    load_specs,
    parse_spec,
)
from baige.api.nodes import AcceleratorGroup, Health, NodeSpec, NodeStatus, PoolSpec
from baige.api.quantities import parse_cpu_milli, parse_duration_s, parse_memory_mib
from baige.api.queues import Ordering, QueueQuota, QueueSpec, QueueTreeError, check_queue_tree
from baige.api.workloads import (
    DEFAULT_INFERENCE_PRIORITY,
    AcceleratorRequest,
    Autoscale,
    CheckpointPolicy,
    InferenceServiceSpec,
    Phase,
    ReplicaPlacement,
    Resources,
    TopologyLevel,
    TopologyPolicy,
    TrainingJobSpec,
    WorkloadSpec,
    WorkloadStatus,
)

__all__ = [
    "DEFAULT_INFERENCE_PRIORITY",
    "KINDS",
    "AcceleratorGroup",
    "AcceleratorRequest",
    "AnySpec",
    "Autoscale",
    "CheckpointPolicy",
    "Health",
    "InferenceServiceSpec",
    "NodeSpec",
    "NodeStatus",
    "Ordering",
    "Phase",
    "PoolSpec",
    "QueueQuota",
    "QueueSpec",
    "QueueTreeError",
    "ReplicaPlacement",
    "Resources",
    "SpecError",
    "SpecProblem",
    "TopologyLevel",
    "TopologyPolicy",
    "TrainingJobSpec",
    "WorkloadSpec",
    "WorkloadStatus",
    "check_queue_tree",
    "load_spec_file",
    "load_specs",
    "parse_cpu_milli",
    "parse_duration_s",
    "parse_memory_mib",
    "parse_spec",
]
