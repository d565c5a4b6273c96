"""Serve commands rendered from an ``engine:`` section, checked against each engine's
documented flags; and the spec rules around them."""

from __future__ import annotations

import json

import pytest

from baige.api.loader import SpecError, load_specs
from baige.api.workloads import InferenceServiceSpec

SERVICE = """\
kind: InferenceService
name: chat
queue: serving
accelerators: {count: %(count)s, %(share)s types: [h100]}
engine:
  name: %(engine)s
  model: /models/llama-70b
  served_model_name: llama
  max_model_len: 8192
  speculative: {draft_model: /models/llama-1b, tokens: 4, method: eagle}
"""


def spec(engine: str, count: int = 4, share: str = "") -> InferenceServiceSpec:
    (loaded,) = load_specs(SERVICE % {"engine": engine, "count": count, "share": share})
    assert isinstance(loaded, InferenceServiceSpec)
    return loaded


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_vllm_serve_command() -> None:
    argv = spec("vllm").launch_command
    assert argv[:3] == ("vllm", "serve", "/models/llama-70b")
    assert flag(argv, "--port") == "$(PORT)"
    assert flag(argv, "--tensor-parallel-size") == "4"
    assert flag(argv, "--gpu-memory-utilization") == "0.9"
    assert flag(argv, "--served-model-name") == "llama"
    assert flag(argv, "--max-model-len") == "8192"
    config = json.loads(flag(argv, "--speculative-config"))
    assert config == {"model": "/models/llama-1b", "num_speculative_tokens": 4, "method": "eagle"}


def test_sglang_launch_server_command() -> None:
    argv = spec("sglang", count=2).launch_command
    assert argv[:3] == ("python3", "-m", "sglang.launch_server")
    assert flag(argv, "--model-path") == "/models/llama-70b"
    assert flag(argv, "--tp-size") == "2"
    assert flag(argv, "--context-length") == "8192"
    assert flag(argv, "--speculative-algorithm") == "EAGLE"
    assert flag(argv, "--speculative-draft-model-path") == "/models/llama-1b"
    assert flag(argv, "--speculative-num-draft-tokens") == "4"
    assert "--enable-metrics" in argv


def test_a_shared_card_gets_its_share_of_memory() -> None:
    argv = spec("vllm", count=1, share="share: 0.25,").launch_command
    assert flag(argv, "--gpu-memory-utilization") == "0.225"
    assert flag(argv, "--tensor-parallel-size") == "1"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("", "give a command"),
        ("engine: {name: vllm, model: m}\ncommand: [python3]\n", "not both"),
        ("engine: {name: tgi, model: m}\n", "engine.name"),
        ("engine: {name: vllm, model: m, speculative: {draft_model: d, tokens: 0}}\n",
         "speculative.tokens"),
    ],
)  # fmt: skip
def test_engine_rules_name_the_field(extra: str, message: str) -> None:
    text = "kind: InferenceService\nname: s\nqueue: q\naccelerators: {types: [h100]}\n" + extra
    with pytest.raises(SpecError) as caught:
        load_specs(text)
    assert message in str(caught.value)
