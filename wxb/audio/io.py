"""Audio in: a file or an array in memory -> float32 mono samples at the rate a model wants.

Files are decoded with ``soundfile`` (libsndfile): WAV (PCM 8/16/24/32-bit, float, A-law,
mu-law, ADPCM), FLAC, OGG (Vorbis, Opus) and, with libsndfile 1.1 or newer, MP3 — in-process,
with no ``ffmpeg`` to install (openai-whisper shells out to ffmpeg for every file). Integer
samples become floats in [-1, 1) as libsndfile scales them (int16 / 32768), so a clip read from
a WAV file equals the same int16 samples from an array passed to ``audio_from_array``.

Several channels are mixed down to one by their mean (what ``ffmpeg -ac 1`` does for stereo).

Resampling uses ``soxr`` (libsoxr, the SoX resampler) at its "HQ" quality, because:

- it is the resampler of the field's own tools: librosa's default (``res_type="soxr_hq"``), so
  audio resampled here equals what ``librosa.load`` gives and what Hugging Face's examples
  feed Whisper;
- it is a proper band-limited polyphase resampler (about 20-bit precision, a steep low-pass
  that removes what the new rate cannot hold), not linear interpolation, which aliases;
- it is fast (C, no Python loop; an hour of 8 kHz audio in well under a second) and small (a
  NumPy-only wheel), where ``torchaudio`` would add a second build of torch's audio stack
  that must match the installed torch version exactly.

A file that holds no samples (a header only) or only silence is not an error: it gives an
empty or all-zero array, and the model's transcript of it is empty.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from wxb.errors import DataError

SAMPLING_RATE = 16000  # what Whisper (and most speech models) was trained on
# Integer PCM -> float, as libsndfile scales it: divide by 2^(bits-1); unsigned 8-bit is
# centred on 128 first.
_INTEGER_SCALE = {np.dtype(np.int8): 2.0 ** 7, np.dtype(np.int16): 2.0 ** 15,
                  np.dtype(np.int32): 2.0 ** 31, np.dtype(np.uint8): 2.0 ** 7}
_FORMATS = "WAV, FLAC, OGG (Vorbis/Opus) or MP3"
_CONVERT = "convert it, e.g. ffmpeg -i IN -ac 1 -ar 16000 -c:a pcm_s16le OUT.wav"


@dataclasses.dataclass(frozen=True)
class Audio:
    """Decoded audio: ``array`` (samples,) float32 mono at ``sampling_rate``, and where it came
    from: ``source_sampling_rate`` and ``channels`` as stored, ``path`` (None for an array)."""

    array: np.ndarray
    sampling_rate: int
    source_sampling_rate: int
    channels: int = 1
    path: Path | None = None

    @property
    def resampled(self) -> bool:
        return self.sampling_rate != self.source_sampling_rate

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.array) / self.sampling_rate

    def describe(self) -> str:
        """What was done to the audio, for a user: "resampled from 8000 Hz, 2 channels mixed
        down to mono", or "" when it was already mono at the wanted rate."""
        notes = []
        if self.resampled:
            notes.append(f"resampled from {self.source_sampling_rate} Hz")
        if self.channels > 1:
            notes.append(f"{self.channels} channels mixed down to mono")
        return ", ".join(notes)


def load_audio(path: str | os.PathLike, sampling_rate: int | None = SAMPLING_RATE) -> Audio:
    """Decode an audio file to mono float32 at ``sampling_rate`` (None: the file's own rate).

    Raises DataError, naming the file, when it is missing, empty (0 bytes), not audio, or in a
    sample format libsndfile cannot decode.
    """
    import soundfile

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; give an audio file ({_FORMATS})")
    if not path.is_file():
        raise DataError(f"{path} is not a file; give an audio file ({_FORMATS})")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty (0 bytes); give an audio file ({_FORMATS})")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.LibsndfileError as err:
        reason = err.error_string.strip().rstrip(".")
        if reason == "Format not recognised":
            raise DataError(f"{path} is not an audio file libsndfile can read ({reason}); "
                            f"give {_FORMATS}, or {_CONVERT}") from None
        raise DataError(f"{path}: its audio cannot be decoded ({reason}): the sample format "
                        f"is unsupported or the file is damaged; {_CONVERT}") from None
    return audio_from_array(samples, rate, sampling_rate, path=path)


def read_audio(path: str | os.PathLike, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    """The samples of an audio file, (samples,) float32 mono at ``sampling_rate``; use
    ``load_audio`` to also learn whether it was resampled or mixed down."""
    return load_audio(path, sampling_rate).array


def audio_from_array(samples: np.ndarray, sampling_rate: int,
                     target_sampling_rate: int | None = SAMPLING_RATE, *,
                     path: Path | None = None) -> Audio:
    """Samples in memory (a dataset's int16 PCM, a float array) as ``Audio``: scaled to float32,
    mixed down to mono, resampled to ``target_sampling_rate`` (None: kept as they are).

    ``samples`` is (samples,) or (samples, channels); integers are PCM (int8/16/32, uint8) and
    floats are taken as they are (nominally in [-1, 1]).
    """
    samples = np.asarray(samples)
    where = f"{path}: " if path is not None else ""
    if samples.ndim not in (1, 2):
        raise DataError(f"{where}audio must be (samples,) or (samples, channels), got shape "
                        f"{samples.shape}")
    if samples.ndim == 1:
        samples = samples[:, None]
    channels = samples.shape[1]
    if channels == 0:
        raise DataError(f"{where}audio has 0 channels (shape {samples.shape})")
    mono = to_float32(samples, where).mean(axis=1, dtype=np.float32)
    target = sampling_rate if target_sampling_rate is None else target_sampling_rate
    return Audio(resample(mono, sampling_rate, target), int(target), int(sampling_rate),
                 channels, path)


def to_float32(samples: np.ndarray, where: str = "") -> np.ndarray:
    """Integer PCM scaled into [-1, 1) as libsndfile does; float samples as float32."""
    if samples.dtype in _INTEGER_SCALE:
        offset = 128.0 if samples.dtype == np.uint8 else 0.0
        return ((samples.astype(np.float64) - offset) / _INTEGER_SCALE[samples.dtype]) \
            .astype(np.float32)
    if samples.dtype.kind == "f":
        return samples.astype(np.float32, copy=False)
    raise DataError(f"{where}unsupported sample format {samples.dtype}; give float samples or "
                    "integer PCM (int8, uint8, int16, int32)")


def resample(samples: np.ndarray, sampling_rate: int, target_sampling_rate: int) -> np.ndarray:
    """(samples,) float32 at ``sampling_rate`` -> (round(samples * target / rate),) float32 at
    ``target_sampling_rate``, with soxr's HQ band-limited resampler (see the module docstring).
    """
    for name, rate in (("sampling rate", sampling_rate),
                       ("target sampling rate", target_sampling_rate)):
        if not isinstance(rate, (int, np.integer)) or rate <= 0:
            raise DataError(f"the {name} must be a positive whole number of Hz, got {rate!r}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if sampling_rate == target_sampling_rate or samples.size == 0:
        return samples
    import soxr

    return soxr.resample(samples, int(sampling_rate), int(target_sampling_rate), quality="HQ")
