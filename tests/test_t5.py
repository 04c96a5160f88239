"""T5 against transformers' own: weights, encoder, logits, loss, buckets, generation, folders."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers.models.t5.modeling_t5 import T5Attention as HFT5Attention

import wxb
from wxb.errors import ConfigError
from wxb.generation import generate
from wxb.models.t5 import (
    T5Config,
    T5EncoderModel,
    T5ForConditionalGeneration,
    T5Model,
)
from wxb.nn import relative_position_bucket

# Odd head counts, a head size that does not divide d_model, unequal stacks, several bucket
# settings. transformers' generate sizes its cache by num_layers, so the decoder has fewer.
VARIANTS = {
    "v1.0": dict(feed_forward_proj="relu", tie_word_embeddings=True, num_heads=3, d_kv=5,
                 num_layers=3, num_decoder_layers=2, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128),
    "v1.1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_heads=3,
                 d_kv=8, num_layers=2, num_decoder_layers=1, relative_attention_num_buckets=10,
                 relative_attention_max_distance=20),
    "silu": dict(feed_forward_proj="gated-silu", tie_word_embeddings=False, num_heads=5,
                 d_kv=4, num_layers=2, num_decoder_layers=2, relative_attention_num_buckets=7,
                 relative_attention_max_distance=9),
}
OURS = {c.__name__: c for c in (T5ForConditionalGeneration, T5Model, T5EncoderModel)}
COMMON = dict(vocab_size=61, d_model=24, d_ff=40, dropout_rate=0.0, decoder_start_token_id=0)


def _pair(name: str, cls_name: str = "T5ForConditionalGeneration"):
    """transformers' model (seeded, random) and wxb's with its weights."""
    torch.manual_seed(len(name) + len(cls_name))
    settings = {**COMMON, **VARIANTS[name]}
    reference = getattr(transformers, cls_name)(transformers.T5Config(**settings)).eval()
    ours = OURS[cls_name](T5Config(**settings)).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def _batch(src: int = 40, tgt: int = 23):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, 61, (3, src), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 25:] = 0
    mask[2, 6:] = 0
    labels = torch.randint(1, 61, (3, tgt), generator=g)
    labels[1, 14:] = -100
    labels[2, 3:] = -100
    return ids.masked_fill(mask == 0, 0), mask, labels


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("cls_name", ["T5ForConditionalGeneration", "T5Model", "T5EncoderModel"])
def test_parameter_names_are_transformers(name, cls_name):
    settings = {**COMMON, **VARIANTS[name]}
    theirs = getattr(transformers, cls_name)(transformers.T5Config(**settings)).state_dict()
    ours = OURS[cls_name](T5Config(**settings)).state_dict()
    assert set(ours) == set(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_loss_and_encoder_equal_transformers(name):
    reference, ours = _pair(name)
    ids, mask, labels = _batch()
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.encoder_last_hidden_state, want.encoder_last_hidden_state,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)  # the loss, as theirs
    torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-5)
    # The loss ignores -100: changing the logits only where labels are -100 keeps it.
    kept = labels != -100
    manual = torch.nn.functional.cross_entropy(got.logits[kept], labels[kept])
    torch.testing.assert_close(got.loss, manual)
    # v1.0 rescales by d_model^-0.5 before its tied head; v1.1 does not.
    assert ours.config.scale_decoder_outputs == (name == "v1.0")


@pytest.mark.parametrize("name", ["v1.0", "v1.1"])
def test_bare_and_encoder_models_equal_transformers(name):
    ids, mask, labels = _batch()
    decoder_ids = labels.clamp(min=0)
    reference, ours = _pair(name, "T5Model")
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
        got = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    reference, ours = _pair(name, "T5EncoderModel")
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ours(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(got.last_hidden_state, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)
    # Padding changes nothing at the real positions: the mask is in the bias.
    with torch.no_grad():
        alone = ours(input_ids=ids[2:, :6]).last_hidden_state
    torch.testing.assert_close(got.last_hidden_state[2:, :6], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("buckets,distance", [(32, 128), (10, 20), (7, 9), (4, 5), (64, 300)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_buckets_equal_transformers(buckets, distance, bidirectional):
    relative = torch.arange(-300, 301)[None, :] - torch.zeros(3, 1, dtype=torch.long)
    want = HFT5Attention._relative_position_bucket(relative, bidirectional, buckets, distance)
    got = relative_position_bucket(relative, bidirectional, buckets, distance)
    assert torch.equal(got, want)
    assert int(got.min()) == 0 and int(got.max()) < buckets
    if not bidirectional:  # the decoder sees no future: every key after the query is bucket 0
        assert bool((got[:, 301:] == 0).all())


@pytest.mark.parametrize("name", ["v1.0", "v1.1"])
def test_greedy_and_beam_generate_equal_transformers(name):
    reference, ours = _pair(name)
    ids, mask, _ = _batch(src=17)
    for settings in ({"num_beams": 1}, {"num_beams": 3}, {"num_beams": 3, "length_penalty": 0.6,
                                                           "num_return_sequences": 2}):
        want = reference.generate(input_ids=ids, attention_mask=mask, max_new_tokens=20,
                                  do_sample=False, **settings)
        got = generate(ours, ids, attention_mask=mask, max_new_tokens=20, **settings)
        assert torch.equal(got, want), settings
        assert bool((got[:, 0] == 0).all())  # decoding starts from the pad token


@pytest.mark.parametrize("name", ["v1.0", "v1.1"])
def test_cached_decoding_equals_the_full_pass(name):
    _, ours = _pair(name)
    ids, mask, labels = _batch()
    decoder_ids = labels.clamp(min=0)[:, :12]
    with torch.no_grad():
        full = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        memory = ours.encode(ids, mask)
        cache, steps = None, []
        for chunk in (decoder_ids[:, :1], decoder_ids[:, 1:5], *decoder_ids[:, 5:].split(1, 1)):
            logits, cache = ours.decode(chunk, memory, cache)
            steps.append(logits)
        # The forward pass with use_cache continues the same way.
        first = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids[:, :7],
                     use_cache=True)
        rest = ours(encoder_outputs=_encoded(first), attention_mask=mask,
                    decoder_input_ids=decoder_ids[:, 7:], past_key_values=first.past_key_values)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest.logits, full[:, 7:], atol=1e-5, rtol=1e-5)
    assert cache.self_attn.get_seq_length() == 12


def _encoded(out):
    return wxb.models.outputs.BaseModelOutput(out.encoder_last_hidden_state)


@pytest.mark.parametrize("name", ["v1.0", "v1.1"])
def test_folders_round_trip_with_transformers(name, tmp_path):
    reference, ours = _pair(name)
    ids, mask, labels = _batch()
    with torch.no_grad():
        want = reference(input_ids=ids, attention_mask=mask, labels=labels).logits
    # transformers' folder -> wxb.from_pretrained: the architecture's class, equal logits.
    reference.save_pretrained(tmp_path / "hf")
    loaded = wxb.from_pretrained(tmp_path / "hf").eval()
    assert type(loaded) is T5ForConditionalGeneration
    with torch.no_grad():
        got = loaded(input_ids=ids, attention_mask=mask, labels=labels).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # wxb's folder -> transformers: equal logits.
    ours.save_pretrained(tmp_path / "wxb")
    back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "wxb").eval()
    with torch.no_grad():
        again = back(input_ids=ids, attention_mask=mask, labels=labels).logits
    torch.testing.assert_close(again, want, atol=1e-5, rtol=1e-5)
    # An untied head of wxb's own (v1.1, trained apart from the embeddings) stays untied.
    if name == "v1.1":
        torch.manual_seed(3)
        fresh = T5ForConditionalGeneration(T5Config(**COMMON, **VARIANTS[name])).eval()
        assert not torch.equal(fresh.lm_head.weight, fresh.shared.weight)
        fresh.save_pretrained(tmp_path / "fresh")
        back = transformers.T5ForConditionalGeneration.from_pretrained(tmp_path / "fresh")
        with torch.no_grad():
            torch.testing.assert_close(
                back.eval()(input_ids=ids, attention_mask=mask, labels=labels).logits,
                fresh(input_ids=ids, attention_mask=mask, labels=labels).logits,
                atol=1e-5, rtol=1e-5)
    for cls_name in ("T5Model", "T5EncoderModel"):
        reference, _ = _pair(name, cls_name)
        reference.save_pretrained(tmp_path / cls_name)
        assert type(wxb.from_pretrained(tmp_path / cls_name)).__name__ == cls_name


def test_config_round_trips_and_refuses_what_cannot_work():
    config = T5Config(num_layers=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    assert config.num_decoder_layers == 4 and config.dense_act_fn == "gelu_new"
    assert T5Config.from_dict(config.to_dict()) == config
    assert T5Config().dense_act_fn == "relu" and not T5Config().is_gated_act
    with pytest.raises(ConfigError, match="feed_forward_proj"):
        T5Config(feed_forward_proj="gelu-gated")
    # An unknown one names the field and lists what is supported.
    with pytest.raises(ConfigError, match=r"feed_forward_proj 'gated-nope' .*gelu, gelu_new"):
        T5Config(feed_forward_proj="gated-nope")
    model = T5ForConditionalGeneration(T5Config(**COMMON, **VARIANTS["v1.0"]))
    assert model.lm_head.weight is model.shared.weight
    with pytest.raises(ConfigError, match="labels"):
        model(input_ids=torch.ones(1, 3, dtype=torch.long))


def test_training_step_lowers_the_loss():
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**{**COMMON, **VARIANTS["v1.1"],
                                                   "dropout_rate": 0.1}))
    ids, mask, labels = _batch(src=12, tgt=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
