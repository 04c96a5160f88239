"""Audio in and Whisper's log-mel features: files read with soundfile (WAV, FLAC, OGG), mixed
down, resampled with soxr, with one-line errors; the features equal transformers'
WhisperFeatureExtractor and openai-whisper's log_mel_spectrogram on synthetic signals, and
the mel filters equal the mel_filters.npz openai-whisper ships."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import transformers
import whisper.audio

from wxb.audio import (
    N_SAMPLES,
    WhisperFeatureExtractor,
    audio_from_array,
    load_audio,
    log_mel_spectrogram,
    mel_filter_bank,
    pad_or_trim,
    read_audio,
    resample,
)
from wxb.errors import CheckpointError, ConfigError, DataError

RATE = 16000
TOLERANCE = 1e-4
transformers.logging.set_verbosity_error()


def _tone(seconds: float, hz: float = 440.0, rate: int = RATE, amplitude: float = 0.5):
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _chirp(seconds: float, start: float = 100.0, stop: float = 7000.0) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    phase = 2 * np.pi * (start * t + (stop - start) * t ** 2 / (2 * seconds))
    return (0.3 * np.sin(phase)).astype(np.float32)


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "sine": _tone(5.0),
        "chirp": _chirp(12.0),
        "silence": np.zeros(3 * RATE, np.float32),
        "empty": np.zeros(0, np.float32),
        "clipped": np.clip(_tone(4.0, 220.0, amplitude=3.0), -1.0, 1.0),
        "white_noise_30s": (0.1 * rng.standard_normal(N_SAMPLES)).astype(np.float32),
        "speechlike_45s": (_chirp(45.0, 80, 4000) * (1 + np.sin(np.arange(45 * RATE) / 800))
                           + 0.01 * rng.standard_normal(45 * RATE)).astype(np.float32),
        "short_0.1s": _tone(0.1, 1000.0),
    }


SIGNALS = _signals()


def _whisper_reference(audio: np.ndarray, n_mels: int) -> torch.Tensor:
    return whisper.audio.log_mel_spectrogram(whisper.audio.pad_or_trim(audio), n_mels=n_mels)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_equal_the_ones_openai_whisper_ships_and_transformers(n_mels):
    shipped = Path(whisper.audio.__file__).parent / "assets" / "mel_filters.npz"
    with np.load(shipped) as filters:
        reference = filters[f"mel_{n_mels}"]
    ours = mel_filter_bank(n_mels)
    assert ours.shape == reference.shape == (n_mels, 201) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() <= 1e-6
    hf = transformers.WhisperFeatureExtractor(feature_size=n_mels).mel_filters.T
    assert np.abs(ours - hf).max() <= 1e-6
    # Slaney normalisation: each triangle has area 1 (peak 2 / width in Hz), so the weights of
    # a wide filter, times the 40-Hz bin spacing, sum to about 1; unnormalised ones peak at 1.
    assert np.allclose(ours[-20:].sum(axis=1) * 40.0, 1.0, atol=0.05)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("name", list(SIGNALS))
def test_features_equal_transformers_and_openai_whisper(name, n_mels):
    audio = SIGNALS[name]
    ours = WhisperFeatureExtractor(feature_size=n_mels)(audio, sampling_rate=RATE)
    features = ours["input_features"]
    assert isinstance(features, torch.Tensor) and features.shape == (1, n_mels, 3000)
    assert features.dtype == torch.float32
    hf = transformers.WhisperFeatureExtractor(feature_size=n_mels)(
        audio, sampling_rate=RATE, return_tensors="pt")["input_features"]
    assert (features - hf).abs().max().item() <= TOLERANCE
    reference = _whisper_reference(audio, n_mels)
    assert (features[0] - reference).abs().max().item() <= TOLERANCE
    # The 80-dB floor: nothing lies more than 8 / 4 = 2 below the example's maximum.
    assert features.max() - features.min() <= 2.0 + 1e-6


def test_silence_and_empty_audio_give_the_floor_not_a_crash():
    for audio in (SIGNALS["silence"], SIGNALS["empty"]):
        features = WhisperFeatureExtractor()(audio)["input_features"]
        # log10(1e-10) = -10 everywhere -> (-10 + 4) / 4
        assert torch.equal(features, torch.full((1, 80, 3000), -1.5))


def test_audio_longer_than_30_seconds_is_cut_to_its_first_window():
    long = SIGNALS["speechlike_45s"]
    extractor = WhisperFeatureExtractor()
    assert torch.equal(extractor(long)["input_features"],
                       extractor(long[:N_SAMPLES])["input_features"])


def test_a_batch_of_clips_of_different_lengths_with_the_attention_mask():
    clips = [SIGNALS["sine"], SIGNALS["chirp"], SIGNALS["short_0.1s"], SIGNALS["speechlike_45s"]]
    ours = WhisperFeatureExtractor()(clips, RATE, return_attention_mask=True)
    hf = transformers.WhisperFeatureExtractor()(clips, sampling_rate=RATE, return_tensors="pt",
                                                return_attention_mask=True)
    assert ours["input_features"].shape == (4, 80, 3000)
    assert (ours["input_features"] - hf["input_features"]).abs().max().item() <= TOLERANCE
    assert torch.equal(ours["attention_mask"], hf["attention_mask"].to(torch.int32))
    assert ours["attention_mask"][0].sum() == 500 and ours["attention_mask"][3].sum() == 3000
    # Each row is floored at its own maximum: the batch equals the clips one by one.
    one = WhisperFeatureExtractor()(clips[2])["input_features"][0]
    assert torch.equal(ours["input_features"][2], one)
    # A (batch, samples) array is a batch too, and "np" gives arrays.
    as_array = WhisperFeatureExtractor()(np.stack([clips[0], clips[0]]), return_tensors="np")
    assert isinstance(as_array.input_features, np.ndarray)
    assert as_array.input_features.shape == (2, 80, 3000)


def test_long_form_features_equal_openai_whisper_and_transformers_unpadded():
    audio = SIGNALS["speechlike_45s"][:-37]  # not a whole number of hops
    # openai-whisper's transcribe: the whole file, N_SAMPLES zeros after it.
    ours = log_mel_spectrogram(audio, 80, padding=N_SAMPLES)
    reference = whisper.audio.log_mel_spectrogram(audio, 80, padding=N_SAMPLES)
    assert ours.shape == reference.shape == (80, (len(audio) + N_SAMPLES) // 160)
    assert (ours - reference).abs().max().item() <= TOLERANCE
    # transformers' long-form call: no truncation, padded to the longest clip, with a mask.
    kwargs = {"truncation": False, "padding": "longest", "return_attention_mask": True}
    ours = WhisperFeatureExtractor()(audio, RATE, **kwargs)
    hf = transformers.WhisperFeatureExtractor()(audio, sampling_rate=RATE,
                                                return_tensors="pt", **kwargs)
    assert ours["input_features"].shape == hf["input_features"].shape == (1, 80, 4499)
    assert (ours["input_features"] - hf["input_features"]).abs().max().item() <= TOLERANCE
    assert torch.equal(ours["attention_mask"], hf["attention_mask"].to(torch.int32))


def test_pad_or_trim_matches_openai_whisper():
    audio = torch.from_numpy(SIGNALS["sine"])
    assert torch.equal(pad_or_trim(audio), whisper.audio.pad_or_trim(audio))
    assert torch.equal(pad_or_trim(audio, 1000), audio[:1000])


def test_preprocessor_config_round_trips_with_transformers(tmp_path):
    ours = WhisperFeatureExtractor(feature_size=128)
    path = ours.save_pretrained(tmp_path / "ours")
    assert path.name == "preprocessor_config.json"
    theirs = transformers.WhisperFeatureExtractor.from_pretrained(tmp_path / "ours")
    # Byte for byte what transformers itself writes.
    theirs.save_pretrained(tmp_path / "theirs")
    assert path.read_text() == (tmp_path / "theirs" / "preprocessor_config.json").read_text()
    back = WhisperFeatureExtractor.from_pretrained(tmp_path / "theirs")
    assert back.to_dict() == ours.to_dict() and back.feature_size == 128
    audio = SIGNALS["chirp"]
    assert (back(audio)["input_features"]
            - theirs(audio, sampling_rate=RATE, return_tensors="pt")["input_features"]
            ).abs().max() <= TOLERANCE


def test_an_older_preprocessor_config_with_mel_filters_and_a_processor_class(tmp_path):
    values = transformers.WhisperFeatureExtractor().to_dict()
    values["mel_filters"] = np.zeros((201, 80)).tolist()  # older files stored them; recomputed
    values["processor_class"] = "WhisperProcessor"
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(values))
    extractor = WhisperFeatureExtractor.from_pretrained(tmp_path)
    assert np.array_equal(extractor.mel_filters, mel_filter_bank(80))


def test_preprocessor_config_errors_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"preprocessor_config\.json does not exist"):
        WhisperFeatureExtractor.from_pretrained(tmp_path)
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({"feature_extractor_type": "Wav2Vec2FeatureExtractor"}))
    with pytest.raises(CheckpointError, match="is for a Wav2Vec2FeatureExtractor"):
        WhisperFeatureExtractor.from_pretrained(tmp_path)
    path.write_text(json.dumps({"feature_size": "eighty"}))
    with pytest.raises(CheckpointError, match=r"preprocessor_config.json: .*feature_size must"):
        WhisperFeatureExtractor.from_pretrained(path)
    with pytest.raises(ConfigError, match="dither must be a number of 0 or more, got -1"):
        WhisperFeatureExtractor(dither=-1)


def test_feature_extractor_refuses_another_sampling_rate_and_bad_shapes():
    with pytest.raises(DataError, match=r"at 8000 Hz .* takes 16000 Hz; resample it first"):
        WhisperFeatureExtractor()(SIGNALS["sine"], sampling_rate=8000)
    with pytest.raises(DataError, match="each clip must be \\(samples,\\) mono"):
        WhisperFeatureExtractor()([np.zeros((100, 2), np.float32)])
    with pytest.raises(DataError, match="more than 200 samples"):
        log_mel_spectrogram(np.zeros(100, np.float32))


def test_dither_adds_seeded_noise_and_lifts_digital_silence():
    extractor = WhisperFeatureExtractor(dither=1e-4)
    silence = SIGNALS["silence"]
    a = extractor(silence, generator=torch.Generator().manual_seed(0))["input_features"]
    b = extractor(silence, generator=torch.Generator().manual_seed(0))["input_features"]
    c = extractor(silence, generator=torch.Generator().manual_seed(1))["input_features"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.mean() > -1.2  # digital silence alone is -1.5 everywhere


# Audio in -----------------------------------------------------------------------------------

def _pcm16(seconds: float, hz: float, rate: int) -> np.ndarray:
    return np.round(_tone(seconds, hz, rate) * 32767).astype(np.int16)


def test_wav_int16_reads_as_libsndfile_scales_it_and_equals_the_array_path(tmp_path):
    pcm = _pcm16(1.0, 440.0, RATE)
    soundfile.write(tmp_path / "a.wav", pcm, RATE, subtype="PCM_16")
    samples = read_audio(tmp_path / "a.wav")
    assert samples.dtype == np.float32 and samples.shape == (RATE,)
    assert np.array_equal(samples, pcm / np.float32(32768))
    assert np.array_equal(samples, audio_from_array(pcm, RATE).array)
    audio = load_audio(tmp_path / "a.wav")
    assert not audio.resampled and audio.describe() == "" and audio.duration == 1.0


def test_stereo_flac_is_mixed_down_to_the_mean_of_its_channels(tmp_path):
    left, right = _tone(0.5, 300.0), _tone(0.5, 500.0, amplitude=0.25)
    soundfile.write(tmp_path / "s.flac", np.stack([left, right], axis=1), RATE,
                    subtype="PCM_24")
    audio = load_audio(tmp_path / "s.flac")
    assert audio.channels == 2 and audio.describe() == "2 channels mixed down to mono"
    assert np.abs(audio.array - (left + right) / 2).max() < 1e-6  # 24-bit quantisation


def test_ogg_vorbis_is_read(tmp_path):
    tone = _tone(1.0, 440.0)
    soundfile.write(tmp_path / "t.ogg", tone, RATE, format="OGG", subtype="VORBIS")
    samples = read_audio(tmp_path / "t.ogg")
    assert abs(len(samples) - RATE) <= 1  # lossy, but the same tone
    assert np.corrcoef(samples[:RATE - 1], tone[:RATE - 1])[0, 1] > 0.99


def test_8khz_is_resampled_to_16khz_and_says_so(tmp_path):
    soundfile.write(tmp_path / "phone.wav", _pcm16(1.0, 440.0, 8000), 8000)
    audio = load_audio(tmp_path / "phone.wav")
    assert audio.resampled and audio.source_sampling_rate == 8000
    assert audio.sampling_rate == RATE and audio.describe() == "resampled from 8000 Hz"
    assert audio.array.shape == (RATE,) and audio.array.dtype == np.float32
    # Band-limited resampling gives the same tone sampled at 16 kHz (away from the edges).
    expected = _tone(1.0, 440.0) * (32767 / 32768)
    assert np.abs(audio.array[800:-800] - expected[800:-800]).max() < 2e-3
    # The file's own rate when asked for none; an array goes through the same resampler.
    assert load_audio(tmp_path / "phone.wav", None).sampling_rate == 8000
    assert np.array_equal(resample(read_audio(tmp_path / "phone.wav", 8000), 8000, RATE),
                          audio.array)


def test_silent_and_header_only_files_give_zeros_and_empty_arrays(tmp_path):
    soundfile.write(tmp_path / "silent.wav", np.zeros(8000, np.int16), 8000)
    assert not read_audio(tmp_path / "silent.wav").any()
    soundfile.write(tmp_path / "nothing.wav", np.zeros(0, np.int16), 8000)
    empty = load_audio(tmp_path / "nothing.wav")
    assert empty.array.shape == (0,) and empty.duration == 0.0


def _wav_header(format_tag: int, bits: int, data: bytes = b"\0" * 64) -> bytes:
    """A RIFF/WAVE file by hand, for sample formats soundfile will not write."""
    import struct

    fmt = struct.pack("<HHIIHH", format_tag, 1, RATE, RATE * bits // 8, bits // 8, bits)
    body = (b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", len(data)) + data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("name, content, message", [
    ("missing.wav", None, "does not exist; give an audio file"),
    ("zero.wav", b"", r"is empty \(0 bytes\)"),
    ("notes.wav", b"this is a text file, not audio\n" * 20,
     r"is not an audio file libsndfile can read \(Format not recognised\)"),
    ("pcm64.wav", _wav_header(1, 64),
     r"its audio cannot be decoded \(File contains data in an unimplemented format\)"),
])
def test_unreadable_files_give_one_line_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as caught:
        read_audio(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)
    with pytest.raises(DataError, match="is not a file"):
        read_audio(tmp_path)


def test_arrays_in_memory_are_scaled_and_checked():
    assert np.array_equal(audio_from_array(np.array([0, 64, 255], np.uint8), 8000, None).array,
                          np.array([-1.0, -0.5, 127 / 128], np.float32))
    assert audio_from_array(np.array([-2 ** 31], np.int32), 8000, None).array[0] == -1.0
    with pytest.raises(DataError, match="unsupported sample format complex64"):
        audio_from_array(np.zeros(10, np.complex64), RATE)
    with pytest.raises(DataError, match=r"\(samples,\) or \(samples, channels\)"):
        audio_from_array(np.zeros((2, 2, 2), np.float32), RATE)
    with pytest.raises(DataError, match="sampling rate must be a positive whole number"):
        resample(np.zeros(10, np.float32), 0, RATE)
