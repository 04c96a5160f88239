"""The shared building blocks in wxb.nn against their definitions and transformers' versions."""

from __future__ import annotations

import math

import pytest
import torch
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from wxb.errors import ConfigError
from wxb.nn import KVCache, RMSNorm, SwiGLU, attention, make_mask, sinusoidal_positions
from wxb.nn.position import rope_frequencies


def test_sinusoidal_positions_follow_the_paper():
    table = sinusoidal_positions(50, 16)
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


@pytest.mark.parametrize("scaling", [
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8192},
    {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0,
     "original_max_position_embeddings": 64},
    {"rope_type": "linear", "factor": 4.0},
])
def test_rope_frequencies_equal_transformers(scaling):
    config = transformers.LlamaConfig(hidden_size=128, num_attention_heads=2,
                                      rope_parameters={"rope_theta": 500000.0, **scaling})
    expected, _ = ROPE_INIT_FUNCTIONS[scaling["rope_type"]](config)
    assert torch.allclose(rope_frequencies(64, 500000.0, scaling), expected, rtol=1e-6)


def test_unknown_rope_scaling_is_refused():
    with pytest.raises(ConfigError, match="rope_scaling type 'yarn' is not supported"):
        rope_frequencies(64, 10000.0, {"rope_type": "yarn", "factor": 2.0})


def test_rmsnorm_and_swiglu_equal_llama_layers():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=48)
    ref_norm = transformers.models.llama.modeling_llama.LlamaRMSNorm(32, eps=1e-6)
    ref_mlp = transformers.models.llama.modeling_llama.LlamaMLP(config)
    torch.nn.init.normal_(ref_norm.weight)
    norm, mlp = RMSNorm(32, 1e-6), SwiGLU(32, 48)
    norm.load_state_dict(ref_norm.state_dict())
    mlp.load_state_dict(ref_mlp.state_dict())
    x = torch.randn(2, 5, 32)
    assert torch.allclose(norm(x), ref_norm(x), atol=1e-6)
    assert torch.allclose(mlp(x), ref_mlp(x), atol=1e-6)
    assert torch.equal(norm(x.bfloat16()), ref_norm(x.bfloat16()))  # statistics in float32


def test_explicit_attention_equals_the_fused_kernel_with_gqa_and_masks():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    padding = torch.ones(2, 9, dtype=torch.long)
    padding[1, :3] = 0
    mask = make_mask(padding, 5, 9)
    fast, none = attention(q, k, v, mask)
    slow, weights = attention(q, k, v, mask, need_weights=True)
    assert none is None and torch.allclose(fast, slow, atol=1e-5)
    assert weights.shape == (2, 6, 5, 9)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 6, 5))
    # Query i (position 4 + i) sees keys up to its own position, never padding.
    assert (weights[0, :, 0, 5:] == 0).all() and (weights[1, :, :, :3] == 0).all()
    square = torch.randn(1, 2, 4, 8)
    causal, _ = attention(square, square, square, make_mask(None, 4, 4), is_causal=True)
    explicit, w = attention(square, square, square, is_causal=True, need_weights=True)
    assert torch.allclose(causal, explicit, atol=1e-5) and (w[0, :, 0, 1:] == 0).all()


def test_make_mask_cases():
    assert make_mask(None, 1, 10) is None  # one new token sees the whole past
    assert make_mask(None, 4, 4) is None  # the plain causal square needs no tensor
    assert make_mask(torch.ones(2, 6, dtype=torch.long), 6, 6) is None
    chunk = make_mask(None, 2, 5)  # two new tokens after three cached ones
    assert chunk[0, 0].tolist() == [[True, True, True, True, False], [True] * 5]
    left = make_mask(torch.tensor([[0, 0, 1, 1]]), 4, 4)
    assert left[0, 0, 0].tolist() == [True] * 4  # a padding query attends somewhere: no NaN
    assert left[0, 0, 3].tolist() == [False, False, True, True]


def test_kv_cache_grows_reorders_and_crops():
    cache = KVCache(num_layers=2)
    first = torch.arange(2 * 1 * 3 * 2, dtype=torch.float).view(2, 1, 3, 2)
    k, v = cache.update(0, first, -first)
    assert torch.equal(k, first) and torch.equal(v, -first)
    for step in range(20):  # past the first buffer's capacity
        new = torch.full((2, 1, 1, 2), float(step))
        k, _ = cache.update(0, new, new)
    assert cache.get_seq_length() == 23 and k.shape == (2, 1, 23, 2)
    assert torch.equal(k[:, :, :3], first) and k[0, 0, -1, 0].item() == 19
    cache.reorder(torch.tensor([1, 1]))
    k, _ = cache.update(0, torch.zeros(2, 1, 1, 2), torch.zeros(2, 1, 1, 2))
    assert torch.equal(k[0, :, :3], first[1]) and torch.equal(k[1, :, :3], first[1])
    cache.crop(5)
    assert cache.get_seq_length() == 5 and cache.get_seq_length(1) == 0


def test_dropout_zeroes_p_of_the_elements_and_scales_the_rest():
    from wxb.nn import Dropout, dropout

    torch.manual_seed(0)
    x = torch.ones(1000, 1000)
    y = dropout(x, 0.1)
    assert abs(float((y == 0).float().mean()) - 0.1) < 0.002  # 1M draws: sd 0.0003
    rounded = round(0.1 * 65536) / 65536  # p to 1/65536
    assert torch.unique(y[y != 0]).tolist() == pytest.approx([1 / (1 - rounded)], rel=1e-6)
    assert abs(float(y.mean()) - 1.0) < 0.003  # the expectation is kept
    for p in (0.5, 0.9):  # every 16-bit word is uniform: the rates hold at any p
        assert abs(float((dropout(x, p) == 0).float().mean()) - p) < 0.002
    x = torch.randn(64, 64, requires_grad=True)
    y = dropout(x, 0.3)
    y.backward(torch.ones_like(y))
    kept = (y != 0).float()
    torch.testing.assert_close(x.grad, kept / (1 - round(0.3 * 65536) / 65536))
    assert dropout(x, 0.3, training=False) is x and dropout(x, 0.0) is x
    half = dropout(torch.ones(100, 100, dtype=torch.bfloat16), 0.5)
    assert half.dtype == torch.bfloat16 and set(torch.unique(half).tolist()) == {0.0, 2.0}
    layer = Dropout(0.5)
    assert layer.eval()(x) is x and isinstance(layer, torch.nn.Dropout)


def test_attention_with_dropout_keeps_the_expectation():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    exact, _ = attention(q, k, v)
    mean = sum(attention(q, k, v, dropout_p=0.2)[0] for _ in range(2000)) / 2000
    torch.testing.assert_close(mean, exact, atol=0.05, rtol=0)
