"""Whisper against transformers' own: weights, encoder, logits, loss, cache, folders.

The random models have a vocabulary laid out as Whisper's: 50 text tokens, <|endoftext|>,
<|startoftranscript|>, three languages, the tasks, <|startoflm|>, <|startofprev|>,
<|nospeech|>, <|notimestamps|>, then the timestamps of a 2-second window (100 encoder steps of
20 ms: <|0.00|> .. <|2.00|>), so every rule has tokens to act on.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import wxb
from wxb.errors import ConfigError
from wxb.models.whisper import (
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperModel,
    whisper_sinusoids,
)

transformers.logging.set_verbosity_error()

EOS, SOT = 50, 51
LANGS = {"<|en|>": 52, "<|zh|>": 53, "<|de|>": 54}
TRANSLATE, TRANSCRIBE, SOLM, SOPREV, NOSPEECH, NOTS = 55, 56, 57, 58, 59, 60
TS = NOTS + 1  # <|0.00|>
VOCAB = TS + 101
SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", *LANGS, "<|translate|>",
            "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
            "<|notimestamps|>", *(f"<|{i * 0.02:.2f}|>" for i in range(101))]
SUPPRESS = [3, 7, SOT, SOLM, SOPREV, NOSPEECH]  # <|startofprev|> second to last, as Whisper's
BEGIN_SUPPRESS = [5, EOS]
COMMON = dict(vocab_size=VOCAB, num_mel_bins=80, d_model=64, encoder_ffn_dim=128,
              decoder_ffn_dim=96, max_source_positions=100, max_target_positions=64,
              decoder_start_token_id=SOT, pad_token_id=EOS, bos_token_id=EOS, eos_token_id=EOS,
              suppress_tokens=SUPPRESS, begin_suppress_tokens=BEGIN_SUPPRESS, init_std=0.2)
VARIANTS = {
    "tiny": dict(encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4),
    # Whisper's own window: 3000 frames, 1500 encoder steps.
    "30s": dict(encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                decoder_attention_heads=2, max_source_positions=1500),
    "untied-relu": dict(encoder_layers=3, decoder_layers=1, encoder_attention_heads=8,
                        decoder_attention_heads=2, tie_word_embeddings=False,
                        activation_function="relu"),
}
CLASSES = {"WhisperForConditionalGeneration": WhisperForConditionalGeneration,
           "WhisperModel": WhisperModel}


def _settings(name: str, **extra) -> dict:
    return {**COMMON, **VARIANTS[name], **extra}


def _pair(name: str, cls_name: str = "WhisperForConditionalGeneration", **extra):
    """transformers' model (seeded, random) and wxb's with its weights."""
    torch.manual_seed(len(name))
    settings = _settings(name, **extra)
    reference = getattr(transformers, cls_name)(transformers.WhisperConfig(
        **settings, attn_implementation="eager")).eval()
    ours = CLASSES[cls_name](WhisperConfig(**settings)).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def _features(name: str, batch: int = 2) -> torch.Tensor:
    frames = 2 * _settings(name)["max_source_positions"]
    return torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(3))


def _labels() -> torch.Tensor:
    labels = torch.randint(0, EOS, (2, 9), generator=torch.Generator().manual_seed(4))
    labels[1, 5:] = -100
    return labels


@pytest.mark.parametrize("name", VARIANTS)
@pytest.mark.parametrize("cls_name", CLASSES)
def test_parameter_names_are_transformers(name, cls_name):
    settings = _settings(name)
    theirs = getattr(transformers, cls_name)(transformers.WhisperConfig(**settings)).state_dict()
    ours = CLASSES[cls_name](WhisperConfig(**settings)).state_dict()
    assert set(ours) == set(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)
    assert "model.encoder.layers.0.self_attn.k_proj.bias" not in ours  # no key bias
    assert ours.get("model.encoder.conv2.bias", ours.get("encoder.conv2.bias")) is not None


def test_fresh_model_is_initialised_as_transformers():
    # The sinusoid table is openai's; the rest follows init_std.
    torch.manual_seed(0)
    ours = WhisperForConditionalGeneration(WhisperConfig(**_settings("tiny")))
    theirs = transformers.WhisperForConditionalGeneration(
        transformers.WhisperConfig(**_settings("tiny")))
    table = ours.model.encoder.embed_positions.weight
    torch.testing.assert_close(table, theirs.model.encoder.embed_positions.weight)
    torch.testing.assert_close(table, whisper_sinusoids(100, 64))
    assert not table.requires_grad
    assert ours.proj_out.weight is ours.model.decoder.embed_tokens.weight
    assert bool((ours.model.decoder.embed_tokens.weight[EOS] == 0).all())  # the padding row
    std = ours.model.decoder.layers[0].fc1.weight.std().item()
    assert 0.15 < std < 0.25  # init_std 0.2


@pytest.mark.parametrize("name", VARIANTS)
def test_encoder_logits_and_loss_equal_transformers(name):
    reference, ours = _pair(name)
    features, labels = _features(name), _labels()
    with torch.no_grad():
        want = reference(features, labels=labels)
        got = ours(features, labels=labels)
    torch.testing.assert_close(got.encoder_last_hidden_state, want.encoder_last_hidden_state,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.loss, want.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)  # the loss, as theirs
    # The decoder read the labels shifted right, <|startoftranscript|> first, -100 as padding;
    # the loss ignores -100.
    kept = labels != -100
    manual = torch.nn.functional.cross_entropy(got.logits[kept], labels[kept])
    torch.testing.assert_close(got.loss, manual)
    shifted = torch.cat([torch.full((2, 1), SOT), labels[:, :-1].masked_fill(
        labels[:, :-1] == -100, EOS)], dim=1)
    with torch.no_grad():
        again = ours(features, decoder_input_ids=shifted).logits
    torch.testing.assert_close(again, got.logits)


def test_bare_model_attentions_and_hidden_states_equal_transformers():
    reference, ours = _pair("tiny", "WhisperModel")
    features, ids = _features("tiny"), _labels().clamp(min=0)
    with torch.no_grad():
        want = reference(features, decoder_input_ids=ids, output_attentions=True,
                         output_hidden_states=True)
        got = ours(features, decoder_input_ids=ids, output_attentions=True,
                   output_hidden_states=True)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5,
                               rtol=1e-5)
    for key in ("cross_attentions", "decoder_attentions", "encoder_attentions",
                "encoder_hidden_states", "decoder_hidden_states"):
        assert len(got[key]) == len(want[key]), key
        for a, b in zip(got[key], want[key], strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert got.cross_attentions[0].shape == (2, 4, 9, 100)  # (batch, heads, tgt, steps)


@pytest.mark.parametrize("name", ["tiny", "untied-relu"])
def test_cached_decoding_equals_the_full_pass(name):
    reference, ours = _pair(name)
    features, ids = _features(name), _labels().clamp(min=0)
    with torch.no_grad():
        full = ours(features, decoder_input_ids=ids).logits
        memory = ours.encode(features)
        cache, steps = None, []
        for chunk in (ids[:, :3], *ids[:, 3:].split(1, 1)):
            logits, cache = ours.decode(chunk, memory, cache)
            steps.append(logits)
        # The forward pass with use_cache goes on the same way, the memory's keys and values
        # computed once (on the first call).
        first = ours(features, decoder_input_ids=ids[:, :4], use_cache=True)
        kv = first.past_key_values.memory_kv
        rest = ours(encoder_outputs=wxb.models.outputs.BaseModelOutput(
            first.encoder_last_hidden_state), decoder_input_ids=ids[:, 4:],
            past_key_values=first.past_key_values, use_cache=True)
        want = reference(features, decoder_input_ids=ids).logits
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rest.logits, full[:, 4:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full, want, atol=1e-5, rtol=1e-5)
    assert cache.self_attn.get_seq_length() == 9
    assert rest.past_key_values.memory_kv is kv


@pytest.mark.parametrize("name", ["tiny", "untied-relu"])
def test_folders_round_trip_with_transformers(name, tmp_path):
    reference, ours = _pair(name)
    features, labels = _features(name), _labels()
    with torch.no_grad():
        want = reference(features, labels=labels).logits
    # transformers' folder -> wxb.from_pretrained: the architecture's class, equal logits.
    reference.save_pretrained(tmp_path / "hf")
    loaded = wxb.from_pretrained(tmp_path / "hf").eval()
    assert type(loaded) is WhisperForConditionalGeneration
    with torch.no_grad():
        torch.testing.assert_close(loaded(features, labels=labels).logits, want, atol=1e-5,
                                   rtol=1e-5)
    # wxb's folder -> transformers: equal logits, the tie (or its absence) kept.
    ours.save_pretrained(tmp_path / "wxb")
    back = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "wxb")
    with torch.no_grad():
        torch.testing.assert_close(back.eval()(features, labels=labels).logits, want,
                                   atol=1e-5, rtol=1e-5)
    tied = back.proj_out.weight.data_ptr() == back.model.decoder.embed_tokens.weight.data_ptr()
    assert tied == ours.config.tie_word_embeddings
    bare, _ = _pair(name, "WhisperModel")
    bare.save_pretrained(tmp_path / "bare")
    assert type(wxb.from_pretrained(tmp_path / "bare")) is WhisperModel


def test_bad_input_is_one_clear_line():
    _, ours = _pair("tiny")
    ids = torch.tensor([[SOT]])
    with pytest.raises(ConfigError, match=r"\(batch, 80 mels, 200 frames\).*\(1, 80, 150\)"):
        ours(torch.randn(1, 80, 150), decoder_input_ids=ids)
    with pytest.raises(ConfigError, match="max_target_positions"):
        ours(_features("tiny"), labels=torch.zeros(2, 65, dtype=torch.long))
    with pytest.raises(ConfigError, match="max_target_positions 64"):
        ours(_features("tiny"), decoder_input_ids=torch.zeros(1, 65, dtype=torch.long))
    with pytest.raises(ConfigError, match="not divisible by 5"):
        WhisperConfig(**{**_settings("tiny"), "encoder_attention_heads": 5})
