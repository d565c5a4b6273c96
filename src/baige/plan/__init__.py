"""The parallel-strategy planner for (mixed-chip) LLM training.

Given a transformer, a global batch and a cluster, it searches data/tensor/pipeline/context/
expert parallel degrees, micro-batching, recomputation, interleaving and — on a mixed
cluster — the assignment of pipeline stages to chip types, the non-uniform split of layers
and per-type batch shares, using an analytic cost model (:mod:`baige.plan.cost`) whose one
fitted figure per chip family (:mod:`baige.plan.efficiency`) is fitted over published
measurements from several sources and checked row by row (docs/plan.md). Pure: no clock,
no I/O, except :mod:`baige.plan.loader`, which reads YAML.
"""

from baige.plan.calibrate import calibrate_efficiency
from baige.plan.candidates import Candidates
from baige.plan.cluster import (
    DEFAULT_EFFICIENCY,
    ChipGroup,
    Cluster,
    MissingFigureError,
    resolve_group,
)
from baige.plan.efficiency import FAMILIES, ChipEfficiency, chip_efficiency
from baige.plan.estimate import Estimate, PlanError, check_strategy, estimate, evaluate
from baige.plan.loader import (
    load_cluster,
    load_model,
    load_software,
    parse_cluster,
    parse_model,
    parse_software,
)
from baige.plan.mixed import Alone, MixedPlan, MixedResult, plan_mixed
from baige.plan.mixed_data import DataParallelPlan, GroupShare
from baige.plan.mixed_pipeline import PipelinePlan, StagePlan
from baige.plan.model import PRESETS, ModelSpec, UnknownModelError, get_preset, preset_names
from baige.plan.planner import PlanReport, plan
from baige.plan.report import Table, notes, report_dict, tables
from baige.plan.search import Constraints, NoPlanError, SearchResult, search
from baige.plan.software import (
    MEGATRON_2021,
    MEGATRON_2022,
    MEGATRON_CORE,
    MEGATRON_DEEPSPEED,
    META_LLAMA3,
    SOFTWARE,
    TORCHTITAN_FSDP2,
    Software,
    get_software,
)
from baige.plan.strategy import Recompute, Strategy

__all__ = [
    "DEFAULT_EFFICIENCY",
    "FAMILIES",
    "MEGATRON_2021",
    "MEGATRON_2022",
    "MEGATRON_CORE",
    "MEGATRON_DEEPSPEED",
    "META_LLAMA3",
    "PRESETS",
    "SOFTWARE",
    "TORCHTITAN_FSDP2",
    "Alone",
    "Candidates",
    "ChipEfficiency",
    "ChipGroup",
    "Cluster",
    "Constraints",
    "DataParallelPlan",
    "Estimate",
    "GroupShare",
    "MissingFigureError",
    "MixedPlan",
    "MixedResult",
    "ModelSpec",
    "NoPlanError",
    "PipelinePlan",
    "PlanError",
    "PlanReport",
    "Recompute",
    "SearchResult",
    "Software",
    "StagePlan",
    "Strategy",
    "Table",
    "UnknownModelError",
    "calibrate_efficiency",
    "check_strategy",
    "chip_efficiency",
    "estimate",
    "evaluate",
    "get_preset",
    "get_software",
    "load_cluster",
    "load_model",
    "load_software",
    "notes",
    "parse_cluster",
    "parse_model",
    "parse_software",
    "plan",
    "plan_mixed",
    "preset_names",
    "report_dict",
    "resolve_group",
    "search",
    "tables",
]
