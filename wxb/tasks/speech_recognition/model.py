"""A speech recognizer: a Whisper model with the three things a Hugging Face Whisper folder
keeps beside it, and how it transcribes log-mel features.

    config.json + model.safetensors     WhisperForConditionalGeneration
    tokenizer.json / vocab.txt ...      its tokenizer, Whisper's special tokens included
    generation_config.json              the special ids decoding needs (WhisperGenerationConfig)
    preprocessor_config.json            the feature extractor (WhisperFeatureExtractor)

A run saves its model this way, so ``transformers`` and wxb load it alike. A folder made by
``wxb convert`` from a CTranslate2 Whisper (the real tiny.en) has all four; one without a
generation config decodes with what its tokenizer's special tokens say
(``whisper_settings``). Nothing here trains, so inference loads folders with it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from wxb.errors import ConfigError

START, END = "<|startoftranscript|>", "<|endoftext|>"
NO_TIMESTAMPS, PREVIOUS = "<|notimestamps|>", "<|startofprev|>"


@dataclasses.dataclass
class SpeechModel:
    """A Whisper model, its tokenizer, its decoding settings (``whisper``: a
    ``WhisperGenerationConfig``) and its feature extractor."""

    model: Any
    tokenizer: Any
    whisper: Any
    extractor: Any

    @property
    def multilingual(self) -> bool:
        """Whether the vocabulary has language tokens (an English-only model's prompt is
        <|startoftranscript|> <|notimestamps|>, with no language or task)."""
        return bool(self.whisper.lang_to_id) and self.whisper.is_multilingual is not False

    def options(self, language: str, task: str) -> dict[str, str]:
        """``decode_window``'s language and task for this model: none for an English-only
        model (which can only transcribe)."""
        if self.multilingual:
            return {"language": language, "task": task}
        if task != "transcribe":
            raise ConfigError(f"data.task {task!r}: this Whisper model is English-only and "
                              "can only transcribe; use task: transcribe")
        return {}

    def prompt(self, language: str, task: str) -> list[int]:
        """The forced prompt: <|startoftranscript|> <|lang|> <|task|> <|notimestamps|> (an
        English-only model: <|startoftranscript|> <|notimestamps|>)."""
        from wxb.generation.whisper import prompt_tokens

        return prompt_tokens(self.whisper, **self.options(language, task))[0]

    @torch.no_grad()
    def transcribe(self, input_features: torch.Tensor, *, language: str, task: str,
                   **generate_kwargs: Any) -> list[str]:
        """The text of each window of ``input_features`` (batch, mels, frames), decoded after
        the forced prompt with the model's suppressions (``decode_window``);
        ``generate_kwargs`` are ``num_beams``, ``max_new_tokens``, ...; special tokens are
        left out and the ends stripped."""
        from wxb.generation.whisper import decode_window

        sequences = decode_window(self.model, input_features, whisper=self.whisper,
                                  **self.options(language, task), **generate_kwargs)
        begin = len(self.prompt(language, task))
        return [text.strip() for text in self.tokenizer.batch_decode(
            sequences[:, begin:].tolist(), skip_special_tokens=True)]


def load_speech_model(folder: str | Path) -> SpeechModel:
    """The speech recognizer of a Whisper folder (or hub id), in eval mode."""
    from wxb.audio import WhisperFeatureExtractor
    from wxb.generation.whisper import GENERATION_CONFIG_NAME, WhisperGenerationConfig
    from wxb.hub import from_pretrained, resolve
    from wxb.models.whisper import WhisperForConditionalGeneration
    from wxb.tokenizers.load import load_tokenizer

    folder = resolve(folder)
    model = from_pretrained(folder)
    if not isinstance(model, WhisperForConditionalGeneration):
        raise ConfigError(f"{folder} holds a {type(model).__name__}; speech recognition needs "
                          "a Whisper model (WhisperForConditionalGeneration)")
    tokenizer = load_tokenizer(folder)
    whisper = (WhisperGenerationConfig.from_pretrained(folder)
               if (folder / GENERATION_CONFIG_NAME).is_file()
               else whisper_settings(tokenizer, model.config))
    extractor = (WhisperFeatureExtractor.from_pretrained(folder)
                 if (folder / "preprocessor_config.json").is_file()
                 else feature_extractor(model.config))
    if extractor.nb_max_frames != model.config.num_frames:
        raise ConfigError(f"{folder}: the feature extractor makes {extractor.nb_max_frames} "
                          f"frames but the model takes {model.config.num_frames}")
    return SpeechModel(model.eval(), tokenizer, whisper, extractor)


def feature_extractor(config: Any) -> Any:
    """The feature extractor of a Whisper config: its mel bins, and windows as long as its
    encoder takes (2 x max_source_positions frames of 10 ms)."""
    from wxb.audio import WhisperFeatureExtractor

    seconds, rest = divmod(config.num_frames, 100)
    if rest or not seconds:
        raise ConfigError(f"max_source_positions {config.max_source_positions} makes windows "
                          "of a fraction of a second; use a multiple of 50 (50 encoder steps "
                          "are one second)")
    return WhisperFeatureExtractor(feature_size=config.num_mel_bins, chunk_length=seconds)


def whisper_settings(tokenizer: Any, config: Any) -> Any:
    """The decoding settings a tokenizer's Whisper special tokens imply, with the model
    ``config``'s suppressions: the start and end tokens, <|notimestamps|> and <|startofprev|>
    where they exist, every <|xx|> language token and the task tokens."""
    from wxb.generation.whisper import LANGUAGES, TASKS, WhisperGenerationConfig

    ids = {token: tokenizer.token_to_id(token) for token in (START, END, NO_TIMESTAMPS,
                                                             PREVIOUS)}
    missing = [token for token in (START, END) if ids[token] is None]
    if missing:
        raise ConfigError(f"the tokenizer has no {missing[0]} token; a Whisper tokenizer holds "
                          f"{START} and {END}")
    languages = {f"<|{code}|>": tokenizer.token_to_id(f"<|{code}|>") for code in LANGUAGES}
    tasks = {task: tokenizer.token_to_id(f"<|{task}|>") for task in TASKS}
    languages = {k: v for k, v in languages.items() if v is not None}
    tasks = {k: v for k, v in tasks.items() if v is not None}
    return WhisperGenerationConfig(
        decoder_start_token_id=ids[START], eos_token_id=ids[END], pad_token_id=ids[END],
        no_timestamps_token_id=ids[NO_TIMESTAMPS], prev_sot_token_id=ids[PREVIOUS],
        lang_to_id=languages or None, task_to_id=tasks or None,
        is_multilingual=bool(languages), suppress_tokens=config.suppress_tokens,
        begin_suppress_tokens=config.begin_suppress_tokens,
        max_length=config.max_target_positions)
