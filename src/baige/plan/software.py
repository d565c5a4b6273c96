"""What the training software does, as far as the cost model cares.

The same model on the same chips runs at different speeds under different software: fused
attention kernels change both time and memory, and how much communication hides behind
compute is a property of the framework release, not of the cluster. Each profile names a
real release and the publication its behaviour is read from; docs/plan.md shows which
published measurements check each one:

* ``megatron-2021`` — Megatron-LM as measured in SC'21 (Narayanan et al., "Efficient
  Large-Scale Language Model Training on GPU Clusters Using Megatron-LM"): softmax over the
  full s×s scores, no sequence parallelism, no distributed optimizer, nothing overlapped, no
  context parallelism. Checked by SC'21 Table 1.
* ``megatron-deepspeed`` — Megatron-LM's layers under DeepSpeed's pipeline engine (2021–2022:
  MT-NLG 530B, BLOOM 176B): as ``megatron-2021``, but each tensor rank sends the whole stage
  output to the next stage (no scatter/gather). Predicted, not fitted, against those runs.
* ``megatron-2022`` — Megatron-LM with sequence parallelism and selective recomputation
  (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models",
  MLSys 2023), still without FlashAttention or overlap. Checked by that paper's Tables 4–5.
* ``megatron-core`` (default) — Megatron-Core / NeMo (2023–2024, the README's
  ``--overlap-grad-reduce --overlap-param-gather --tp-comm-overlap``): flash attention,
  sequence parallelism, the distributed optimizer, context parallelism, and communication
  overlapped with compute. The overlap fractions are not measured one by one; the profile
  as a whole is checked end to end by the Llama 3 paper's Table 4 (Meta's own stack does the
  same things: flash attention, sharded optimizer, overlapped data-parallel traffic).
* ``meta-llama3`` — Meta's training stack for Llama 3 405B as its paper describes it
  ("The Llama 3 Herd of Models", §3.3.2): the ``megatron-core`` behaviour, except that
  context parallelism all-gathers K and V before attention instead of overlapping a ring,
  so that traffic is exposed. Checked by the paper's Table 4.
* ``torchtitan-fsdp2`` — PyTorch torchtitan (2024) with FSDP2: every state sharded over the
  data-parallel ranks (ZeRO-3), BF16 weights gathered per layer, FP32 gradient reduction,
  SDPA flash attention, TP with sequence parallelism. Checked by torchtitan's published
  A100 benchmarks (docs/performance.md).

A custom profile is a ``kind: Software`` YAML file (``baige plan --software FILE``, read by
:func:`baige.plan.loader.load_software`), every field below with the same name.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

__all__ = [
    "MEGATRON_2021",
    "MEGATRON_2022",
    "MEGATRON_CORE",
    "MEGATRON_DEEPSPEED",
    "META_LLAMA3",
    "SOFTWARE",
    "TORCHTITAN_FSDP2",
    "Software",
    "get_software",
]


@dataclass(frozen=True, slots=True)
class Software:
    """Framework behaviour: kernels, memory layout, and overlap of communication.

    ``context_parallel`` says whether the framework can split sequences (ring attention);
    ``fsdp`` that it shards weights, gradients and optimizer states over the data-parallel
    ranks (ZeRO-3), gathering weights per layer; ``*_overlap`` is the fraction of that traffic
    hidden behind compute (0 = all exposed). ``memory_efficiency`` and ``comm_efficiency``
    are the fractions of peak memory bandwidth and link bandwidth that bandwidth-bound
    kernels and NCCL-style collectives reach (STREAM and nccl-tests typically show 80–90%).
    Latencies follow NCCL's own tuning model (src/graph/tuning.cc, Ring/Simple): every
    collective costs ``collective_base_latency_s`` (8.4 µs) plus, per step,
    ``scale_up_latency_s`` over NVLink (3.4 µs; a ring inside a node takes steps·(n − 1) of
    them) or ``collective_latency_s`` over the network (9.6 µs; about 2·log2(n) steps across
    nodes); a pipeline send or a context-parallel ring step costs one hop.
    ``pipeline_scatter_gather`` is Megatron-LM's pipeline send of 1/tp of a stage's output
    from each tensor rank, gathered again over NVLink on the other side (SC'21 §4.1); without
    it every tensor rank sends the whole activation over its own NIC, tp times the traffic.
    ``source`` says where the behaviour is read from.
    """

    name: str
    flash_attention: bool
    sequence_parallel: bool
    distributed_optimizer: bool
    context_parallel: bool = True
    fsdp: bool = False
    grad_reduce_bytes: int = 2
    pipeline_scatter_gather: bool = True
    dp_overlap: float = 0.0
    tp_overlap: float = 0.0
    cp_overlap: float = 0.0
    ep_overlap: float = 0.0
    pp_overlap: float = 0.0
    memory_efficiency: float = 0.8
    comm_efficiency: float = 0.8
    collective_latency_s: float = 9.6e-6
    scale_up_latency_s: float = 3.4e-6
    collective_base_latency_s: float = 8.4e-6
    usable_memory_fraction: float = 0.92
    memory_reserve_gb: float = 2.0
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("dp_overlap", "tp_overlap", "cp_overlap", "ep_overlap", "pp_overlap"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("memory_efficiency", "comm_efficiency", "usable_memory_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]")
        if self.fsdp and self.distributed_optimizer:
            raise ValueError("fsdp already shards the optimizer: set distributed_optimizer false")


MEGATRON_2021 = Software(
    name="megatron-2021",
    flash_attention=False,
    sequence_parallel=False,
    distributed_optimizer=False,
    context_parallel=False,
    source="Narayanan et al., SC'21 (arXiv:2104.04473), Megatron-LM as of 2021",
)

MEGATRON_DEEPSPEED = Software(
    name="megatron-deepspeed",
    flash_attention=False,
    sequence_parallel=False,
    distributed_optimizer=False,
    context_parallel=False,
    pipeline_scatter_gather=False,
    source=(
        "Megatron-DeepSpeed (2021-2022, MT-NLG 530B and BLOOM 176B): Megatron-LM's layers "
        "under DeepSpeed's pipeline engine, which sends each stage's whole output from every "
        "tensor rank (no scatter/gather), nothing overlapped"
    ),
)

MEGATRON_2022 = Software(
    name="megatron-2022",
    flash_attention=False,
    sequence_parallel=True,
    distributed_optimizer=False,
    context_parallel=False,
    source=(
        "Korthikanti et al., MLSys 2023 (arXiv:2205.05198): Megatron-LM with sequence "
        "parallelism and selective recomputation, before FlashAttention"
    ),
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
    source=(
        "NVIDIA Megatron-LM README (2024): Megatron-Core with --overlap-grad-reduce "
        "--overlap-param-gather --tp-comm-overlap, FlashAttention, distributed optimizer"
    ),
)

META_LLAMA3 = Software(
    name="meta-llama3",
    flash_attention=True,
    sequence_parallel=True,
    distributed_optimizer=True,
    dp_overlap=0.9,
    tp_overlap=0.5,
    cp_overlap=0.0,
    ep_overlap=0.3,
    pp_overlap=0.5,
    source=(
        "Llama 3 paper (arXiv:2407.21783) §3.3.2: all-gather-based context parallelism; "
        "otherwise as megatron-core"
    ),
)

TORCHTITAN_FSDP2 = Software(
    name="torchtitan-fsdp2",
    flash_attention=True,
    sequence_parallel=True,
    distributed_optimizer=False,
    fsdp=True,
    grad_reduce_bytes=4,
    dp_overlap=0.9,
    source=(
        "pytorch/torchtitan (2024): FSDP2 fully_shard with BF16 parameters and FP32 "
        "reduction (parallelize_llama.py), SDPA attention, TP with sequence parallelism"
    ),
)

SOFTWARE: dict[str, Software] = {
    s.name: s
    for s in (
        MEGATRON_CORE,
        MEGATRON_2022,
        MEGATRON_2021,
        MEGATRON_DEEPSPEED,
        META_LLAMA3,
        TORCHTITAN_FSDP2,
    )
}


def get_software(name: str) -> Software:
    wanted = name.strip().lower()
    if wanted in SOFTWARE:
        return SOFTWARE[wanted]
    close = difflib.get_close_matches(wanted, list(SOFTWARE), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise LookupError(
        f"unknown software profile {name!r}{hint} (known: {', '.join(SOFTWARE)}; "
        "or give a kind: Software YAML file)"
    )
