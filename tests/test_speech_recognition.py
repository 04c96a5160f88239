"""The speech-recognition task on made-up speech: tones whose pitch says the word, a tiny Whisper
trained from scratch end to end, its folder fine-tuned again with LoRA through the digits-asr
recipe on a stand-in fsdd.npz; the compact features against WhisperFeatureExtractor, the
collator's padding and prompt, WER / CER against wxb.metrics.speech, and one-line errors."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from wxb.audio import WhisperFeatureExtractor
from wxb.errors import ConfigError
from wxb.metrics.speech import character_error_rate, word_error_rate
from wxb.recipes import load_recipe, run_recipe
from wxb.tasks import run_task
from wxb.tasks.speech_recognition.data import SpeechCollator, compact_features, encode_speech
from wxb.tasks.speech_recognition.model import load_speech_model
from wxb.tasks.speech_recognition.train import (
    SECTIONS,
    build_speech_model,
    digits_to_words,
    error_rates,
    transcribe_split,
)
from wxb.train import Trainer, TrainingArguments

# Each word is a tone; the three speakers differ in loudness, length and pitch.
TONES = {"low": 300.0, "high": 1200.0}
SPEAKERS = ("ann", "bob", "cid")
TINY = {"tokenizer": {"kind": "char"}, "d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
        "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64,
        "decoder_ffn_dim": 64, "max_source_positions": 50, "max_target_positions": 16}


def _tone(word: str, speaker: int, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(rate * (0.3 + 0.05 * speaker))) / rate
    wave = (0.3 + 0.1 * speaker) * np.sin(2 * np.pi * TONES[word] * (1 + 0.03 * speaker) * t)
    return (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """A speech folder: 8 tones per speaker (low, high, ...) with transcripts.jsonl."""
    root = tmp_path_factory.mktemp("tones")
    (root / "wav").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for s, speaker in enumerate(SPEAKERS):
        for i in range(8):
            word = ("low", "high")[i % 2]
            name = f"wav/{speaker}{i}.wav"
            sf.write(root / name, _tone(word, s, rng), 16000)
            rows.append({"id": f"{speaker}{i}", "audio": name, "transcript": word,
                         "speaker": speaker, "language": "en"})
    (root / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def _config(folder, out, **data) -> dict:
    return {"name": "tones", "model": dict(TINY),
            "data": {"source": "folder", "path": str(folder), "test_speakers": 1, **data},
            "generation": {"max_new_tokens": 6, "batch_size": 8},
            "training": {"output_dir": str(out), "max_steps": 40, "learning_rate": 3e-3,
                         "per_device_train_batch_size": 8, "logging_steps": 20, "seed": 0},
            "expected": {"metric": "test_wer", "at_most": 0.5}}


@pytest.fixture(scope="module")
def trained(tones, tmp_path_factory):
    """One tiny Whisper trained from scratch on two speakers' tones, tested on the third."""
    out = tmp_path_factory.mktemp("run")
    return run_task("speech-recognition", _config(tones, out)), out


# ----------------------------------------------------------------------------- end to end


def test_a_whisper_from_scratch_learns_the_tones_and_scores_its_samples(trained):
    result, out = trained
    assert json.loads((out / "result.json").read_text()) == result
    metrics = result["metrics"]
    assert metrics["test_loss"] < metrics["test_loss_before"] / 2  # the loss fell
    samples = result["samples"]["test"]
    assert len(samples) == result["examples"]["test"] == 8  # every test clip, in the result
    assert {s["speaker"] for s in samples} == set(result["speakers"]["test"]) == {"ann"}
    assert not set(result["speakers"]["train"]) & {"ann"}
    references = [s["reference"] for s in samples]
    for when, suffix in (("after", ""), ("before", "_before")):
        said = [s[when] for s in samples]
        assert metrics[f"test_wer{suffix}"] == word_error_rate(said, references,
                                                               normalize=True)
        assert metrics[f"test_cer{suffix}"] == character_error_rate(said, references,
                                                                    normalize=True)
    assert metrics["test_wer_reduction"] == metrics["test_wer_before"] - metrics["test_wer"]
    assert metrics["test_wer"] <= 0.25 < metrics["test_wer_before"]
    assert result["metric"] == "test_wer" and result["value"] == metrics["test_wer"]
    assert result["expected"]["met"] == (metrics["test_wer"] <= 0.5)
    assert result["prompt"] == ["<|startoftranscript|>", "<|en|>", "<|transcribe|>",
                                "<|notimestamps|>"]
    assert result["trainable_parameters"] < result["num_parameters"]  # the fixed sinusoids
    assert result["memory_mib"]["training"] > 0 and result["adapter_dir"] is None


def test_the_saved_folder_transcribes_as_the_run_did(trained, tones):
    result, out = trained
    folder = out / "model"
    for name in ("config.json", "model.safetensors", "generation_config.json",
                 "preprocessor_config.json"):
        assert (folder / name).is_file(), name
    speech = load_speech_model(folder)
    assert speech.extractor.nb_max_frames == speech.model.config.num_frames == 100
    config = SECTIONS["data"].from_dict({"source": "folder", "path": str(tones),
                                         "test_speakers": 1}, "data")
    test = config.splits(config.read(print))["test"]
    encoded = encode_speech(test, speech.extractor, speech.tokenizer,
                            speech.prompt("en", "transcribe"), speech.whisper.eos_token_id, 16)
    collator = SpeechCollator(100, speech.model.config.decoder_start_token_id)
    batch = collator(encoded.examples)
    said = speech.transcribe(batch["input_features"], language="en", task="transcribe",
                             max_new_tokens=6)
    assert said == [s["after"] for s in result["samples"]["test"]]
    # One pass of the encoder gives both the loss (as the Trainer's evaluation measures it)
    # and the same transcriptions.
    loss, again = transcribe_split(speech, encoded, collator, language="en",
                                   task="transcribe", batch_size=3, max_new_tokens=6)
    assert again == said
    trainer = Trainer(speech.model, TrainingArguments(output_dir=str(out / "eval"),
                                                      per_device_eval_batch_size=3),
                      data_collator=collator)
    assert loss == pytest.approx(trainer.evaluate(encoded)["eval_loss"], abs=1e-6)
    whole, _ = transcribe_split(speech, encoded, collator, language="en", task="transcribe",
                                batch_size=8, max_new_tokens=1)  # in one batch, as the run
    assert whole == pytest.approx(result["metrics"]["test_loss"], abs=1e-6)


def test_the_digits_recipe_fine_tunes_a_folder_with_lora_on_other_speakers(trained, tmp_path):
    """digits-asr on a stand-in fsdd.npz (tones for "one" and "two", 4 speakers), with the
    tiny folder above instead of tiny.en: LoRA trains the q/v adapters only."""
    rng = np.random.default_rng(1)
    clips, labels, speakers, names = [], [], [], []
    for s, speaker in enumerate(("dan", "eve", "fay", "gus")):
        for take in range(4):
            digit = 1 + take % 2
            tone = _tone(("low", "high")[digit - 1], s % 3, rng, rate=8000)
            clips.append((tone * 32767).astype(np.int16))
            labels.append(digit)
            speakers.append(speaker)
            names.append(f"{digit}_{speaker}_{take}.wav")
    (tmp_path / "fsdd").mkdir()
    np.savez(tmp_path / "fsdd" / "fsdd.npz", audio=np.concatenate(clips),
             offsets=np.concatenate([[0], np.cumsum([len(c) for c in clips])]),
             label=np.array(labels, np.int8), speaker=np.array(speakers),
             filename=np.array(names), sample_rate=np.array(8000))
    overrides = {"model": {"pretrained": str(trained[1] / "model")},
                 "data": {"max_train_utterances": 8, "max_eval_utterances": 4},
                 "training": {"max_steps": 2, "logging_steps": 1}}
    result = run_recipe("digits-asr", tmp_path, tmp_path / "digits", overrides)
    assert result["recipe"] == "digits-asr" and result["steps"] == 2
    assert result["examples"] == {"train": 8, "test": 4} and len(result["speakers"]["test"]) == 2
    assert result["reported"] == load_recipe("digits-asr")["reported"]
    adapter = tmp_path / "digits" / "adapter"
    assert result["adapter_dir"] == str(adapter)
    from safetensors.torch import load_file

    names = list(load_file(adapter / "adapter_model.safetensors"))
    # encoder self-attention, decoder self- and cross-attention: 3 layers x q, v x A, B
    assert len(names) == 12
    assert all(re.search(r"\.(q_proj|v_proj)\.lora_[AB]\.weight$", n) for n in names)
    assert result["trainable_parameters"] == 3 * 2 * (8 * 32 + 32 * 8)


# ----------------------------------------------------------------------------- the pieces


@pytest.mark.parametrize("seconds", [0.0, 0.2, 1.7, 29.99, 31.0])
def test_compact_features_fill_to_the_extractors_whole_window(seconds):
    extractor = WhisperFeatureExtractor()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    features, floor, cut = compact_features(extractor, audio)
    assert cut == (seconds > 30)
    assert features.shape[1] <= 3000 and (seconds > 29 or features.shape[1] < 300)
    batch = SpeechCollator(3000, 0)([{"input_features": features, "floor": floor,
                                      "labels": [1]}])
    expected = extractor(audio)["input_features"]
    assert torch.allclose(batch["input_features"], expected, atol=1e-6, rtol=0)


def test_the_collator_pads_labels_with_minus_100_and_the_model_starts_them_with_sot(tones):
    model = build_speech_model(SECTIONS["model"].from_dict(TINY, "model"), ["low", "high"],
                               "en", seed=0)
    tokenizer = model.tokenizer
    prompt = model.prompt("en", "transcribe")
    assert [tokenizer.id_to_token(i) for i in prompt] == [
        "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    data = SECTIONS["data"].from_dict({"source": "folder", "path": str(tones)}, "data")
    utterances = data.read(print)[:2]  # "low", "high"
    encoded = encode_speech(utterances, model.extractor, tokenizer, prompt,
                            model.whisper.eos_token_id, 16)
    start = model.model.config.decoder_start_token_id
    batch = SpeechCollator(100, start)(encoded.examples)
    assert batch["input_features"].shape == (2, 80, 100)
    end = tokenizer.token_to_id("<|endoftext|>")
    low = [*prompt[1:], *tokenizer.encode("low", add_special_tokens=False), end]
    high = [*prompt[1:], *tokenizer.encode("high", add_special_tokens=False), end]
    assert batch["labels"].tolist() == [[*low, -100], high]
    from wxb.models.outputs import shift_tokens_right

    decoder_input_ids = shift_tokens_right(batch["labels"], end, start)
    assert decoder_input_ids[:, :4].tolist() == [prompt, prompt]
    assert decoder_input_ids[0, -1] == end  # -100 is read as padding
    # Labels that do not start with <|startoftranscript|> keep their first column.
    kept = SpeechCollator(100, start)([{**e, "labels": e["labels"][1:]} for e in encoded])
    assert kept["labels"].tolist() == batch["labels"].tolist()


@pytest.mark.parametrize("strategy", ["lora", "qlora"])
def test_lora_trains_only_the_q_and_v_adapters(strategy):
    from wxb.peft.strategy import apply_strategy
    from wxb.train.arguments import TrainingArguments

    speech = build_speech_model(SECTIONS["model"].from_dict(TINY, "model"), ["low"], "en",
                                seed=0)
    method = SECTIONS["finetune"].from_dict({"strategy": strategy}, "finetune").method
    assert (method["r"], method["lora_alpha"]) == (8, 16)
    apply_strategy(speech.model, method, TrainingArguments(output_dir="unused"))
    trainable = {n: p for n, p in speech.model.named_parameters() if p.requires_grad}
    assert len(trainable) == 12
    assert all(re.search(r"(self_attn|encoder_attn)\.(q_proj|v_proj)\.lora_[AB]\.weight$", n)
               for n in trainable)
    labels = torch.tensor([speech.prompt("en", "transcribe")[1:]])
    speech.model(input_features=torch.randn(1, 80, 100), labels=labels).loss.backward()
    assert all(p.grad is not None for p in trainable.values())
    assert all(p.grad is None for p in speech.model.parameters() if not p.requires_grad)


def test_error_rates_spell_digits_out_when_asked_and_use_characters_for_chinese():
    said, meant = ["9.", "It's 2"], ["nine", "it's two"]
    assert digits_to_words("25") == " two  five "
    assert error_rates(said, meant, "en")["wer"] == word_error_rate(said, meant, normalize=True)
    assert error_rates(said, meant, "en", digits_as_words=True)["wer"] == 0.0
    zh = error_rates(["我很好。"], ["我很好"], "zh")
    assert zh == {"cer": 0.0}


def test_the_aishell_sample_is_mandarin_split_by_speaker(tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "aishell_sample.npz",
             audio=rng.integers(-3000, 3000, 3200, dtype=np.int16),
             offsets=np.array([0, 800, 1600, 2400, 3200]),
             utt_id=np.array(["S1W1", "S1W2", "S2W1", "S2W2"]),
             speaker=np.array(["S1", "S1", "S2", "S2"]),
             text=np.array(["设定二十九度", "你好", "打开空调", "谢谢"]),
             sample_rate=np.array(16000))
    data = SECTIONS["data"].from_dict({"source": "aishell_sample",
                                       "path": str(tmp_path / "aishell_sample.npz")}, "data")
    utterances = data.read(print)
    assert data.language_of(utterances) == "zh"
    splits = data.splits(utterances)
    assert {u.speaker for u in splits["train"]} ^ {u.speaker for u in splits["test"]} == \
        {"S1", "S2"}


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_data_reads_the_sentence_sources_file_and_synthesizes(tmp_path):
    (tmp_path / "translation").mkdir()
    (tmp_path / "translation" / "eng-cmn.tsv").write_text(
        "Hi.\t你好。\nThanks.\t謝謝。\nGo.\t走。\n", encoding="utf-8")
    values = {"source": "espeak", "sentences": "tatoeba-zh", "count": 3,
              "cache_dir": str(tmp_path / "cache"),
              "path": str(tmp_path / "translation" / "eng-cmn.tsv")}
    data = SECTIONS["data"].from_dict(values, "data")
    utterances = data.read(print)
    assert sorted(u.transcript for u in utterances) == ["你好。", "谢谢。", "走。"]
    assert data.language_of(utterances) == "zh"
    assert all(u.sampling_rate == 16000 for u in utterances)
    wrong = SECTIONS["data"].from_dict({**values, "path": str(tmp_path / "x.tsv")}, "data")
    with pytest.raises(ConfigError, match=r"translation/eng-cmn\.tsv"):
        wrong.read(print)


@pytest.mark.parametrize("change, message", [
    ({"data": {"source": "espeak", "path": "x.tsv"}}, r"data: sentences is required"),
    ({"data": {"source": "wav"}}, r"unknown data.source 'wav'; choose one of: fsdd"),
    ({"model": {"pretrained": "x", "d_model": 8}}, r"drop d_model"),
    ({"model": {**TINY, "d_modle": 8}}, r"unknown whisper config field 'd_modle'"),
    ({"model": {"d_model": 8}}, r"model needs pretrained"),
    ({"model": {"tokenizer": {"kind": "bpe"}}}, r"kind one of char, word"),
    ({"finetune": {"strategy": "head"}}, r"does not apply to Whisper; choose one of: full"),
    ({"data": {"max_label_length": 2}}, r"data.max_label_length must be at least 6"),
])
def test_a_bad_config_gives_one_line_before_any_work(tones, tmp_path, change, message):
    config = _config(tones, tmp_path / "bad")
    for section, values in change.items():
        config[section] = {**config[section], **values} if section == "data" else values
    with pytest.raises(ConfigError) as error:
        run_task("speech-recognition", config)
    assert "\n" not in str(error.value)
    assert re.search(message, str(error.value)), str(error.value)
    assert not (tmp_path / "bad").exists()
