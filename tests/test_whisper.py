"""Whisper against transformers' own: weights, encoder, logits, loss, cache, folders, and the
decoding (forced prompt, suppressions, timestamp rules, language detection, beams, windows).

The random models have a vocabulary laid out as Whisper's: 50 text tokens, <|endoftext|>,
<|startoftranscript|>, three languages, the tasks, <|startoflm|>, <|startofprev|>,
<|nospeech|>, <|notimestamps|>, then the timestamps of a 2-second window (100 encoder steps of
20 ms: <|0.00|> .. <|2.00|>), so every rule has tokens to act on.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import transformers
from tokenizers import Tokenizer, models
from transformers.generation import logits_process as hf_lp

import wxb
from wxb.errors import ConfigError
from wxb.generation import generate, stream
from wxb.generation import logits as wx_lp
from wxb.generation.whisper import (
    WhisperGenerationConfig,
    decode_window,
    detect_language,
    prompt_tokens,
    split_segments,
    transcribe,
)
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


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


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
    with pytest.raises(ConfigError, match="must be log-mel features"):
        generate(ours, torch.zeros(1, 80, 200, dtype=torch.long))


# ---------------------------------------------------------------- decoding


def _hf_generation_config() -> transformers.GenerationConfig:
    """What a multilingual checkpoint's generation_config.json holds, for the tiny vocabulary."""
    return transformers.GenerationConfig(
        decoder_start_token_id=SOT, eos_token_id=EOS, pad_token_id=EOS, bos_token_id=EOS,
        suppress_tokens=SUPPRESS, begin_suppress_tokens=BEGIN_SUPPRESS,
        no_timestamps_token_id=NOTS, prev_sot_token_id=SOPREV, lang_to_id=LANGS,
        task_to_id={"translate": TRANSLATE, "transcribe": TRANSCRIBE}, is_multilingual=True,
        max_initial_timestamp_index=50, max_length=64,
        forced_decoder_ids=[[1, None], [2, TRANSCRIBE]])


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A peaked random model (init_std 0.5) saved by transformers with its generation config,
    loaded back by wxb with WhisperGenerationConfig.from_pretrained."""
    torch.manual_seed(6)  # a seed whose rows are heard in different languages
    reference = transformers.WhisperForConditionalGeneration(
        transformers.WhisperConfig(**_settings("tiny", init_std=0.5))).eval()
    reference.generation_config = _hf_generation_config()
    folder = tmp_path_factory.mktemp("whisper")
    reference.save_pretrained(folder)
    ours = wxb.from_pretrained(folder).eval()
    return SimpleNamespace(reference=reference, ours=ours, folder=folder,
                           whisper=WhisperGenerationConfig.from_pretrained(folder),
                           features=_features("tiny", batch=3))


def test_generation_config_reads_and_writes_transformers_files(speech, tmp_path):
    w = speech.whisper
    assert (w.decoder_start_token_id, w.no_timestamps_token_id, w.timestamp_begin) == (
        SOT, NOTS, TS)
    assert w.lang_to_id == LANGS and w.forced_decoder_ids == [[1, None], [2, TRANSCRIBE]]
    assert w.language_token("zh") == w.language_token("Chinese") == w.language_token(
        "<|zh|>") == 53
    w.save(tmp_path)
    back = transformers.GenerationConfig.from_pretrained(tmp_path)
    assert (back.no_timestamps_token_id, back.lang_to_id, back.suppress_tokens) == (
        NOTS, LANGS, SUPPRESS)
    # A folder without generation_config.json: the model config's ids and suppressions only.
    speech.ours.save_pretrained(tmp_path / "bare")
    plain = WhisperGenerationConfig.from_pretrained(tmp_path / "bare")
    assert (plain.decoder_start_token_id, plain.no_timestamps_token_id, plain.lang_to_id) == (
        SOT, None, None)
    assert plain.begin_suppress_tokens == BEGIN_SUPPRESS and plain.max_length == 64


def test_language_detection_equals_transformers(speech):
    want = speech.reference.detect_language(speech.features)
    got = detect_language(speech.ours, speech.features, speech.whisper)
    assert torch.equal(got, want)
    assert len(set(got.tolist())) > 1  # the rows differ: a real test of per-row detection


GENERATE = [
    {},  # language detected per row, transcribe, <|notimestamps|>
    {"return_timestamps": True},
    {"language": "zh"},
    {"language": "german", "task": "translate", "return_timestamps": True},
    {"num_beams": 3},
    {"num_beams": 3, "return_timestamps": True, "length_penalty": 0.5},
    {"prompt_ids": [SOPREV, 10, 11, 12], "return_timestamps": True, "language": "en"},
    {"num_beams": 2, "prompt_ids": [SOPREV, 10]},
]


@pytest.mark.parametrize("settings", GENERATE, ids=lambda s: ",".join(s) or "default")
def test_decode_window_equals_transformers_generate(speech, settings):
    theirs = dict(settings)
    if "prompt_ids" in theirs:
        theirs["prompt_ids"] = torch.tensor(theirs["prompt_ids"])
    want = speech.reference.generate(speech.features, max_new_tokens=24,
                                     force_unique_generate_call=True, **theirs)
    got = decode_window(speech.ours, speech.features, whisper=speech.whisper, max_new_tokens=24,
                        **settings)
    assert torch.equal(got, want), (got, want)
    begin = len(settings.get("prompt_ids", [])) + (3 if settings.get("return_timestamps")
                                                     else 4)
    new = got[:, begin:]
    assert not bool(torch.isin(new, torch.tensor(SUPPRESS)).any())
    assert not bool(torch.isin(new[:, 0], torch.tensor(BEGIN_SUPPRESS)).any())
    if settings.get("return_timestamps"):
        assert bool((new[:, 0] >= TS).all()) and bool((new[:, 0] <= TS + 50).all())
        assert bool((new < EOS).any())  # text between them


def test_decode_window_default_length_is_transformers(speech):
    # Without a length: generation_config.json's max_length (64) after the prompt, capped at
    # the decoder's 64 positions.
    want = speech.reference.generate(speech.features[:1], return_timestamps=True,
                                     force_unique_generate_call=True)
    got = decode_window(speech.ours, speech.features[:1], whisper=speech.whisper,
                        return_timestamps=True)
    assert torch.equal(got, want)


def test_generation_config_task_equals_transformers(speech):
    theirs = _hf_generation_config()
    theirs.task = "translate"
    want = speech.reference.generate(speech.features, generation_config=theirs,
                                     max_new_tokens=8, force_unique_generate_call=True)
    whisper = WhisperGenerationConfig(**{**speech.whisper.to_dict(), "task": "translate"})
    got = decode_window(speech.ours, speech.features, whisper=whisper, max_new_tokens=8)
    assert torch.equal(got, want) and bool((got[:, 2] == TRANSLATE).all())


def test_prompt_tokens_follow_transformers_rules(speech):
    w = speech.whisper
    assert prompt_tokens(w, language="zh") == [[SOT, 53, TRANSCRIBE, NOTS]]
    assert prompt_tokens(w, task="translate", detected=[52, 54], return_timestamps=True) == [
        [SOT, 52, TRANSLATE], [SOT, 54, TRANSLATE]]
    assert prompt_tokens(w) == [[SOT, TRANSCRIBE, NOTS]]  # language left open, no detection
    # A generation config's own task and language (as transformers reads them) are defaults.
    translating = WhisperGenerationConfig(**{**w.to_dict(), "task": "translate"})
    assert prompt_tokens(translating, detected=[53]) == [[SOT, 53, TRANSLATE, NOTS]]
    assert prompt_tokens(translating, task="transcribe", language="de") == [
        [SOT, 54, TRANSCRIBE, NOTS]]
    english = WhisperGenerationConfig(decoder_start_token_id=SOT, no_timestamps_token_id=NOTS,
                                      is_multilingual=False, forced_decoder_ids=[[1, NOTS]])
    assert prompt_tokens(english) == [[SOT, NOTS]]
    assert prompt_tokens(english, return_timestamps=True) == [[SOT]]
    with pytest.raises(ConfigError, match="English-only"):
        prompt_tokens(english, language="en")
    with pytest.raises(ConfigError, match=r"unknown language 'klingon'.*en, zh, de"):
        prompt_tokens(w, language="klingon")
    with pytest.raises(ConfigError, match="unknown task 'summarize'"):
        prompt_tokens(w, task="summarize")
    with pytest.raises(ConfigError, match="no_timestamps_token_id"):
        decode_window(speech.ours, speech.features, return_timestamps=True)


def test_plain_generate_and_a_folder_without_generation_config(speech):
    out = generate(speech.ours, speech.features, max_new_tokens=5)
    assert out.shape == (3, 6) and bool((out[:, 0] == SOT).all())
    # A decoder prompt of one's own, streamed: the tokens generate gives after it.
    prompt = [SOT, 52, TRANSCRIBE, NOTS]
    whole = generate(speech.ours, speech.features, decoder_input_ids=prompt, max_new_tokens=4)
    steps = list(stream(speech.ours, speech.features, decoder_input_ids=prompt,
                        max_new_tokens=4))
    assert torch.equal(torch.stack(steps, dim=1), whole[:, 4:])
    assert torch.equal(whole[:, :4], torch.tensor([prompt] * 3))
    # Only config.json: transformers decodes from the start token with the config's
    # suppressions, and so does decode_window with no WhisperGenerationConfig.
    reference, ours = _pair("tiny", init_std=0.5)
    reference.generation_config = transformers.GenerationConfig.from_model_config(
        reference.config)
    features = _features("tiny")
    want = reference.generate(features, max_new_tokens=10, force_unique_generate_call=True)
    assert torch.equal(decode_window(ours, features, max_new_tokens=10), want)


def _timestamp_inputs(rows: int = 64, begin: int = 3):
    """Prompts followed by 0..6 new tokens drawn from text, timestamps and <|endoftext|>, in
    every order the rules distinguish, and their random scores (some peaked, some flat)."""
    g = torch.Generator().manual_seed(5)
    batches = []
    for count in range(7):
        new = torch.where(torch.rand(rows, count, generator=g) < 0.5,
                          torch.randint(0, EOS, (rows, count), generator=g),
                          torch.randint(TS, VOCAB, (rows, count), generator=g))
        prompt = torch.full((rows, begin), SOT)
        scale = torch.rand(rows, 1, generator=g) * 8
        batches.append((torch.cat([prompt, new], dim=1),
                        torch.randn(rows, VOCAB, generator=g) * scale))
    return batches


@pytest.mark.parametrize("max_initial", [None, 5])
def test_timestamp_rules_equal_transformers_and_openai(max_initial):
    ours = wx_lp.WhisperTimeStampLogitsProcessor(NOTS, EOS, 3, max_initial)
    theirs = hf_lp.WhisperTimeStampLogitsProcessor(transformers.GenerationConfig(
        no_timestamps_token_id=NOTS, eos_token_id=EOS, max_initial_timestamp_index=max_initial),
        begin_index=3)
    rules = pytest.importorskip("whisper.decoding").ApplyTimestampRules  # openai-whisper's
    tokenizer = SimpleNamespace(no_timestamps=NOTS, timestamp_begin=TS, eot=EOS)
    openai = rules(tokenizer, sample_begin=3, max_initial_timestamp_index=max_initial)
    forced_timestamp = 0
    for input_ids, scores in _timestamp_inputs():
        got = ours(input_ids, scores)
        torch.testing.assert_close(got, theirs(input_ids, scores), rtol=0, atol=0)
        reference = scores.clone()
        openai.apply(reference, input_ids)
        torch.testing.assert_close(got, reference, rtol=0, atol=0)
        forced_timestamp += int(torch.isinf(got[:, :TS]).all(dim=1).sum())
    assert forced_timestamp > 10  # rule 5 (timestamps' mass wins) fired often


def test_begin_suppression_equals_transformers():
    scores = torch.randn(4, VOCAB)
    ours = wx_lp.SuppressTokensAtBeginLogitsProcessor(BEGIN_SUPPRESS, begin_index=3)
    theirs = hf_lp.SuppressTokensAtBeginLogitsProcessor(BEGIN_SUPPRESS, begin_index=3)
    for length in (2, 3, 4):
        ids = torch.zeros(4, length, dtype=torch.long)
        torch.testing.assert_close(ours(ids, scores), theirs(ids, scores), rtol=0, atol=0)
    assert torch.isinf(ours(torch.zeros(4, 3, dtype=torch.long), scores)[:, EOS]).all()


def _tokenizer() -> Tokenizer:
    vocab = {f"w{i}": i for i in range(EOS)} | {t: EOS + i for i, t in enumerate(SPECIALS)}
    return Tokenizer(models.WordLevel(vocab, unk_token="w0"))


@pytest.mark.parametrize("timestamps", [False, True])
def test_transcribe_windows_with_previous_text(speech, timestamps):
    windows = _features("tiny", batch=3)
    calls = []
    result = transcribe(speech.ours, windows, whisper=speech.whisper, tokenizer=_tokenizer(),
                        return_timestamps=timestamps, max_new_tokens=12,
                        progress=lambda done, total: calls.append((done, total)))
    # The language is detected once, on the first window.
    first = speech.reference.detect_language(windows[:1])
    assert result.language == speech.whisper.language_code(int(first[0]))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    # Each window is transformers' generate with the earlier windows' tokens as prompt.
    history = []
    for index, window in enumerate(windows):
        prompt = torch.tensor([SOPREV, *history[-31:]]) if history else None
        want = speech.reference.generate(window[None], language=result.language,
                                         return_timestamps=timestamps, max_new_tokens=12,
                                         prompt_ids=prompt, force_unique_generate_call=True)
        start = (0 if prompt is None else len(prompt)) + (3 if timestamps else 4)
        new = want[0, start:].tolist()
        new = new[:new.index(EOS)] if EOS in new else new
        assert result.tokens[index] == new
        history += new
    # Segments: times within their window, text from the tokenizer, only text tokens.
    assert result.segments
    for segment in result.segments:
        window = int(segment.start // 2)
        assert window * 2 <= segment.start <= segment.end <= window * 2 + 2
        assert all(t < EOS for t in segment.tokens)
        assert segment.text == " ".join(f"w{t}" for t in segment.tokens)
    assert result.text == "".join(s.text for s in result.segments)
    if not timestamps:
        assert [(s.start, s.end) for s in result.segments] == [(0, 2), (2, 4), (4, 6)]
        # The audio's length cuts the last window's segment (and drops any after it).
        short = transcribe(speech.ours, windows, whisper=speech.whisper, duration=4.5,
                           return_timestamps=False, max_new_tokens=12)
        assert [(s.start, s.end) for s in short.segments] == [(0, 2), (2, 4), (4, 4.5)]
        assert not transcribe(speech.ours, windows[:2], whisper=speech.whisper, duration=1.0,
                              max_new_tokens=12).segments[1:]
    # Without the previous text, every window is decoded alone.
    alone = transcribe(speech.ours, iter(windows), whisper=speech.whisper, language="zh",
                       condition_on_previous_text=False, max_new_tokens=12)
    for index, window in enumerate(windows):
        want = decode_window(speech.ours, window, whisper=speech.whisper, language="zh",
                             max_new_tokens=12)[0, 4:].tolist()
        assert alone.tokens[index] == (want[:want.index(EOS)] if EOS in want else want)
    assert alone.language == "zh" and alone.text is None


def test_segments_from_timestamp_tokens():
    w = WhisperGenerationConfig(eos_token_id=EOS, no_timestamps_token_id=NOTS)
    tokens = [TS + 0, 1, 2, TS + 10, TS + 10, 3, TS + 25, TS + 30, 4, 5]
    segments = split_segments(tokens, w, offset=30.0, window=2.0)
    assert [(round(s.start, 2), round(s.end, 2), s.tokens) for s in segments] == [
        (30.0, 30.2, [1, 2]), (30.2, 30.5, [3]), (30.6, 32.0, [4, 5])]
    assert [s.tokens for s in split_segments([1, SOT, 2], w)] == [[1, 2]]  # specials dropped
    assert split_segments([TS, TS + 3], w) == []
    # Decoded without timestamps, stray timestamp tokens are not read as times.
    assert [(s.start, s.end, s.tokens) for s in split_segments(
        [1, TS + 40, 2, TS + 5], w, offset=2.0, window=2.0, timestamps=False)] == [
        (2.0, 4.0, [1, 2])]
