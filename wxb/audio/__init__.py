"""Audio in (files and arrays -> 16 kHz mono float32) and Whisper's log-mel features."""

from wxb.audio.features import (
    HOP_LENGTH,
    N_FFT,
    N_FRAMES,
    N_SAMPLES,
    WhisperFeatureExtractor,
    log_mel_spectrogram,
    mel_filter_bank,
    pad_or_trim,
)
from wxb.audio.io import SAMPLING_RATE, Audio, audio_from_array, load_audio, read_audio, resample

__all__ = ["HOP_LENGTH", "N_FFT", "N_FRAMES", "N_SAMPLES", "SAMPLING_RATE", "Audio",
           "WhisperFeatureExtractor", "audio_from_array", "load_audio", "log_mel_spectrogram",
           "mel_filter_bank", "pad_or_trim", "read_audio", "resample"]
