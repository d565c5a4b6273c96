"""Model shapes: presets match their published parameter counts; bad shapes are refused."""

from __future__ import annotations

import pytest

from baige.plan import ModelSpec, UnknownModelError, get_preset, preset_names


@pytest.mark.parametrize(
    ("name", "total_billion", "active_billion"),
    [
        ("llama3-8b", 8.03, 8.03),  # Meta: 8.0B
        ("llama3-70b", 70.55, 70.55),  # Meta: 70.6B
        ("llama3-405b", 405.85, 405.85),  # Meta: 405B
        ("gpt3-175b", 175.2, 175.2),  # Brown et al.: 175.0B
        ("mixtral-8x7b", 46.70, 12.88),  # Mistral: 46.7B total, 12.9B active
    ],
)
def test_presets_have_their_published_size(
    name: str, total_billion: float, active_billion: float
) -> None:
    model = get_preset(name)
    assert model.params / 1e9 == pytest.approx(total_billion, rel=0.002)
    assert model.active_params / 1e9 == pytest.approx(active_billion, rel=0.002)


def test_every_preset_named_in_the_issue_exists() -> None:
    wanted = {"llama3-8b", "llama3-70b", "llama3-405b", "gpt3-175b", "mixtral-8x7b"}
    assert wanted <= set(preset_names())
    assert any("deepseek-v3" in name for name in preset_names())


def test_deepseek_like_is_a_sparse_model_of_the_right_scale() -> None:
    model = get_preset("deepseek-v3-like")
    assert model.is_moe and model.moe_layers == 58
    assert 600e9 < model.params < 750e9  # 671B with MLA; MHA in its place adds a little
    assert model.active_params < model.params / 10


@pytest.mark.parametrize(
    ("hidden", "heads", "layers", "batch"),
    [(2304, 24, 24, 512), (12288, 96, 80, 2304), (25600, 160, 128, 3072)],
)
def test_model_flops_match_megatrons_count_without_recomputation(
    hidden: int, heads: int, layers: int, batch: int
) -> None:
    """3/4 of 96·B·s·l·h²·(1 + s/6h) plus the LM head's 6·B·s·h·V."""
    model = ModelSpec(
        name="gpt", layers=layers, hidden=hidden, ffn_hidden=4 * hidden, heads=heads,
        kv_heads=heads, vocab=51200, seq_len=2048, gated_mlp=False, tied_embeddings=True,
    )  # fmt: skip
    s, v = model.seq_len, model.vocab
    expected = (
        72 * batch * s * layers * hidden**2 * (1 + s / (6 * hidden)) + 6 * batch * s * hidden * v
    )
    assert model.model_flops_per_sequence() * batch == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"hidden": 240, "heads": 30, "kv_heads": 8}, "multiple of kv_heads"),
        ({"hidden": 250}, "not divisible by heads"),
        ({"layers": 0}, "layers must be at least 1"),
        ({"experts": 8, "top_k": 9, "expert_ffn_hidden": 64}, "top_k"),
        ({"top_k": 2}, "need experts"),
        ({"experts": 8, "top_k": 2, "expert_ffn_hidden": 64, "dense_layers": 4}, "dense_layers"),
    ],
)
def test_invalid_shapes_are_refused(changes: dict[str, int], message: str) -> None:
    shape: dict[str, object] = {
        "name": "m", "layers": 4, "hidden": 256, "ffn_hidden": 1024, "heads": 8, "kv_heads": 8,
        "vocab": 1000, "seq_len": 128,
    }  # fmt: skip
    shape.update(changes)
    with pytest.raises(ValueError, match=message):
        ModelSpec(**shape)  # type: ignore[arg-type]


@pytest.mark.parametrize(("asked", "suggested"), [("llama3-7b", "llama3-8b"), ("LLAMA3-70B", None)])
def test_preset_lookup(asked: str, suggested: str | None) -> None:
    if suggested is None:
        assert get_preset(asked).name == asked.lower()
        return
    with pytest.raises(UnknownModelError, match=f"did you mean .*{suggested}"):
        get_preset(asked)
