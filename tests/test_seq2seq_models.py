"""The 2017 Transformer against transformers' MarianMTModel and torch.nn.Transformer, and the
recurrent Seq2Seq against its own definitions (teacher forcing, padding, attention, decoding)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
import transformers

from wxb.errors import ConfigError
from wxb.generation import generate
from wxb.hub import load_pretrained
from wxb.models.seq2seq import Seq2Seq, Seq2SeqConfig, scheduled_ratio
from wxb.models.transformer import MarianMTModel, TransformerConfig
from wxb.nn import Recurrent

SMALL = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
             activation_function="relu", max_position_embeddings=64, scale_embedding=True,
             pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout=0.0)


def _source(vocab: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Three right-padded sources (3, 7) and their mask."""
    torch.manual_seed(1)
    ids = torch.randint(2, vocab, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    return ids.masked_fill(mask == 0, 0), mask


@pytest.mark.parametrize("share", [True, False])
def test_transformer_equals_marian_and_round_trips(share, tmp_path):
    torch.manual_seed(0)
    config = transformers.MarianConfig(vocab_size=50, decoder_vocab_size=None if share else 40,
                                       share_encoder_decoder_embeddings=share,
                                       forced_eos_token_id=None, **SMALL)
    reference = transformers.MarianMTModel(config).eval()
    with torch.no_grad():
        reference.final_logits_bias.normal_()
    reference.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(MarianMTModel, tmp_path / "hf").eval()
    ids, mask = _source()
    labels = torch.randint(2, 40, (3, 5))
    with torch.no_grad():
        expected = reference(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    for settings in ({"num_beams": 1}, {"num_beams": 4}, {"num_beams": 3, "length_penalty": 0.6},
                     {"num_beams": 2, "num_return_sequences": 2}):
        want = reference.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12,
                                  do_sample=False, **settings)
        assert torch.equal(generate(ours, ids, attention_mask=mask, max_new_tokens=12,
                                    **settings), want), settings
    ours.save_pretrained(tmp_path / "wxb")
    back = transformers.MarianMTModel.from_pretrained(tmp_path / "wxb").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids, attention_mask=mask,
                                        labels=labels).logits, expected.logits)


def test_pre_ln_transformer_equals_torch_nn_transformer():
    torch.manual_seed(0)
    model = MarianMTModel(TransformerConfig(vocab_size=50, normalize_before=True,
                                            **SMALL)).eval()
    d, heads = 32, 4
    ref = torch.nn.Transformer(d, heads, 2, 2, 64, dropout=0.0, batch_first=True,
                               norm_first=True).eval()
    state = {}
    for side, layers in (("encoder", model.model.encoder.layers),
                         ("decoder", model.model.decoder.layers)):
        for i, layer in enumerate(layers):
            attns = [("self_attn", layer.self_attn)]
            norms = [("norm1", layer.self_attn_layer_norm)]
            if side == "decoder":
                attns.append(("multihead_attn", layer.encoder_attn))
                norms += [("norm2", layer.encoder_attn_layer_norm),
                          ("norm3", layer.final_layer_norm)]
            else:
                norms.append(("norm2", layer.final_layer_norm))
            p = f"{side}.layers.{i}."
            for name, a in attns:
                state[p + f"{name}.in_proj_weight"] = torch.cat(
                    [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
                state[p + f"{name}.in_proj_bias"] = torch.cat(
                    [a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
                state[p + f"{name}.out_proj.weight"] = a.out_proj.weight
                state[p + f"{name}.out_proj.bias"] = a.out_proj.bias
            for name, norm in norms:
                state[p + f"{name}.weight"], state[p + f"{name}.bias"] = norm.weight, norm.bias
            for name in ("linear1", "linear2"):
                fc = layer.fc1 if name == "linear1" else layer.fc2
                state[p + f"{name}.weight"], state[p + f"{name}.bias"] = fc.weight, fc.bias
        stack = getattr(model.model, side)
        state[f"{side}.norm.weight"] = stack.layer_norm.weight
        state[f"{side}.norm.bias"] = stack.layer_norm.bias
    ref.load_state_dict(state)
    ids, mask = _source()
    target = torch.randint(2, 50, (3, 6))
    with torch.no_grad():
        encoder, decoder = model.model.encoder, model.model.decoder
        src = encoder.embed(ids, torch.arange(7)[None])
        tgt = decoder.embed(target, torch.arange(6)[None])
        expected = ref(src, tgt, tgt_mask=ref.generate_square_subsequent_mask(6),
                       src_key_padding_mask=mask == 0, memory_key_padding_mask=mask == 0,
                       tgt_is_causal=True)
        memory = encoder(ids, mask).last_hidden_state
        kv = [layer.encoder_attn.keys_values(memory) for layer in decoder.layers]
        got = decoder(target, kv, mask[:, None, None, :].bool()).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_label_smoothing_is_the_papers():
    torch.manual_seed(0)
    model = MarianMTModel(TransformerConfig(vocab_size=30, label_smoothing=0.1, **SMALL))
    ids, mask = _source(30)
    labels = torch.randint(2, 30, (3, 4))
    labels[0, 3] = -100
    out = model(ids, attention_mask=mask, labels=labels)
    logp = out.logits.log_softmax(-1)[labels != -100]
    target = labels[labels != -100]
    # (1 - eps) on the true token, eps spread evenly over the whole vocabulary
    smoothed = -(0.9 * logp.gather(1, target[:, None]).squeeze(1) + 0.1 * logp.mean(-1))
    torch.testing.assert_close(out.loss, smoothed.mean())


def test_transformer_config_refuses_what_cannot_work():
    with pytest.raises(ConfigError, match="share_encoder_decoder_embeddings"):
        TransformerConfig(vocab_size=10, decoder_vocab_size=20)
    with pytest.raises(ConfigError, match="divisible"):
        TransformerConfig(d_model=30, encoder_attention_heads=4)


def test_recurrent_step_equals_forward():
    torch.manual_seed(0)
    for mode in ("rnn", "gru", "lstm"):
        layer = Recurrent(mode, 5, 7, 2)
        x = torch.randn(3, 4, 5)
        expected, final = layer(x)
        h = torch.zeros(2, 3, 7)
        state = (h, h.clone()) if mode == "lstm" else h
        outs = []
        for t in range(4):
            out, state = layer.step(x[:, t], state)
            outs.append(out)
        torch.testing.assert_close(torch.stack(outs, 1), expected[..., :7])
        torch.testing.assert_close(state, final)
    with pytest.raises(ConfigError, match="unidirectional"):
        Recurrent("gru", 5, 7, bidirectional=True).step(x[:, 0], torch.zeros(2, 3, 7))


def _seq2seq(**kw) -> Seq2Seq:
    torch.manual_seed(0)
    values = dict(vocab_size=30, decoder_vocab_size=25, embedding_size=16, hidden_size=16,
                  num_hidden_layers=2, dropout=0.0)
    return Seq2Seq(Seq2SeqConfig(**{**values, **kw})).eval()


@pytest.mark.parametrize("attention", ["bahdanau", "dot", "general", "none"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_seq2seq_teacher_forcing_equals_decoding_and_ignores_padding(attention, cell):
    model = _seq2seq(attention=attention, cell=cell)
    ids, mask = _source(30)
    # Greedy decoding without eos runs every step; feeding its output back (teacher
    # forcing) must give the same logits step by step.
    greedy = generate(model, ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None)
    out = model(ids, attention_mask=mask, decoder_input_ids=greedy[:, :-1],
                output_attentions=True)
    assert torch.equal(out.logits.argmax(-1), greedy[:, 1:])
    # A padded source reads as the unpadded one.
    alone = model(ids[2:3, :3], decoder_input_ids=greedy[2:3, :-1]).logits
    torch.testing.assert_close(alone, out.logits[2:3], atol=1e-6, rtol=1e-5)
    if attention == "none":
        assert out.cross_attentions is None
        return
    weights = out.cross_attentions[0]
    assert weights.shape == (3, 1, 6, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, 6))
    assert bool((weights[2, :, :, 3:] == 0).all())  # never on padding


def test_seq2seq_without_teacher_forcing_feeds_its_own_guesses():
    model = _seq2seq()
    ids, mask = _source(30)
    labels = torch.randint(2, 25, (3, 6))
    greedy = generate(model, ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None)
    model.train()  # dropout is 0: only the inputs differ between the modes
    model.teacher_forcing_ratio = 0.0
    free = model(ids, attention_mask=mask, labels=labels)
    model.eval()
    fed = model(ids, attention_mask=mask, decoder_input_ids=greedy[:, :-1], labels=labels)
    torch.testing.assert_close(free.logits, fed.logits)
    torch.testing.assert_close(free.loss, F.cross_entropy(fed.logits.flatten(0, 1),
                                                          labels.flatten()))
    model.train()
    model.teacher_forcing_ratio = 1.0
    forced = model(ids, attention_mask=mask, labels=labels)
    assert not torch.allclose(forced.logits, free.logits)


def test_seq2seq_beam_search_finds_a_likelier_translation():
    model = _seq2seq(attention="general", cell="lstm")
    ids, mask = _source(30)

    def log_prob(sequences: torch.Tensor) -> torch.Tensor:
        logits = model(ids, attention_mask=mask, decoder_input_ids=sequences[:, :-1]).logits
        return logits.log_softmax(-1).gather(2, sequences[:, 1:, None]).squeeze(2).sum(1)

    greedy = generate(model, ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None)
    beam1 = generate(model, ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None,
                     num_beams=1)
    beam4 = generate(model, ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None,
                     num_beams=4)
    assert torch.equal(beam1, greedy)
    with torch.no_grad():
        assert bool((log_prob(beam4) >= log_prob(greedy) - 1e-5).all())


def test_scheduled_sampling_schedules():
    for schedule in ("linear", "exponential", "inverse_sigmoid"):
        ratios = [scheduled_ratio(schedule, step, 100, start=1.0, end=0.4) for step in
                  range(0, 101, 10)]
        assert ratios[0] == pytest.approx(1.0) and ratios[-1] == pytest.approx(0.4)
        assert all(a >= b for a, b in itertools.pairwise(ratios))
    assert scheduled_ratio("linear", 50, 100, start=1.0, end=0.5) == pytest.approx(0.75)
    assert scheduled_ratio("constant", 70, 100, start=0.8) == 0.8
    with pytest.raises(ConfigError, match="inverse_sigmoid"):
        scheduled_ratio("cosine", 1, 10)
