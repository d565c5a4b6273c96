"""The transformer being trained: its shape, its parameter count, and the presets users name.

The planner reasons about decoder-only transformers (dense, or mixture-of-experts), because
every large language model teams train today is one; the shape alone decides parameters,
FLOPs and activation sizes, so a model is nothing more than these integers. Presets are the
published shapes of well-known models, so that ``baige plan --model llama3-70b`` needs no file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

__all__ = ["PRESETS", "ModelSpec", "UnknownModelError", "get_preset", "preset_names"]


class UnknownModelError(LookupError):
    """A model name that is neither a preset nor a file."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A decoder-only transformer.

    ``experts == 0`` means a dense model. For a mixture-of-experts model every token goes
    through ``top_k`` of the ``experts`` routed FFNs (each ``expert_ffn_hidden`` wide) plus
    ``shared_experts`` always-on FFNs of the same width; the first ``dense_layers`` layers keep
    an ordinary FFN of ``ffn_hidden`` (DeepSeek-V3 does this for its first three layers).
    ``gated_mlp`` is SwiGLU (three FFN matrices, as in Llama); otherwise GELU (two, as GPT).
    ``head_dim`` defaults to ``hidden // heads``.
    """

    name: str
    layers: int
    hidden: int
    ffn_hidden: int
    heads: int
    kv_heads: int
    vocab: int
    seq_len: int
    head_dim: int = 0
    gated_mlp: bool = True
    tied_embeddings: bool = False
    experts: int = 0
    top_k: int = 0
    expert_ffn_hidden: int = 0
    shared_experts: int = 0
    dense_layers: int = 0

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            if self.heads > 0 and self.hidden % self.heads:
                raise ValueError(
                    f"hidden ({self.hidden}) is not divisible by heads ({self.heads}); "
                    "give head_dim explicitly"
                )
            object.__setattr__(self, "head_dim", self.hidden // max(self.heads, 1))
        for name in ("layers", "hidden", "ffn_hidden", "heads", "kv_heads", "vocab", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.heads % self.kv_heads:
            raise ValueError(
                f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads}): "
                "each key/value head serves a whole group of query heads"
            )
        if self.experts:
            if not 1 <= self.top_k <= self.experts:
                raise ValueError(f"top_k must be between 1 and experts ({self.experts})")
            if self.expert_ffn_hidden < 1:
                raise ValueError("expert_ffn_hidden must be at least 1 for an MoE model")
            if not 0 <= self.dense_layers < self.layers:
                raise ValueError("dense_layers must leave at least one MoE layer")
        elif self.top_k or self.shared_experts or self.expert_ffn_hidden:
            raise ValueError("top_k, shared_experts and expert_ffn_hidden need experts > 0")

    # --- shape -------------------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def mlp_matrices(self) -> int:
        """FFN weight matrices per expert: SwiGLU has gate, up and down; GELU has up and down."""
        return 3 if self.gated_mlp else 2

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers if self.is_moe else 0

    # --- parameters --------------------------------------------------------------------------

    @property
    def attention_params(self) -> int:
        """Q, K, V and output projections (biases and norms are below one part in 1,000)."""
        return self.hidden * (self.q_dim + 2 * self.kv_dim) + self.q_dim * self.hidden

    def ffn_params(self, width: int) -> int:
        return self.mlp_matrices * self.hidden * width

    @property
    def dense_layer_params(self) -> int:
        return self.attention_params + self.ffn_params(self.ffn_hidden) + 2 * self.hidden

    @property
    def expert_params(self) -> int:
        """One routed expert's FFN."""
        return self.ffn_params(self.expert_ffn_hidden)

    @property
    def moe_layer_params(self) -> int:
        """Attention + all routed and shared experts + the router."""
        if not self.is_moe:
            return self.dense_layer_params
        experts = (self.experts + self.shared_experts) * self.expert_params
        return self.attention_params + experts + self.hidden * self.experts + 2 * self.hidden

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def output_params(self) -> int:
        """The LM head; zero when it shares the embedding's weights."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    @property
    def params(self) -> int:
        dense = (self.layers - self.moe_layers) * self.dense_layer_params
        return (
            dense
            + self.moe_layers * self.moe_layer_params
            + self.embedding_params
            + self.output_params
        )

    @property
    def active_params(self) -> int:
        """Parameters one token passes through (MoE: only its ``top_k`` experts)."""
        if not self.is_moe:
            return self.params
        idle = (self.experts - self.top_k) * self.expert_params * self.moe_layers
        return self.params - idle

    # --- FLOPs -------------------------------------------------------------------------------

    def ffn_width_per_token(self, moe: bool) -> int:
        """FFN width a token actually computes through in a dense or an MoE layer."""
        if moe and self.is_moe:
            return (self.top_k + self.shared_experts) * self.expert_ffn_hidden
        return self.ffn_hidden

    @property
    def mean_ffn_width(self) -> float:
        """Active FFN width averaged over layers, so that per-layer costs sum to the model's."""
        dense = self.layers - self.moe_layers
        return (
            dense * self.ffn_width_per_token(False)
            + self.moe_layers * self.ffn_width_per_token(True)
        ) / self.layers

    def model_flops_per_sequence(self) -> float:
        """Forward + backward FLOPs for one sequence, without recomputation.

        Matrix multiplies cost 2 FLOPs per weight per token forward and twice that backward
        (6 per active weight per token). Attention scores add 4·s·q_dim per token per layer
        forward (Q·Kᵀ and the weighted sum of V), counted over the full s×s matrix as Megatron
        and PaLM count it, so figures compare with published MFU and TFLOP/s.
        """
        s = self.seq_len
        matmul_weights = self.active_params - self.embedding_params  # lookups are free
        matmul_weights += self.embedding_params if self.tied_embeddings else 0
        matmul_weights -= 2 * self.hidden * self.layers  # norm scales are not multiplied
        attention = 4.0 * s * self.q_dim * self.layers
        return 3.0 * s * (2.0 * matmul_weights + attention)


def _preset(**kwargs: object) -> ModelSpec:
    return ModelSpec(**kwargs)  # type: ignore[arg-type]


PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        # Llama 3 (Meta, "The Llama 3 Herd of Models", 2024, Table 3)
        _preset(name="llama3-8b", layers=32, hidden=4096, ffn_hidden=14336, heads=32,
                kv_heads=8, vocab=128256, seq_len=8192),
        _preset(name="llama3-70b", layers=80, hidden=8192, ffn_hidden=28672, heads=64,
                kv_heads=8, vocab=128256, seq_len=8192),
        _preset(name="llama3-405b", layers=126, hidden=16384, ffn_hidden=53248, heads=128,
                kv_heads=8, vocab=128256, seq_len=8192),
        # GPT-3 175B (Brown et al. 2020, Table 2.1); vocabulary padded as Megatron pads it
        _preset(name="gpt3-175b", layers=96, hidden=12288, ffn_hidden=49152, heads=96,
                kv_heads=96, vocab=51200, seq_len=2048, gated_mlp=False),
        # Mixtral 8x7B (Jiang et al. 2024): 8 experts, 2 active
        _preset(name="mixtral-8x7b", layers=32, hidden=4096, ffn_hidden=14336, heads=32,
                kv_heads=8, vocab=32000, seq_len=4096, experts=8, top_k=2,
                expert_ffn_hidden=14336),
        # DeepSeek-V3 shape (DeepSeek-AI 2024) with its multi-head latent attention costed as
        # ordinary multi-head attention of the same head count: "-like", ~690B parameters
        _preset(name="deepseek-v3-like", layers=61, hidden=7168, ffn_hidden=18432, heads=128,
                kv_heads=128, head_dim=128, vocab=129280, seq_len=4096, experts=256, top_k=8,
                expert_ffn_hidden=2048, shared_experts=1, dense_layers=3),
    )
}  # fmt: skip


def preset_names() -> tuple[str, ...]:
    return tuple(PRESETS)


def get_preset(name: str) -> ModelSpec:
    """The preset called ``name`` (any case), or an error listing the presets."""
    wanted = name.strip().lower()
    if wanted in PRESETS:
        return PRESETS[wanted]
    close = difflib.get_close_matches(wanted, list(PRESETS), n=2, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}{hint} (presets: {', '.join(PRESETS)}; or give a YAML file)"
    )
