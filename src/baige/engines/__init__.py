"""Inference engines Baige knows how to start and watch: vLLM, SGLang, and a declared fake.

``render`` turns an ``InferenceService``'s ``engine:`` section into the engine's own serve
command (its documented flags), ``ENGINES`` says where each engine answers health checks and
exports metrics, and ``baige.engines.fake`` is an OpenAI-compatible server that streams
tokens at a set pace on a laptop, for tests, demos and the co-location benchmark.
"""

from baige.engines.render import ENGINES, EngineInfo, render_command

__all__ = ["ENGINES", "EngineInfo", "render_command"]
