"""Whisper's decoding on wxb's loops: the forced prompt, the suppressions and timestamp rules,
language detection, and long audio in 30-second windows.

    from wxb.generation.whisper import WhisperGenerationConfig, decode_window, transcribe
    whisper = WhisperGenerationConfig.from_pretrained(folder)  # its generation_config.json
    ids = decode_window(model, features, whisper=whisper, language="en", num_beams=4)
    result = transcribe(model, windows, whisper=whisper, tokenizer=tok, return_timestamps=True)
    for s in result.segments: print(f"{s.start:.2f} -> {s.end:.2f} {s.text}")

Whisper is told what to do by the first tokens of its decoder, which the decoding forces:

    <|startoftranscript|> <|zh|> <|transcribe|> <|notimestamps|>   then the text, <|endoftext|>

the language (detected from the first step when not given: the language token the model finds
most probable there), the task (``transcribe``, or ``translate`` into English) and, unless
timestamps are wanted, <|notimestamps|>. Older checkpoints spell the prompt as
``forced_decoder_ids``. Before the prompt may come <|startofprev|> and earlier text, which
Whisper reads as context (how long audio keeps its thread from one window to the next).
Decoding then runs the model's ``suppress_tokens`` (never), ``begin_suppress_tokens`` (not
first) and, with timestamps, ``WhisperTimeStampLogitsProcessor``, in transformers' order, over
greedy or beam search: ``decode_window`` gives the tokens transformers'
``WhisperForConditionalGeneration.generate`` gives for one window
(``force_unique_generate_call=True``), prompt included.

``transcribe`` decodes long audio window after window, each with the previous windows' tokens
as its prompt (openai's ``condition_on_previous_text``), and cuts the tokens into timed
segments. Unlike openai's and transformers' long-form loops, which move the next window to the
last timestamp and re-decode from there (with temperature fallback), the windows here are
fixed: the caller's N consecutive 30-second windows, one pass each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wxb.errors import ConfigError
from wxb.generation.config import GenerationConfig
from wxb.generation.encoder_decoder import features_tensor
from wxb.generation.generate import GenerateOutput, generate
from wxb.generation.logits import (
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
    WhisperTimeStampLogitsProcessor,
)
from wxb.io import atomic_write_json, read_json_object

GENERATION_CONFIG_NAME = "generation_config.json"
TASKS = ("transcribe", "translate")
TIME_PRECISION = 0.02  # seconds per timestamp step: one encoder position (2 frames of 10 ms)

# Whisper's languages, in the order of their tokens (<|en|> follows <|startoftranscript|>).
LANGUAGES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian",
    "ko": "korean", "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish",
    "pl": "polish", "ca": "catalan", "nl": "dutch", "ar": "arabic", "sv": "swedish",
    "it": "italian", "id": "indonesian", "hi": "hindi", "fi": "finnish", "vi": "vietnamese",
    "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay", "cs": "czech",
    "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian",
    "la": "latin", "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak",
    "te": "telugu", "fa": "persian", "lv": "latvian", "bn": "bengali", "sr": "serbian",
    "az": "azerbaijani", "sl": "slovenian", "kn": "kannada", "et": "estonian",
    "mk": "macedonian", "br": "breton", "eu": "basque", "is": "icelandic", "hy": "armenian",
    "ne": "nepali", "mn": "mongolian", "bs": "bosnian", "kk": "kazakh", "sq": "albanian",
    "sw": "swahili", "gl": "galician", "mr": "marathi", "pa": "punjabi", "si": "sinhala",
    "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali", "af": "afrikaans",
    "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik", "sd": "sindhi",
    "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese",
    "yue": "cantonese",
}


@dataclass
class WhisperGenerationConfig:
    """What a Whisper folder's ``generation_config.json`` says about its special tokens, with
    transformers' names: the start token, <|endoftext|>, <|notimestamps|> (the timestamps
    follow it), <|startofprev|>, the language and task tokens (``lang_to_id`` maps
    ``"<|en|>"`` to its id), the suppressed tokens, and the default length and prompt.
    The defaults are multilingual Whisper's ids. How to search (beams, lengths) stays in
    ``GenerationConfig``."""

    decoder_start_token_id: int = 50258
    eos_token_id: int = 50257
    pad_token_id: int = 50257
    no_timestamps_token_id: int | None = 50363
    prev_sot_token_id: int | None = 50361
    lang_to_id: dict[str, int] | None = None
    task_to_id: dict[str, int] | None = None
    is_multilingual: bool | None = None
    suppress_tokens: list[int] | None = None
    begin_suppress_tokens: list[int] | None = None
    forced_decoder_ids: list[list[int | None]] | None = None
    max_initial_timestamp_index: int | None = 50  # the first timestamp is at most 1.00 s
    max_length: int = 448
    return_timestamps: bool = False
    language: str | None = None  # what a call that names none gets
    task: str | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> WhisperGenerationConfig:
        """The known keys of a generation_config.json; the rest (``alignment_heads``,
        ``transformers_version``, ...) are left out, as in a config.json."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    @classmethod
    def from_model_config(cls, config: Any) -> WhisperGenerationConfig:
        """What a model's config alone says (a folder without generation_config.json): no
        languages, tasks or timestamps, only the start and end tokens and the
        suppressions."""
        return cls(decoder_start_token_id=config.decoder_start_token_id,
                   eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id,
                   no_timestamps_token_id=None, prev_sot_token_id=None,
                   suppress_tokens=config.suppress_tokens,
                   begin_suppress_tokens=config.begin_suppress_tokens,
                   forced_decoder_ids=config.forced_decoder_ids,
                   max_length=config.max_target_positions)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> WhisperGenerationConfig:
        """A model folder's generation_config.json over what its config.json says."""
        from wxb.models.checkpoint import read_config_json
        from wxb.models.whisper import WhisperConfig

        folder = Path(folder)
        values = {**cls.from_model_config(WhisperConfig.from_dict(
            read_config_json(folder / "config.json"))).to_dict()}
        if (folder / GENERATION_CONFIG_NAME).is_file():
            values.update(read_json_object(folder / GENERATION_CONFIG_NAME, ConfigError))
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, folder: str | Path) -> Path:
        """Write ``generation_config.json`` (atomically), which transformers reads too."""
        path = Path(folder) / GENERATION_CONFIG_NAME
        atomic_write_json(path, {k: v for k, v in self.to_dict().items() if v is not None})
        return path

    @property
    def timestamp_begin(self) -> int | None:
        """The id of <|0.00|>, the first timestamp token."""
        return None if self.no_timestamps_token_id is None else self.no_timestamps_token_id + 1

    def chosen(self, language: str | None, task: str | None) -> tuple[str | None, str | None]:
        """A call's language and task, or where it gives none, the config's."""
        return (self.language if language is None else language,
                self.task if task is None else task)

    def language_token(self, language: str) -> int:
        """The token id of ``language``: a code (``"zh"``), a name (``"chinese"``) or the token
        itself (``"<|zh|>"``); ConfigError, listing this model's languages, otherwise."""
        known = self.lang_to_id or {}
        if self.is_multilingual is False or not known:
            raise ConfigError(f"language {language!r}: this Whisper model is English-only (its "
                              "generation config lists no languages); leave language unset")
        key = language.strip().lower()
        names = {name: code for code, name in LANGUAGES.items()}
        token = key if key.startswith("<|") else f"<|{names.get(key, key)}|>"
        if token not in known:
            codes = ", ".join(t[2:-2] for t in sorted(known, key=known.get))
            raise ConfigError(f"unknown language {language!r} for this model; use one of: "
                              f"{codes} (codes, their English names, or tokens like <|en|>)")
        return known[token]

    def language_code(self, token_id: int) -> str:
        """``"zh"`` for the id of <|zh|>."""
        for token, i in (self.lang_to_id or {}).items():
            if i == token_id:
                return token[2:-2]
        raise ConfigError(f"token {token_id} is not one of this model's language tokens")


def detect_language(model: Any, input_features: Any,
                    whisper: WhisperGenerationConfig | None = None) -> torch.Tensor:
    """(batch,) the language token each window is most likely in: after
    <|startoftranscript|> alone, the language token with the highest logit (transformers'
    ``detect_language``). ``language_code`` turns an id into ``"en"``."""
    whisper = whisper or WhisperGenerationConfig.from_model_config(model.config)
    if not whisper.lang_to_id:
        raise ConfigError("this Whisper model has no language tokens to detect (English-only, "
                          "or a generation config without lang_to_id)")
    device = next(model.parameters()).device
    features = features_tensor(input_features, device)
    with torch.no_grad():
        start = torch.full((features.shape[0], 1), whisper.decoder_start_token_id,
                           device=device)
        logits = model.decode(start, model.encode(features))[0][:, -1]
    languages = torch.tensor(sorted(whisper.lang_to_id.values()), device=device)
    return languages[logits.index_select(-1, languages).argmax(dim=-1)]


def _forced(whisper: WhisperGenerationConfig, language: str | None,
            task: str | None) -> list[int | None]:
    """The start token and, when neither language nor task is given, the old spelling's
    ``forced_decoder_ids`` (positions 1, 2, ...; a None leaves the language open)."""
    tokens: list[int | None] = [whisper.decoder_start_token_id]
    forced = whisper.forced_decoder_ids or []
    if language is None and task is None:
        for position, (index, token) in enumerate(forced, start=1):
            if index != position:
                raise ConfigError(f"forced_decoder_ids {forced} must number positions 1, 2, "
                                  "... in order (Whisper's prompt)")
            tokens.append(token)
    return tokens


def needs_detection(whisper: WhisperGenerationConfig, language: str | None = None,
                    task: str | None = None) -> bool:
    """Whether the prompt leaves the language for the model to tell (transformers' rule: none
    is given, the model has language tokens, and the forced prompt's second place is empty)."""
    language, task = whisper.chosen(language, task)
    if language is not None or not whisper.lang_to_id:
        return False
    forced = _forced(whisper, language, task)
    return len(forced) <= 1 or forced[1] is None


def prompt_tokens(whisper: WhisperGenerationConfig, *, language: str | None = None,
                  task: str | None = None, return_timestamps: bool = False,
                  detected: list[int] | None = None) -> list[list[int]]:
    """The forced prompt of each row, as transformers builds it: the start token, the
    language (``language``, the ``forced_decoder_ids``' own, or each row's ``detected`` id),
    the task (``transcribe`` when only a language is given), and <|notimestamps|> unless
    ``return_timestamps``. Rows differ only in a detected language; without detection there
    is one row. Language and task default to the config's."""
    language, task = whisper.chosen(language, task)
    if whisper.is_multilingual is False and (language is not None or task is not None):
        raise ConfigError("this Whisper model is English-only: it takes no language or task")
    if task is not None and task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if task is not None and not whisper.task_to_id:
        raise ConfigError(f"task {task!r}: this model's generation config has no task tokens "
                          "(task_to_id)")
    chosen = [whisper.language_token(language)] if language is not None else detected
    tasks = (whisper.task_to_id or {}).values()
    rows = []
    for language_id in chosen or [None]:
        row = _forced(whisper, language, task)
        if language_id is not None:
            row[1:2] = [language_id]
        if task is not None:
            row.append(whisper.task_to_id[task])
        elif language is not None and tasks and not any(t in row for t in tasks):
            row.append(whisper.task_to_id["transcribe"])
        no_timestamps = whisper.no_timestamps_token_id
        if not return_timestamps and no_timestamps is not None and row[-1] != no_timestamps:
            row.append(no_timestamps)
        elif return_timestamps and row[-1] == no_timestamps:
            row.pop()
        rows.append([t for t in row if t is not None])
    return rows


def decode_window(model: Any, input_features: Any,
                  generation_config: GenerationConfig | None = None, *,
                  whisper: WhisperGenerationConfig | None = None, language: str | None = None,
                  task: str | None = None, return_timestamps: bool | None = None,
                  prompt_ids: Any = None, **kwargs: Any) -> torch.Tensor | GenerateOutput:
    """Decode windows of up to 30 s: ``input_features`` (batch, mels, frames) -> token ids
    (batch, prompt + new), the forced prompt (and ``prompt_ids``) first, as transformers'
    ``generate(input_features, force_unique_generate_call=True)`` returns them.

    ``language`` (``"zh"``, ``"chinese"``; detected per row when None on a multilingual
    model), ``task`` (``"transcribe"`` or ``"translate"``), ``return_timestamps`` (default:
    the config's). ``prompt_ids`` (n,): earlier text, <|startofprev|> first, read as context
    before the prompt. ``kwargs`` are ``GenerationConfig`` fields (``num_beams=5``,
    ``max_new_tokens=100``, ...); without a length, transformers' rule (``_length``).
    Detecting the language costs one more pass of the encoder, as in transformers.
    """
    whisper = whisper or WhisperGenerationConfig.from_model_config(model.config)
    timestamps = whisper.return_timestamps if return_timestamps is None else return_timestamps
    if timestamps and whisper.no_timestamps_token_id is None:
        raise ConfigError("return_timestamps needs the model's no_timestamps_token_id (from "
                          "its generation_config.json); this config has none")
    features = features_tensor(input_features, next(model.parameters()).device)
    detected = None
    if needs_detection(whisper, language, task):
        detected = detect_language(model, features, whisper).tolist()
    prompt = torch.tensor(prompt_tokens(whisper, language=language, task=task,
                                        return_timestamps=timestamps, detected=detected),
                          device=features.device).expand(features.shape[0], -1)
    if prompt_ids is not None:
        context = torch.as_tensor(prompt_ids, device=features.device).reshape(1, -1)
        prompt = torch.cat([context.expand(prompt.shape[0], -1), prompt], dim=1)
    begin = prompt.shape[1]
    # transformers' order: begin-suppression, suppression, then the timestamp rules.
    processors = []
    if whisper.begin_suppress_tokens:
        processors.append(SuppressTokensAtBeginLogitsProcessor(whisper.begin_suppress_tokens,
                                                               begin))
    if whisper.suppress_tokens:
        processors.append(SuppressTokensLogitsProcessor(whisper.suppress_tokens))
    if timestamps:
        processors.append(WhisperTimeStampLogitsProcessor(
            whisper.no_timestamps_token_id, whisper.eos_token_id, begin,
            whisper.max_initial_timestamp_index))
    config = (generation_config or GenerationConfig()).updated(**kwargs)
    special = {name: getattr(whisper, name) for name in ("eos_token_id", "pad_token_id")
               if getattr(config, name) is None and name not in kwargs}
    config = config.updated(**special, **_length(config, model.config, begin, whisper))
    return generate(model, features, config, decoder_input_ids=prompt,
                    logits_processor=processors)


def _length(config: GenerationConfig, model_config: Any, prompt: int,
            whisper: WhisperGenerationConfig) -> dict[str, int]:
    """transformers' lengths for Whisper: ``max_new_tokens`` as given; else ``max_length``
    (the settings', or ``whisper.max_length``) plus the prompt's length up to
    max_target_positions / 2 - 1, so that earlier text in the prompt leaves room for new
    text, capped at the decoder's max_target_positions."""
    if config.max_new_tokens is not None:
        return {}
    window = model_config.max_target_positions
    length = (config.max_length or whisper.max_length) + min(window // 2 - 1, prompt)
    return {"max_length": min(length, window)}


@dataclass
class Segment:
    """A stretch of speech: ``start`` and ``end`` in seconds from the audio's start, its text
    tokens (no timestamps, no special tokens) and their ``text`` (with a tokenizer)."""

    start: float
    end: float
    tokens: list[int]
    text: str | None = None


@dataclass
class Transcription:
    """What ``transcribe`` returns: the timed ``segments``, their joined ``text`` (with a
    tokenizer), each window's new tokens as generated (timestamps included, <|endoftext|>
    not), and the ``language`` code (given or detected; None for English-only models)."""

    segments: list[Segment]
    tokens: list[list[int]]
    language: str | None = None
    text: str | None = None


def transcribe(model: Any, windows: Iterable[torch.Tensor],
               generation_config: GenerationConfig | None = None, *,
               whisper: WhisperGenerationConfig | None = None, tokenizer: Any = None,
               language: str | None = None, task: str | None = None,
               return_timestamps: bool = False, condition_on_previous_text: bool = True,
               duration: float | None = None,
               progress: Callable[[int, int | None], None] | None = None,
               **kwargs: Any) -> Transcription:
    """Transcribe (or translate) long audio given as consecutive windows of log-mel features.

    ``windows``: a (N, mels, frames) tensor, or any iterable of (mels, frames) windows (one
    hour is 120 windows of 30 s; an iterator keeps only one in memory). The language is
    detected once, on the first window, when not given. Each window is one ``decode_window``
    whose prompt is <|startofprev|> and the tokens of the windows before it (their last
    max_target_positions / 2 - 1), unless ``condition_on_previous_text=False``. ``kwargs`` are
    ``GenerationConfig`` fields. ``tokenizer`` (anything with ``decode(ids)``) fills in the
    text. ``duration``, the audio's length in seconds, ends the last segment there and drops
    any that start after it (what Whisper makes up over the last window's silent padding).
    ``progress(done, total)`` is called after each window (total None for an iterator of
    unknown length).

    Segments: with timestamps, the stretches between a start and an end timestamp (text left
    open at a window's end closes with the window); without, one per window.
    """
    whisper = whisper or WhisperGenerationConfig.from_model_config(model.config)
    language, task = whisper.chosen(language, task)
    total = len(windows) if hasattr(windows, "__len__") else None
    device = next(model.parameters()).device
    seconds = model.config.num_frames / 100  # a window's length: 100 mel frames a second
    context_size = model.config.max_target_positions // 2 - 1
    segments: list[Segment] = []
    generated: list[list[int]] = []
    history: list[int] = []  # the latest tokens, the next window's context
    forced: list[int] = []
    for index, window in enumerate(windows):
        features = features_tensor(window, device)
        if features.shape[0] != 1:
            raise ConfigError(f"window {index} has shape {tuple(window.shape)}; each window "
                              "is one (mels, frames) log-mel spectrogram of the audio")
        if index == 0:
            if needs_detection(whisper, language, task):  # once, as openai does
                language = whisper.language_code(
                    int(detect_language(model, features, whisper)[0]))
            forced = prompt_tokens(whisper, language=language, task=task,
                                   return_timestamps=return_timestamps)[0]
        context = None
        if condition_on_previous_text and history and whisper.prev_sot_token_id is not None:
            context = [whisper.prev_sot_token_id, *history]
        out = decode_window(model, features, generation_config, whisper=whisper,
                            language=language, task=task, return_timestamps=return_timestamps,
                            prompt_ids=context, **kwargs)
        sequence = out.sequences if isinstance(out, GenerateOutput) else out
        new = sequence[0, len(context or []) + len(forced):].tolist()
        if whisper.eos_token_id in new:
            new = new[:new.index(whisper.eos_token_id)]
        generated.append(new)
        history = (history + new)[-context_size:]
        segments += split_segments(new, whisper, offset=index * seconds, window=seconds,
                                   timestamps=return_timestamps)
        if progress is not None:
            progress(index + 1, total)
    if duration is not None:
        segments = [dataclasses.replace(s, end=min(s.end, duration)) for s in segments
                    if s.start < duration]
    text = None
    if tokenizer is not None:
        for segment in segments:
            segment.text = tokenizer.decode(segment.tokens)
        text = "".join(segment.text for segment in segments)
    spoken = forced[1] if len(forced) > 1 else None
    code = (whisper.language_code(spoken)
            if spoken in (whisper.lang_to_id or {}).values() else None)
    return Transcription(segments, generated, code, text)


def split_segments(tokens: list[int], whisper: WhisperGenerationConfig, *, offset: float = 0.0,
                   window: float = 30.0, timestamps: bool = True) -> list[Segment]:
    """Cut one window's new tokens into timed segments: ``<|t0|> text <|t1|>`` becomes
    (offset + t0, offset + t1, text), and text left open at the end closes with the window
    (offset + window). Decoded without timestamps (``timestamps=False``: any the model wrote
    anyway obey no rule), the window's text is one segment. Only text tokens (those below
    <|endoftext|>) are kept."""
    first = whisper.timestamp_begin if timestamps else None
    segments: list[Segment] = []
    start, text = offset, []
    for token in tokens:
        if first is not None and token >= first:
            time = offset + (token - first) * TIME_PRECISION
            if text:  # an end
                segments.append(Segment(start, time, text))
                text = []
            start = time  # a start (or the pair that follows an end)
        elif token < whisper.eos_token_id:
            text.append(token)
    if text:
        segments.append(Segment(start, offset + window, text))
    return segments
