"""Whisper's input: the log-mel spectrogram of 30 seconds of 16 kHz audio, (n_mels, 3000).

Step by step, as openai-whisper's ``log_mel_spectrogram`` and Hugging Face's
``WhisperFeatureExtractor`` compute it (the numbers are Whisper's, fixed at training time):

1. pad with zeros or cut to 30 s = 480,000 samples (``pad_or_trim``);
2. short-time Fourier transform: 400-sample frames (25 ms) every 160 samples (10 ms), a
   periodic Hann window, the signal reflect-padded by 200 samples at each end (``torch.stft``'s
   ``center=True``) -> 3,001 frames of 201 frequency bins; the last frame is dropped, so 30 s
   are exactly 3,000 frames;
3. power ``|STFT|^2``, then an 80- (or 128-, large-v3) band mel filter bank (Slaney's mel scale
   and area normalisation, librosa's defaults, computed below) -> (n_mels, 3000);
4. ``log10`` of the power, clamped at 1e-10 so silence gives -10, not -inf;
5. dynamic range cut to 80 dB: everything below (maximum - 8) is raised to it — the maximum is
   over the whole 30-s window of one example, so a quiet clip is scaled up to the same top;
6. ``(x + 4) / 4``: roughly into [-1, 1], the scale Whisper's encoder was trained on.

The encoder's two convolutions (the second with stride 2) turn the 3,000 frames into 1,500
positions, 20 ms each.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from wxb.audio.io import SAMPLING_RATE
from wxb.errors import CheckpointError, ConfigError, DataError
from wxb.io import atomic_write_json, read_json_object
from wxb.tokenizers.base import BatchEncoding

N_FFT = 400  # 25 ms frames
HOP_LENGTH = 160  # 10 ms between frames: 100 frames per second
CHUNK_LENGTH = 30  # seconds in one input window
N_SAMPLES = CHUNK_LENGTH * SAMPLING_RATE  # 480,000
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3,000
CONFIG_FILE = "preprocessor_config.json"  # the name transformers reads and writes


# Slaney's mel scale (the Auditory Toolbox's, librosa's default with htk=False): linear below
# 1 kHz, 3 mels per 200 Hz, then logarithmic, 27 mels per factor 6.4 in frequency.
_LINEAR_HZ_PER_MEL = 200.0 / 3
_BREAK_HZ = 1000.0
_BREAK_MEL = _BREAK_HZ / _LINEAR_HZ_PER_MEL  # 15
_LOG_STEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Frequency in Hz -> Slaney mels."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_MEL + np.log(np.maximum(hz, _BREAK_HZ) / _BREAK_HZ) / _LOG_STEP
    return np.where(hz >= _BREAK_HZ, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Slaney mels -> frequency in Hz (the inverse of ``hz_to_mel``)."""
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _LINEAR_HZ_PER_MEL
    logarithmic = _BREAK_HZ * np.exp(_LOG_STEP * (np.maximum(mel, _BREAK_MEL) - _BREAK_MEL))
    return np.where(mel >= _BREAK_MEL, logarithmic, linear)


@cache
def mel_filter_bank(n_mels: int = 80, *, n_fft: int = N_FFT,
                    sampling_rate: int = SAMPLING_RATE, f_min: float = 0.0,
                    f_max: float | None = None) -> np.ndarray:
    """Triangular mel filters, (n_mels, 1 + n_fft // 2) float32: row ``m`` weighs each STFT
    bin's power into band ``m``.

    ``n_mels + 2`` points are spaced evenly in mels from ``f_min`` to ``f_max`` (default: half
    the sampling rate); filter ``m`` rises from point ``m`` to 1 at point ``m + 1`` and falls to
    0 at point ``m + 2``. Slaney normalisation divides each by its width in Hz (times 1/2), so
    every filter has the same area and a wide high band does not outweigh a narrow low one.
    This is what librosa's ``filters.mel`` computes by default, and so what Whisper's
    ``mel_filters.npz`` holds.
    """
    f_max = sampling_rate / 2 if f_max is None else f_max
    bins = np.linspace(0.0, sampling_rate / 2, 1 + n_fft // 2)  # each STFT bin's frequency
    points = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(points)
    left, right = points[:-2, None], points[2:, None]
    rising = (bins - left) / widths[:-1, None]  # 0 at the left point, 1 at the centre
    falling = (right - bins) / widths[1:, None]  # 1 at the centre, 0 at the right point
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (right - left))
    weights = weights.astype(np.float32)
    weights.setflags(write=False)  # cached: one copy shared by every caller
    return weights


def pad_or_trim(audio: torch.Tensor | np.ndarray, length: int = N_SAMPLES) -> torch.Tensor:
    """The last axis cut to ``length`` samples or padded with zeros (silence) up to it."""
    audio = torch.as_tensor(audio)
    if audio.shape[-1] > length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))


def log_mel_spectrogram(audio: torch.Tensor | np.ndarray, n_mels: int = 80, *,
                        padding: int = 0, n_fft: int = N_FFT, hop_length: int = HOP_LENGTH,
                        sampling_rate: int = SAMPLING_RATE) -> torch.Tensor:
    """Whisper's log-mel features of 16 kHz audio (see the module docstring for each step).

    Args:
        audio: (samples,) or (batch, samples) float. Nothing is padded or cut (but ``padding``
            zeros on the right): pass ``pad_or_trim(audio)`` for one 30-s window, or a whole
            file with ``padding=N_SAMPLES`` to cut 3,000-frame windows from it afterwards, as
            openai-whisper's ``transcribe`` does.
        n_mels: 80, or 128 for large-v3.

    Returns:
        (n_mels, samples // hop_length) or (batch, n_mels, samples // hop_length) float32; the
        80-dB floor is taken from each example's own maximum.
    """
    audio = torch.as_tensor(audio, dtype=torch.float32)
    if padding > 0:
        audio = torch.nn.functional.pad(audio, (0, padding))
    if audio.shape[-1] <= n_fft // 2:
        # torch.stft's reflect padding needs more samples than it pads.
        raise DataError(f"log_mel_spectrogram needs more than {n_fft // 2} samples, got "
                        f"{audio.shape[-1]}; pad the audio first (pad_or_trim)")
    window = torch.hann_window(n_fft, device=audio.device)  # periodic, as Whisper's
    stft = torch.stft(audio, n_fft, hop_length, window=window, center=True,
                      pad_mode="reflect", return_complex=True)
    power = (stft[..., :-1].abs() ** 2).contiguous()  # the last frame is dropped
    filters = torch.tensor(mel_filter_bank(n_mels, n_fft=n_fft, sampling_rate=sampling_rate),
                           device=audio.device)
    log_spec = torch.clamp(filters @ power, min=1e-10).log10()
    top = log_spec.amax(dim=(-2, -1), keepdim=True)
    log_spec = torch.maximum(log_spec, top - 8.0)
    return (log_spec + 4.0) / 4.0


class WhisperFeatureExtractor:
    """Raw 16 kHz speech -> ``input_features`` (batch, feature_size, 3000), with the fields,
    call and ``preprocessor_config.json`` of ``transformers.WhisperFeatureExtractor``.

    Args:
        feature_size: mel bands (80; 128 for large-v3).
        sampling_rate / hop_length / n_fft: 16000 / 160 / 400, Whisper's.
        chunk_length: seconds in one window (30): every input is padded or cut to
            ``n_samples = chunk_length * sampling_rate`` samples, ``nb_max_frames`` frames.
        padding_value: the sample value padding adds (0.0: silence).
        dither: standard deviation of Gaussian noise added to the samples before the STFT
            (0.0: none, Whisper's); it keeps digital silence from giving a -10 floor.
        return_attention_mask: whether ``__call__`` also returns which frames hold audio.
    """

    model_input_names = ("input_features",)

    def __init__(self, feature_size: int = 80, sampling_rate: int = SAMPLING_RATE,
                 hop_length: int = HOP_LENGTH, chunk_length: int = CHUNK_LENGTH,
                 n_fft: int = N_FFT, padding_value: float = 0.0, dither: float = 0.0,
                 return_attention_mask: bool = False) -> None:
        for name, value in (("feature_size", feature_size), ("sampling_rate", sampling_rate),
                            ("hop_length", hop_length), ("chunk_length", chunk_length),
                            ("n_fft", n_fft)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"WhisperFeatureExtractor: {name} must be a positive "
                                  f"integer, got {value!r}")
        for name, value, low in (("padding_value", padding_value, -np.inf),
                                 ("dither", dither, 0.0)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < low:
                raise ConfigError(f"WhisperFeatureExtractor: {name} must be a number"
                                  f"{' of 0 or more' if low == 0 else ''}, got {value!r}")
        self.feature_size = feature_size
        self.sampling_rate = sampling_rate
        self.hop_length = hop_length
        self.chunk_length = chunk_length
        self.n_fft = n_fft
        self.padding_value = float(padding_value)
        self.dither = float(dither)
        self.return_attention_mask = bool(return_attention_mask)

    @property
    def n_samples(self) -> int:
        return self.chunk_length * self.sampling_rate

    @property
    def nb_max_frames(self) -> int:
        return self.n_samples // self.hop_length

    @property
    def mel_filters(self) -> np.ndarray:
        """(feature_size, 1 + n_fft // 2); transformers stores the transpose."""
        return mel_filter_bank(self.feature_size, n_fft=self.n_fft,
                               sampling_rate=self.sampling_rate)

    def __call__(self, raw_speech: np.ndarray | torch.Tensor | Sequence[Any],
                 sampling_rate: int | None = None, *, return_tensors: Literal["pt", "np"] = "pt",
                 padding: Literal["max_length", "longest"] = "max_length",
                 max_length: int | None = None, truncation: bool = True,
                 return_attention_mask: bool | None = None, device: str = "cpu",
                 generator: torch.Generator | None = None) -> BatchEncoding:
        """Features of one clip ((samples,) array or list of floats) or a batch (a list of
        clips, or a (batch, samples) array), as ``transformers`` computes them.

        Every clip is padded to ``max_length`` samples (default ``n_samples``: 30 s) and, with
        ``truncation``, cut to it; ``padding="longest"`` pads to the batch's longest clip instead
        (for long-form audio, with ``truncation=False``: all of it). ``sampling_rate`` is the
        clips' rate, checked against the extractor's (None: assumed to match). Returns
        ``input_features`` (batch, feature_size, frames) and, when asked, ``attention_mask``
        (batch, frames): 1 where a frame starts inside the clip, 0 in the padding.
        """
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            raise DataError(f"the audio is at {sampling_rate} Hz but this feature extractor "
                            f"takes {self.sampling_rate} Hz; resample it first "
                            f"(wxb.audio.resample(samples, {sampling_rate}, "
                            f"{self.sampling_rate}))")
        if return_tensors not in ("pt", "np"):
            raise DataError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
        if padding not in ("max_length", "longest"):
            raise DataError(f"padding must be 'max_length' or 'longest', got {padding!r}")
        clips = _clips(raw_speech)
        longest = max(len(clip) for clip in clips)
        length = (max_length or self.n_samples) if padding == "max_length" else longest
        if not truncation:
            length = max(length, longest)
        batch = torch.full((len(clips), length), self.padding_value, dtype=torch.float32)
        mask = torch.zeros((len(clips), length), dtype=torch.int32)
        for row, clip in enumerate(clips):
            kept = min(len(clip), length)
            batch[row, :kept] = torch.from_numpy(clip[:kept])
            mask[row, :kept] = 1
        batch = batch.to(device)
        if self.dither:
            batch = batch + self.dither * torch.randn(batch.shape, generator=generator,
                                                      device="cpu").to(device)
        features = log_mel_spectrogram(batch, self.feature_size, n_fft=self.n_fft,
                                       hop_length=self.hop_length,
                                       sampling_rate=self.sampling_rate).cpu()
        out = BatchEncoding(input_features=features)
        if self.return_attention_mask if return_attention_mask is None else return_attention_mask:
            # A frame per hop; the STFT's last frame was dropped, so where the length is not a
            # whole number of hops the last mask entry goes too.
            out["attention_mask"] = mask[:, ::self.hop_length][:, :features.shape[-1]]
        if return_tensors == "np":
            out = BatchEncoding({key: value.numpy() for key, value in out.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fields ``transformers`` writes to ``preprocessor_config.json``, sorted as it
        sorts them (the mel filters are left out: they are computed from the fields)."""
        values = {
            "chunk_length": self.chunk_length, "dither": self.dither,
            "feature_extractor_type": type(self).__name__, "feature_size": self.feature_size,
            "hop_length": self.hop_length, "n_fft": self.n_fft, "n_samples": self.n_samples,
            "nb_max_frames": self.nb_max_frames, "padding_side": "right",
            "padding_value": self.padding_value,
            "return_attention_mask": self.return_attention_mask,
            "sampling_rate": self.sampling_rate,
        }
        return dict(sorted(values.items()))

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``preprocessor_config.json`` into ``folder`` (atomically); returns its path."""
        path = Path(folder) / CONFIG_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> WhisperFeatureExtractor:
        """Read ``preprocessor_config.json`` from a model folder (or that file itself), as
        ``transformers`` writes it. ``n_samples`` and ``nb_max_frames`` follow from the other
        fields; the ``mel_filters`` list that older files hold is recomputed, as transformers
        recomputes it."""
        path = Path(folder)
        if path.is_dir():
            path = path / CONFIG_FILE
        if not path.is_file():
            raise CheckpointError(f"{path} does not exist; a Whisper model folder holds a "
                                  f"{CONFIG_FILE} (save one with save_pretrained)")
        values = read_json_object(path, CheckpointError)
        kind = values.get("feature_extractor_type", cls.__name__)
        if kind != cls.__name__:
            raise CheckpointError(f"{path} is for a {kind}, not a {cls.__name__}")
        side = values.get("padding_side", "right")
        if side != "right":
            raise CheckpointError(f"{path}: padding_side {side!r} is not supported; Whisper "
                                  "pads audio on the right")
        fields = ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft",
                  "padding_value", "dither", "return_attention_mask")
        try:
            return cls(**{key: values[key] for key in fields if key in values})
        except ConfigError as err:
            raise CheckpointError(f"{path}: {err}") from None


def _clips(raw_speech: np.ndarray | torch.Tensor | Sequence[Any]) -> list[np.ndarray]:
    """One clip or a batch of them as a list of (samples,) float32 arrays."""
    if isinstance(raw_speech, torch.Tensor):
        raw_speech = raw_speech.detach().cpu().numpy()
    if isinstance(raw_speech, np.ndarray):
        if raw_speech.ndim not in (1, 2):
            raise DataError(f"raw_speech must be (samples,) or (batch, samples) mono audio, got "
                            f"shape {raw_speech.shape}")
        batch = [raw_speech] if raw_speech.ndim == 1 else list(raw_speech)
    elif isinstance(raw_speech, (list, tuple)):
        if not raw_speech:
            raise DataError("raw_speech is empty; give a clip (samples,) or a list of clips")
        nested = isinstance(raw_speech[0], (np.ndarray, torch.Tensor, list, tuple))
        batch = list(raw_speech) if nested else [raw_speech]
    else:
        raise DataError(f"raw_speech must be an array, a tensor or a list, got "
                        f"{type(raw_speech).__name__}")
    clips = []
    for i, clip in enumerate(batch):
        if isinstance(clip, torch.Tensor):
            clip = clip.detach().cpu().numpy()
        clip = np.asarray(clip, dtype=np.float32)
        if clip.ndim != 1:
            raise DataError(f"clip {i} of raw_speech has shape {clip.shape}; each clip must be "
                            "(samples,) mono audio (mix channels down with wxb.audio)")
        clips.append(clip)
    return clips
