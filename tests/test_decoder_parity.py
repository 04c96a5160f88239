"""GPT-2 and LLaMA written here equal transformers' on the same weights, both ways."""

from __future__ import annotations

import pytest
import torch
import transformers

import wxb
from wxb.errors import CheckpointError, ConfigError
from wxb.models.gpt2 import GPT2LMHeadModel
from wxb.models.llama import LlamaForCausalLM

GPT2_SHAPES = [
    dict(n_embd=48, n_head=3, n_layer=2, n_positions=64, vocab_size=97, bos_token_id=1,
         eos_token_id=2),
    dict(n_embd=64, n_head=4, n_layer=3, n_positions=40, vocab_size=120, n_inner=100,
         bos_token_id=1, eos_token_id=2,
         activation_function="gelu", scale_attn_by_inverse_layer_idx=True),
]
ROPE_LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
LLAMA_SHAPES = [
    dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
         num_hidden_layers=2, vocab_size=101, max_position_embeddings=64),
    dict(hidden_size=48, num_attention_heads=6, num_key_value_heads=1, intermediate_size=80,
         num_hidden_layers=2, vocab_size=90, max_position_embeddings=64, rope_theta=500000.0,
         rope_scaling=ROPE_LLAMA3, tie_word_embeddings=True),
    dict(hidden_size=60, num_attention_heads=5, num_key_value_heads=5, intermediate_size=70,
         num_hidden_layers=3, vocab_size=77, max_position_embeddings=64, head_dim=16,
         attention_bias=True, mlp_bias=True, rope_scaling={"rope_type": "linear", "factor": 2.0}),
]
CASES = ([("gpt2", s) for s in GPT2_SHAPES] + [("llama", s) for s in LLAMA_SHAPES])


def reference_model(family: str, shape: dict, seed: int = 0):
    torch.manual_seed(seed)
    if family == "gpt2":
        config = transformers.GPT2Config(**shape, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
        model = transformers.GPT2LMHeadModel(config)
    else:
        extra = {"rope_parameters": {"rope_type": "default", "rope_theta": shape.get(
            "rope_theta", 10000.0), **(shape.get("rope_scaling") or {})}}
        values = {k: v for k, v in shape.items() if k not in ("rope_theta", "rope_scaling")}
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**values, **extra))
    return model.eval()


@pytest.fixture(params=CASES, ids=lambda c: f"{c[0]}-{c[1]['vocab_size']}")
def pair(request, tmp_path):
    family, shape = request.param
    ref = reference_model(family, shape)
    ref.save_pretrained(tmp_path / "hf")
    ours = wxb.from_pretrained(tmp_path / "hf").eval()
    return ours, ref, shape["vocab_size"]


def test_loads_with_the_right_class(pair):
    ours, ref, _ = pair
    expected = GPT2LMHeadModel if isinstance(ref, transformers.GPT2LMHeadModel) \
        else LlamaForCausalLM
    assert type(ours) is expected
    assert ours.num_parameters() == ref.num_parameters()


def test_logits_and_loss_equal(pair):
    ours, ref, vocab = pair
    torch.manual_seed(1)
    ids = torch.randint(0, vocab, (3, 17))
    labels = ids.clone()
    labels[0, :5] = -100
    labels[2, -3:] = -100
    with torch.no_grad():
        a, b = ours(ids, labels=labels), ref(ids, labels=labels)
    assert (a.logits - b.logits).abs().max() <= 1e-4
    assert torch.allclose(a.loss, b.loss, atol=1e-5)


def test_left_padded_batch_equal_on_real_tokens(pair):
    ours, ref, vocab = pair
    torch.manual_seed(2)
    ids = torch.randint(0, vocab, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    mask[2, :9] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, position_ids=positions).logits
        b = ref(ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert torch.isfinite(a).all()
    assert (a[real] - b[real]).abs().max() <= 1e-4


def test_kv_cache_decoding_equals_full_forward(pair):
    ours, ref, vocab = pair
    torch.manual_seed(3)
    ids = torch.randint(0, vocab, (2, 14))
    with torch.no_grad():
        full = ref(ids).logits
        out = ours(ids[:, :6], use_cache=True)
        steps = [out.logits]
        cache = out.past_key_values
        for t in range(6, 14):
            out = ours(ids[:, t:t + 1], past_key_values=cache, use_cache=True)
            steps.append(out.logits)
    assert cache.get_seq_length() == 14
    assert (torch.cat(steps, dim=1) - full).abs().max() <= 1e-4


def test_attention_weights_and_hidden_states(pair):
    ours, ref, vocab = pair
    ref.set_attn_implementation("eager")  # the fused kernels return no weights
    ids = torch.randint(0, vocab, (2, 9))
    with torch.no_grad():
        a = ours(ids, output_attentions=True, output_hidden_states=True)
        b = ref(ids, output_attentions=True, output_hidden_states=True)
    assert len(a.attentions) == len(b.attentions)
    for x, y in zip(a.attentions, b.attentions, strict=True):
        assert (x - y).abs().max() <= 1e-5
    assert (a.hidden_states[-1] - b.hidden_states[-1]).abs().max() <= 1e-4


def test_save_pretrained_is_read_by_transformers(pair, tmp_path):
    ours, ref, vocab = pair
    ours.save_pretrained(tmp_path / "ours")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = torch.randint(0, vocab, (2, 10))
    with torch.no_grad():
        assert (again(ids).logits - ref(ids).logits).abs().max() <= 1e-5


def test_gpt2_checkpoint_without_lm_head_prefix(tmp_path):
    """The original gpt2 weights were saved from GPT2Model: keys lack 'transformer.'."""
    ref = reference_model("gpt2", GPT2_SHAPES[0])
    ref.transformer.save_pretrained(tmp_path)
    config = (tmp_path / "config.json").read_text().replace('"GPT2Model"', '"GPT2LMHeadModel"')
    (tmp_path / "config.json").write_text(config)
    ours = wxb.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 97, (1, 8))
    with torch.no_grad():
        assert (ours(ids).logits - ref(ids).logits).abs().max() <= 1e-4


def test_bad_checkpoints(tmp_path):
    ref = reference_model("llama", LLAMA_SHAPES[0])
    ref.save_pretrained(tmp_path / "ok")
    text = (tmp_path / "ok" / "config.json").read_text()
    (tmp_path / "ok" / "config.json").write_text(text.replace('"intermediate_size": 96',
                                                              '"intermediate_size": 64'))
    with pytest.raises(CheckpointError, match=r"shape mismatch .*mlp\.gate_proj\.weight "
                                              r"\(96, 64\) vs \(64, 64\)"):
        wxb.from_pretrained(tmp_path / "ok")
    (tmp_path / "ok" / "config.json").write_text(text.replace('"llama"', '"mamba"'))
    with pytest.raises(ConfigError, match="unknown model type 'mamba'; known: mlp, cnn, gpt2, "
                                          "llama"):
        wxb.from_pretrained(tmp_path / "ok")
    (tmp_path / "ok" / "config.json").write_text(text.replace('"LlamaForCausalLM"',
                                                              '"LlamaForTokenClassification"'))
    with pytest.raises(ConfigError, match="llama has no architecture "
                                          "'LlamaForTokenClassification'"):
        wxb.from_pretrained(tmp_path / "ok")


def test_prompt_longer_than_the_context_window():
    model = GPT2LMHeadModel(wxb.models.gpt2.GPT2Config(**GPT2_SHAPES[0]))
    with pytest.raises(ConfigError, match="65 positions exceed the model's context window of 64"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("settings", [
    dict(do_sample=False),
    dict(do_sample=True, top_p=0.8, temperature=0.7, top_k=0, num_return_sequences=2),
    dict(do_sample=True, top_k=10, repetition_penalty=1.3),
    dict(num_beams=3, num_return_sequences=2, length_penalty=0.7, early_stopping=True),
    dict(num_beams=4, no_repeat_ngram_size=2, eos_token_id=5),
])
def test_generate_token_identical_to_transformers(pair, settings):
    ours, ref, vocab = pair
    torch.manual_seed(4)
    ids = torch.randint(1, vocab, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    ids[1, :3] = 0
    common = dict(max_new_tokens=12, pad_token_id=0, attention_mask=mask, **settings)
    with torch.no_grad():
        torch.manual_seed(7)
        theirs = ref.generate(ids, **common)
        mine = wxb.generate(ours, ids, seed=7, **common)
    assert torch.equal(mine, theirs)
