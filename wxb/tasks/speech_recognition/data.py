"""The speech a recognizer learns from: utterances read or synthesized, split by speaker,
turned into log-mel features and label ids, and padded into batches.

    data section -> utterances (FSDD, the AISHELL sample, espeak-ng synthesized sentences, or a
      folder of audio with transcripts.jsonl), 16 kHz mono
      -> train / validation / test with no speaker on two sides (``split_by_speaker``)
      -> features: WhisperFeatureExtractor over each clip (kept compact, see ``compact_features``)
      -> labels: <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|> text <|endoftext|>
      -> SpeechCollator: (batch, mels, frames) windows and labels padded with -100

The labels are those Hugging Face's Whisper fine-tuning recipe makes (the tokenizer's ids of the
transcript after the forced prompt), and the collator, as that recipe's
``DataCollatorSpeechSeq2SeqWithPadding``, drops the leading <|startoftranscript|>: the model
puts it back when it shifts the labels right into ``decoder_input_ids``, so the decoder reads
<|startoftranscript|> <|lang|> ... and learns to predict <|lang|> <|transcribe|> ...
<|endoftext|>. The prompt tokens are in the loss, as in that recipe.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from wxb.data.speech import PITCHES, SENTENCE_SOURCES, SPEEDS, TRANSCRIPTS_FILE, Utterance
from wxb.errors import ConfigError
from wxb.tasks.sections import Section, at_least, choose

SOURCES = ("fsdd", "aishell_sample", "espeak", "folder")
# The language of the recordings of each packed source (espeak: its sentences'; folder: its
# transcripts').
SOURCE_LANGUAGES = {"fsdd": "en", "aishell_sample": "zh"}
LABEL_PAD = -100  # ignored by the loss


@dataclasses.dataclass
class DataSection(Section):
    """Which speech, how it is split and how long a transcript may be.

    ``source``: ``fsdd`` (``path``: fsdd.npz, spoken digits, 6 speakers), ``aishell_sample``
    (``path``: aishell_sample.npz, Mandarin, 2 speakers), ``espeak`` (``sentences`` of a
    sentence source read aloud by espeak-ng: ``path`` is that source's file in the data folder,
    e.g. translation/eng-cmn.tsv for tatoeba-en / tatoeba-zh; ``count`` sentences, each read
    ``variants`` times in a voice, speed and pitch drawn from ``voices``, ``speeds``,
    ``pitches``, cached under ``cache_dir``) or ``folder`` (``path``: a folder with a
    transcripts.jsonl, or that file). Synthesized speech is far easier than real recordings.

    ``language`` (default: the source's) and ``task`` make the forced prompt. The held-out
    sides are ``test_speakers`` / ``validation_speakers`` (a number drawn with ``split_seed``,
    or names); for espeak a speaker is a voice. ``max_train_utterances`` /
    ``max_eval_utterances`` draw at most that many of the training / each held-out side.
    ``max_label_length`` counts the prompt and <|endoftext|>; longer labels are cut.
    ``digits_as_words`` scores "9" as "nine" (Whisper writes digits, FSDD's transcripts are
    words; Whisper's normaliser leaves numbers as they are).
    """

    source: Literal[SOURCES] = "fsdd"
    path: str | None = None
    language: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    sentences: str | None = None
    count: int = 200
    max_characters: int | None = None
    voices: list[str] | None = None
    speeds: list[int] = dataclasses.field(default_factory=lambda: list(SPEEDS))
    pitches: list[int] = dataclasses.field(default_factory=lambda: list(PITCHES))
    variants: int = 1
    cache_dir: str = "runs/speech-cache"
    test_speakers: int | list[str] = 1
    validation_speakers: int | list[str] = 0
    split_seed: int = 0
    max_train_utterances: int | None = None
    max_eval_utterances: int | None = None
    max_label_length: int = 64
    digits_as_words: bool = False

    def check(self) -> None:
        if self.path is None:
            raise self.fail(f"path is required: the {self.source} data ("
                            + {"fsdd": "fsdd/fsdd.npz", "aishell_sample":
                               "aishell_sample/aishell_sample.npz", "espeak": "the sentence "
                               "source's file, e.g. translation/eng-cmn.tsv", "folder":
                               f"a folder with a {TRANSCRIPTS_FILE}, or that file"}[self.source]
                            + ")")
        if self.source == "espeak":
            if self.sentences is None:
                raise self.fail("sentences is required with source espeak: one of "
                                f"{', '.join(SENTENCE_SOURCES)}")
            choose("data.sentences", self.sentences, tuple(SENTENCE_SOURCES))
            at_least("data.count", self.count, 1)
        for key in ("max_train_utterances", "max_eval_utterances"):
            at_least(f"data.{key}", getattr(self, key), 1)
        at_least("data.max_label_length", self.max_label_length, 6)

    def default_language(self) -> str | None:
        """The language of the source's transcripts, when the source says it."""
        if self.source == "espeak":
            return SENTENCE_SOURCES[self.sentences].language
        return SOURCE_LANGUAGES.get(self.source)

    def read(self, log: Callable[[str], None]) -> list[Utterance]:
        """Every utterance of the source, at 16 kHz."""
        from wxb.data import speech

        if self.source == "fsdd":
            return speech.read_fsdd(self.path, sampling_rate=16000)
        if self.source == "aishell_sample":
            return speech.read_aishell_sample(self.path, sampling_rate=16000)
        if self.source == "folder":
            path = Path(self.path)
            return speech.read_speech_folder(path.parent if path.is_file() else path)
        spec = SENTENCE_SOURCES[self.sentences]
        path = Path(self.path)
        if path.is_dir():
            data_dir = path
        elif path.as_posix().endswith(spec.file):
            data_dir = Path(path.as_posix()[:-len(spec.file)] or ".")
        else:
            raise ConfigError(f"data.path {self.path!r}: sentence source {self.sentences} is "
                              f"read from {spec.file} (give that file, or the data folder)")
        sentences = speech.read_sentences(data_dir, self.sentences, limit=self.count,
                                          max_characters=self.max_characters,
                                          seed=self.split_seed)
        log(f"espeak-ng: {len(sentences) * self.variants:,} utterances, synthesized once "
            f"and cached in {self.cache_dir}")
        folder = speech.synthesize_speech(
            sentences, self.cache_dir, language=spec.language, voices=self.voices,
            speeds=self.speeds, pitches=self.pitches, variants=self.variants,
            seed=self.split_seed)
        return speech.read_speech_folder(folder)

    def splits(self, utterances: Sequence[Utterance]) -> dict[str, list[Utterance]]:
        """Train / validation / test by speaker, each drawn down to its ``max_*_utterances``
        (in their order in the data)."""
        from wxb.data.speech import split_by_speaker

        splits = split_by_speaker(utterances, test_speakers=self.test_speakers,
                                  validation_speakers=self.validation_speakers,
                                  seed=self.split_seed)
        rng = random.Random(self.split_seed)
        for name, part in splits.items():
            most = self.max_train_utterances if name == "train" else self.max_eval_utterances
            if most is not None and len(part) > most:
                kept = sorted(rng.sample(range(len(part)), most))
                splits[name] = [part[i] for i in kept]
        return splits

    def language_of(self, utterances: Sequence[Utterance]) -> str:
        """The one language of the transcripts (``language``, else the source's or the
        utterances' own)."""
        language = self.language or self.default_language()
        if language is None:
            found = sorted({u.language for u in utterances})
            if len(found) != 1:
                raise ConfigError(f"the utterances are in several languages ({', '.join(found)}); "
                                  "give data.language, and keep one language per run")
            language = found[0]
        return language


def compact_features(extractor: Any, audio: Any) -> tuple[torch.Tensor, float, bool]:
    """A clip's log-mel features, without the frames of padding after it.

    Whisper pads every clip with silence to a whole window (30 s: 3,000 frames), and a spoken
    digit lasts half a second, so most frames of a window are padding. Those frames are all
    one value: silence has log power -10, which the 80-dB floor raises to ``max - 8``, so after
    ``(x + 4) / 4`` a padding frame is ``max(-1.5, M - 2)`` where ``M`` is the largest feature
    (the window's maximum is never in the padding). So the extractor runs on the clip plus
    ``n_fft`` samples of silence (the frames that reach into the clip see the same zeros as in
    the full window), and ``SpeechCollator`` fills the rest of the window with that value: the
    features equal the extractor's on the whole window, at a fraction of the memory and time.

    Returns (mels, frames) features, the padding value and whether the clip was cut to the
    window."""
    hop, window = extractor.hop_length, extractor.n_samples
    length = min(window, math.ceil((len(audio) + extractor.n_fft) / hop) * hop)
    features = extractor(audio, max_length=length)["input_features"][0]
    floor = max(-1.5, float(features.max()) - 2.0)
    return features, floor, len(audio) > window


@dataclasses.dataclass
class EncodedSpeech:
    """A split ready for the Trainer: one example per utterance (``input_features``: compact
    (mels, frames), ``floor``: its padding value, ``labels``: ids), and what was cut."""

    examples: list[dict[str, Any]]
    truncated_audio: int = 0
    truncated_labels: int = 0

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.examples[index]


def encode_speech(utterances: Sequence[Utterance], extractor: Any, tokenizer: Any,
                  prompt: list[int], end_id: int, max_label_length: int) -> EncodedSpeech:
    """Features and labels of each utterance: ``prompt`` (the forced prompt, starting with
    <|startoftranscript|>), the transcript's ids, ``end_id`` (<|endoftext|>); a label longer
    than ``max_label_length`` is cut (and ends without <|endoftext|>: the text goes on)."""
    if max_label_length <= len(prompt) + 1:
        raise ConfigError(f"data.max_label_length {max_label_length} leaves no room for text "
                          f"after the {len(prompt)} prompt tokens and <|endoftext|>")
    encoded = EncodedSpeech([])
    for utterance in utterances:
        features, floor, cut = compact_features(extractor, utterance.audio)
        labels = [*prompt, *tokenizer.encode(utterance.transcript, add_special_tokens=False),
                  end_id]
        if len(labels) > max_label_length:
            labels = labels[:max_label_length]
            encoded.truncated_labels += 1
        encoded.truncated_audio += cut
        encoded.examples.append({"input_features": features, "floor": floor,
                                 "labels": labels})
    return encoded


class SpeechCollator:
    """Examples -> a batch: ``input_features`` (batch, mels, ``num_frames``), each clip's
    features with the rest of its window filled with its padding value (``compact_features``),
    and ``labels`` (batch, longest) padded with -100. As Hugging Face's
    ``DataCollatorSpeechSeq2SeqWithPadding``, a first column that is all
    ``decoder_start_token_id`` is dropped: the model prepends it again when it shifts the
    labels into ``decoder_input_ids``."""

    def __init__(self, num_frames: int, decoder_start_token_id: int) -> None:
        self.num_frames = num_frames
        self.decoder_start_token_id = decoder_start_token_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        from wxb.data.text import pad

        mels = examples[0]["input_features"].shape[0]
        features = torch.empty(len(examples), mels, self.num_frames)
        for row, example in enumerate(examples):
            clip = example["input_features"]
            features[row, :, :clip.shape[1]] = clip
            features[row, :, clip.shape[1]:] = example["floor"]
        labels = pad([e["labels"] for e in examples], LABEL_PAD)
        if bool((labels[:, 0] == self.decoder_start_token_id).all()):
            labels = labels[:, 1:]
        return {"input_features": features, "labels": labels}
