"""Serve commands for inference engines, rendered from a service's ``engine:`` section.

Each engine's flags are spelled as its documentation spells them (sources below), so a user
writes *what* to serve — model, draft model, memory share — and Baige writes *how*. Tensor
parallelism is the replica's cards (``accelerators.count``); the memory fraction defaults to
the replica's share of a card, so fractional services fit beside each other. The port is
``$(PORT)``, which Baige expands at launch to the port it gave the replica (Kubernetes'
``$(VAR)`` convention); nothing here runs a shell.

Sources:
* vLLM — ``vllm serve MODEL`` with ``--port``, ``--tensor-parallel-size``,
  ``--gpu-memory-utilization``, ``--served-model-name``, ``--max-model-len`` and
  ``--speculative-config '{"model": …, "num_speculative_tokens": N, "method": …}'``
  (docs.vllm.ai, "Engine Arguments" and "Speculative Decoding"); health ``GET /health``,
  Prometheus metrics ``GET /metrics`` (``vllm:num_requests_waiting``,
  ``vllm:gpu_cache_usage_perc`` …).
* SGLang — ``python -m sglang.launch_server --model-path M`` with ``--port``, ``--tp-size``,
  ``--mem-fraction-static``, ``--served-model-name``, ``--context-length``,
  ``--enable-metrics`` and ``--speculative-algorithm``, ``--speculative-draft-model-path``,
  ``--speculative-num-draft-tokens`` (docs.sglang.ai, "Server Arguments" and "Speculative
  Decoding"); health ``GET /health``, metrics ``GET /metrics`` with ``--enable-metrics``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

__all__ = ["ENGINES", "EngineInfo", "render_command"]


@dataclass(frozen=True, slots=True)
class EngineInfo:
    name: str
    health_path: str
    metrics_path: str
    waiting_metric: str  # requests queued inside the engine (an autoscaling signal)
    cache_metric: str  # KV-cache use, 0..1


ENGINES: dict[str, EngineInfo] = {
    "vllm": EngineInfo("vLLM", "/health", "/metrics", "vllm:num_requests_waiting",
                       "vllm:gpu_cache_usage_perc"),
    "sglang": EngineInfo("SGLang", "/health", "/metrics", "sglang:num_queue_reqs",
                         "sglang:token_usage"),
    "fake": EngineInfo("Baige fake engine", "/health", "/metrics", "vllm:num_requests_waiting",
                       "vllm:gpu_cache_usage_perc"),
}  # fmt: skip


def render_command(
    engine: str,
    *,
    model: str,
    cards: int,
    share: float,
    served_model_name: str | None = None,
    max_model_len: int | None = None,
    memory_fraction: float | None = None,
    draft_model: str | None = None,
    speculative_tokens: int | None = None,
    speculative_method: str | None = None,
    token_latency: float = 0.02,
    max_concurrency: int = 8,
    extra_args: tuple[str, ...] = (),
) -> tuple[str, ...]:
    """The argv that serves ``model`` with ``engine`` on ``$(PORT)``."""
    fraction = memory_fraction if memory_fraction is not None else round(0.9 * share, 3)
    if engine == "vllm":
        argv = ["vllm", "serve", model, "--port", "$(PORT)", "--tensor-parallel-size",
                str(cards), "--gpu-memory-utilization", f"{fraction:g}"]  # fmt: skip
        if served_model_name:
            argv += ["--served-model-name", served_model_name]
        if max_model_len:
            argv += ["--max-model-len", str(max_model_len)]
        if draft_model:
            config: dict[str, object] = {
                "model": draft_model,
                "num_speculative_tokens": speculative_tokens or 5,
            }
            if speculative_method:
                config["method"] = speculative_method
            argv += ["--speculative-config", json.dumps(config, separators=(",", ":"))]
    elif engine == "sglang":
        argv = ["python3", "-m", "sglang.launch_server", "--model-path", model,
                "--port", "$(PORT)", "--tp-size", str(cards),
                "--mem-fraction-static", f"{fraction:g}", "--enable-metrics"]  # fmt: skip
        if served_model_name:
            argv += ["--served-model-name", served_model_name]
        if max_model_len:
            argv += ["--context-length", str(max_model_len)]
        if draft_model:
            argv += ["--speculative-algorithm", (speculative_method or "STANDALONE").upper(),
                     "--speculative-draft-model-path", draft_model,
                     "--speculative-num-draft-tokens", str(speculative_tokens or 5)]  # fmt: skip
    elif engine == "fake":
        # the fake ships with Baige: run it with the interpreter Baige runs under
        argv = [sys.executable, "-m", "baige.engines.fake", "--port", "$(PORT)",
                "--model", served_model_name or model, "--token-latency", f"{token_latency:g}",
                "--max-concurrency", str(max_concurrency)]  # fmt: skip
    else:
        raise ValueError(f"unknown engine {engine!r} (one of: {', '.join(ENGINES)})")
    return (*argv, *extra_args)
