"""The bare models (GPT2Model, LlamaModel, MarianModel) equal transformers' on the same weights:
last hidden state, every layer's hidden states and attention weights, cached decoding."""

from __future__ import annotations

import pytest
import torch
import transformers

import wxb
from wxb.models import gpt2, llama, transformer

transformers.logging.set_verbosity_error()

ATOL = 1e-5
GPT2 = dict(n_embd=48, n_head=3, n_layer=3, n_positions=64, vocab_size=97, bos_token_id=1,
            eos_token_id=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
LLAMA = dict(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
             num_hidden_layers=3, vocab_size=101, max_position_embeddings=64)
MARIAN = dict(vocab_size=50, d_model=32, encoder_layers=2, decoder_layers=3,
              encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
              decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
              decoder_start_token_id=0, dropout=0.0, forced_eos_token_id=None)


def reference(family: str):
    torch.manual_seed(0)
    if family == "gpt2":
        model = transformers.GPT2Model(transformers.GPT2Config(**GPT2))
    else:
        model = transformers.LlamaModel(transformers.LlamaConfig(**LLAMA))
    model.set_attn_implementation("eager")  # the path that returns attention weights
    return model.eval()


@pytest.fixture(params=["gpt2", "llama"])
def pair(request, tmp_path):
    ref = reference(request.param)
    ref.save_pretrained(tmp_path)
    return wxb.from_pretrained(tmp_path).eval(), ref


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and (a - b).abs().max().item() <= ATOL


def test_from_pretrained_gives_the_bare_class(pair):
    ours, ref = pair
    expected = {"GPT2Model": gpt2.GPT2Model, "LlamaModel": llama.LlamaModel}
    assert type(ours) is expected[type(ref).__name__]
    assert ours.num_parameters() == ref.num_parameters()


def test_last_hidden_state_hidden_states_and_attentions_equal(pair):
    ours, ref = pair
    torch.manual_seed(1)
    ids = torch.randint(0, ref.config.vocab_size, (2, 11))
    with torch.no_grad():
        a = ours(ids, output_hidden_states=True, output_attentions=True)
        b = ref(ids, output_hidden_states=True, output_attentions=True, use_cache=False)
    assert type(a).__name__ == "BaseModelOutputWithPast"
    assert close(a.last_hidden_state, b.last_hidden_state)
    assert len(a.hidden_states) == len(b.hidden_states) == ref.config.num_hidden_layers + 1
    assert all(close(x, y) for x, y in zip(a.hidden_states, b.hidden_states, strict=True))
    assert len(a.attentions) == len(b.attentions) == ref.config.num_hidden_layers
    assert all(close(x, y) for x, y in zip(a.attentions, b.attentions, strict=True))
    # transformers 5 gives GPT-2, which has no cross-attention, an empty tuple of them.
    theirs = [k for k in b if not (k == "cross_attentions" and b[k] == ())]
    assert list(a.keys()) == theirs == ["last_hidden_state", "hidden_states", "attentions"]
    assert close(a[0], b[0])


def test_left_padded_batch_equals_on_real_tokens(pair):
    ours, ref = pair
    ids = torch.randint(0, ref.config.vocab_size, (2, 9),
                        generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask, position_ids=positions).last_hidden_state
        b = ref(ids, attention_mask=mask, position_ids=positions).last_hidden_state
    real = mask.bool()
    assert close(a[real], b[real])


def test_cached_decoding_equals_the_full_pass(pair):
    ours, ref = pair
    ids = torch.randint(0, ref.config.vocab_size, (2, 12),
                        generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = ref(ids).last_hidden_state
        out = ours(ids[:, :5], use_cache=True)
        steps, cache = [out.last_hidden_state], out.past_key_values
        for t in range(5, 12):
            out = ours(ids[:, t:t + 1], past_key_values=cache, use_cache=True)
            assert out.past_key_values is cache
            steps.append(out.last_hidden_state)
    assert cache.get_seq_length() == 12
    assert close(torch.cat(steps, dim=1), full)
    assert ours(ids[:, :3]).past_key_values is None  # only with use_cache, as in transformers


def test_the_bare_model_round_trips_through_transformers(pair, tmp_path):
    ours, ref = pair
    ours.save_pretrained(tmp_path / "ours")
    again, info = type(ref).from_pretrained(tmp_path / "ours", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids = torch.randint(0, ref.config.vocab_size, (1, 7))
    with torch.no_grad():
        assert close(again.eval()(ids).last_hidden_state, ref(ids).last_hidden_state)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_bare_model_of_a_head_checkpoint(family, tmp_path):
    """A bare class reads a checkpoint with a head (the head left out), and the head's model
    runs its bare model: both give transformers' hidden states."""
    torch.manual_seed(0)
    if family == "gpt2":
        ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2))
        bare_cls = gpt2.GPT2Model
    else:
        ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(**LLAMA))
        bare_cls = llama.LlamaModel
    ref.eval().save_pretrained(tmp_path)
    bare = bare_cls.from_pretrained(tmp_path).eval()
    head = wxb.from_pretrained(tmp_path).eval()
    assert head.base_model.__class__ is bare_cls and bare.base_model is bare
    ids = torch.randint(0, ref.config.vocab_size, (2, 8))
    with torch.no_grad():
        want = ref(ids, output_hidden_states=True).hidden_states[-1]
        assert close(bare(ids).last_hidden_state, want)
        assert close(head(ids, output_hidden_states=True).hidden_states[-1], want)


# ----------------------------------------------------------------------------- Marian


@pytest.fixture
def marian(tmp_path):
    torch.manual_seed(0)
    ref = transformers.MarianModel(transformers.MarianConfig(**MARIAN))
    ref.set_attn_implementation("eager")
    ref.eval().save_pretrained(tmp_path)
    return wxb.from_pretrained(tmp_path).eval(), ref


def _source() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(2, 50, (3, 7), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    return ids.masked_fill(mask == 0, 0), mask


def test_marian_model_equals_transformers(marian):
    ours, ref = marian
    assert type(ours) is transformer.MarianModel
    ids, mask = _source()
    target = torch.randint(2, 50, (3, 6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a = ours(ids, mask, target, output_attentions=True, output_hidden_states=True)
        b = ref(input_ids=ids, attention_mask=mask, decoder_input_ids=target, use_cache=False,
                output_attentions=True, output_hidden_states=True)
    assert list(a.keys()) == list(b.keys())
    for name in ("last_hidden_state", "encoder_last_hidden_state"):
        assert close(a[name], b[name]), name
    for name in ("decoder_hidden_states", "decoder_attentions", "cross_attentions",
                 "encoder_hidden_states", "encoder_attentions"):
        assert len(a[name]) == len(b[name]), name
        assert all(close(x, y) for x, y in zip(a[name], b[name], strict=True)), name


def test_marian_cached_decoding_equals_the_full_pass(marian):
    ours, ref = marian
    ids, mask = _source()
    target = torch.randint(2, 50, (3, 8), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        full = ref(input_ids=ids, attention_mask=mask, decoder_input_ids=target).last_hidden_state
        out = ours(ids, mask, target[:, :3], use_cache=True)
        encoded = ours.encoder(ids, mask)
        steps, cache = [out.last_hidden_state], out.past_key_values
        for t in range(3, 8):
            out = ours(attention_mask=mask, decoder_input_ids=target[:, t:t + 1],
                       encoder_outputs=encoded, past_key_values=cache, use_cache=True)
            steps.append(out.last_hidden_state)
    assert close(torch.cat(steps, dim=1), full)
    assert close(out.encoder_last_hidden_state, encoded.last_hidden_state)


def shifted(labels: torch.Tensor) -> torch.Tensor:
    """Marian's decoder input for labels: the start token (the pad id 0), then the labels."""
    return torch.cat([torch.zeros_like(labels[:, :1]), labels[:, :-1]], dim=1)


def test_marian_translation_model_runs_its_bare_model(marian, tmp_path):
    ours, ref = marian
    ref.save_pretrained(tmp_path / "bare")
    mt = transformer.MarianMTModel.from_pretrained(tmp_path / "bare").eval()
    assert mt.base_model.__class__ is transformer.MarianModel
    ids, mask = _source()
    labels = torch.randint(2, 50, (3, 5), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = mt(ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        bare = ours(ids, mask, shifted(labels), output_hidden_states=True)
    assert close(out.decoder_hidden_states[-1], bare.last_hidden_state)
    expected = mt.lm_head(bare.last_hidden_state) + mt.final_logits_bias
    assert close(out.logits, expected)
