"""What the training software does, as far as the cost model cares.

The same model on the same chips runs at different speeds under different software: fused
attention kernels change both time and memory, and how much communication hides behind
compute is a property of the framework version, not of the cluster. Two profiles ship:

* ``megatron-2021`` — Megatron-LM as measured in SC'21 (Narayanan et al.): softmax over the
  full s×s score matrix, no sequence parallelism, no distributed optimizer, gradient
  all-reduce and pipeline sends after/between compute, nothing overlapped, no context
  parallelism (it came to Megatron in 2023). This is the
  profile the validation against the paper's Table 1 uses, so it is the one checked against
  measurements.
* ``megatron-core`` (default) — current Megatron-Core / NeMo practice: flash attention,
  sequence parallelism, the distributed optimizer allowed, gradient reduction and parameter
  gathering overlapped with compute, partial overlap of tensor-parallel and pipeline traffic.
  Its overlap fractions are engineering estimates, not fitted to measurements; the README and
  docs/plan.md say so.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

__all__ = ["MEGATRON_2021", "MEGATRON_CORE", "SOFTWARE", "Software", "get_software"]


@dataclass(frozen=True, slots=True)
class Software:
    """Framework behaviour: kernels, memory layout, and overlap of communication.

    ``context_parallel`` says whether the framework can split sequences (ring attention);
    ``*_overlap`` is the fraction of that traffic hidden behind compute (0 = all exposed).
    ``memory_efficiency`` and ``comm_efficiency`` are the fractions of peak memory bandwidth
    and link bandwidth that bandwidth-bound kernels and NCCL-style collectives reach (STREAM
    and nccl-tests typically show 80–90%). ``collective_latency_s`` is the per-step latency of
    a collective; tree and hierarchical algorithms take about 2·log2(n) steps.
    """

    name: str
    flash_attention: bool
    sequence_parallel: bool
    distributed_optimizer: bool
    context_parallel: bool = True
    grad_reduce_bytes: int = 2
    dp_overlap: float = 0.0
    tp_overlap: float = 0.0
    cp_overlap: float = 0.0
    ep_overlap: float = 0.0
    pp_overlap: float = 0.0
    memory_efficiency: float = 0.8
    comm_efficiency: float = 0.8
    collective_latency_s: float = 10e-6
    usable_memory_fraction: float = 0.92
    memory_reserve_gb: float = 2.0

    def __post_init__(self) -> None:
        for name in ("dp_overlap", "tp_overlap", "cp_overlap", "ep_overlap", "pp_overlap"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")


MEGATRON_2021 = Software(
    name="megatron-2021",
    flash_attention=False,
    sequence_parallel=False,
    distributed_optimizer=False,
    context_parallel=False,
)

MEGATRON_CORE = Software(
    name="megatron-core",
    flash_attention=True,
    sequence_parallel=True,
    distributed_optimizer=True,
    dp_overlap=0.9,
    tp_overlap=0.5,
    cp_overlap=0.8,
    ep_overlap=0.3,
    pp_overlap=0.5,
)

SOFTWARE: dict[str, Software] = {s.name: s for s in (MEGATRON_CORE, MEGATRON_2021)}


def get_software(name: str) -> Software:
    wanted = name.strip().lower()
    if wanted in SOFTWARE:
        return SOFTWARE[wanted]
    close = difflib.get_close_matches(wanted, list(SOFTWARE), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise LookupError(f"unknown software profile {name!r}{hint} (known: {', '.join(SOFTWARE)})")
