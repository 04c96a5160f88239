"""Training a translation model, as a function of one config.

    table of sentence pairs -> split by source sentence (no test source is trained on)
      -> tokenizers trained on the training side -> Seq2Seq (recurrent, attention) or the
      Transformer -> Trainer (validation loss each epoch) -> translations of the validation
      and test sources -> corpus BLEU (sacrebleu) -> attention heatmaps -> model/ + result.json

The config (a recipe with ``task: translation`` is one)::

    model:    {type: seq2seq | transformer, <fields of its config>,
               source_tokenizer: {kind: char | word | bpe, vocab_size, min_frequency, ...}
                                 or a tokenizer folder,
               target_tokenizer: the same,
               or tokenizer: one vocabulary for both languages (trained on both sides)}
    data:     {path: FILE, validation_size: 0.05, test_size: 0.1, split_seed: 0}
              or {train: FILE, validation: FILE, test: FILE}
              + source_column, target_column, fieldnames (of a headerless table),
                max_source_length: 64, max_target_length: 64,
                target_language: en (sacrebleu tokenizes zh targets by character)
    teacher_forcing: {schedule: constant | linear | exponential | inverse_sigmoid,
                      start: 1.0, end: 0.5, k: 10}        (Seq2Seq: scheduled sampling)
    generation: {num_beams: 1, max_new_tokens: 64, length_penalty: 1.0}
    training: {<TrainingArguments fields>}
    max_time_seconds: 1500

The saved folder holds the model and its tokenizers (one, or ``source_tokenizer/`` and
``target_tokenizer/``); ``wxb translate --model DIR "text"`` and ``wxb.pipeline("translate",
DIR)`` use it. The model evaluated is the last one, as in ``finetune``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wxb.config import check_known_keys, check_section_keys, coerce
from wxb.data.pairs import Seq2SeqCollator, encode_pairs, sentence_pairs, split_by_source
from wxb.data.text import read_rows
from wxb.errors import ConfigError, DataError
from wxb.generation.translate import cross_attention, translate_texts
from wxb.metrics.translation import bleu_tokenize, corpus_bleu
from wxb.models import registry
from wxb.models.base import PreTrainedModel
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.load import load_tokenizer
from wxb.tokenizers.train import tokenizer_from_settings
from wxb.train.arguments import TrainingArguments
from wxb.train.from_config import (
    check_expected,
    config_sections,
    result_config,
    write_result,
)
from wxb.train.pretrain import TimeBudget, run_summary
from wxb.train.trainer import Trainer

SECTIONS = ("model", "data", "teacher_forcing", "generation", "training")
OTHER_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
MODEL_TYPES = ("seq2seq", "transformer", "marian")
TOKENIZER_KEYS = ("tokenizer", "source_tokenizer", "target_tokenizer")
DATA_FILES = ("path", "train", "validation", "test")
DATA_DEFAULTS = {"source_column": "source", "target_column": "target", "fieldnames": None,
                 "validation_size": 0.05, "test_size": 0.1, "split_seed": 0,
                 "max_source_length": 64, "max_target_length": 64, "target_language": None}
TEACHER_DEFAULTS = {"schedule": "constant", "start": 1.0, "end": 0.5, "k": 10.0}
GENERATION_DEFAULTS = {"num_beams": 1, "max_new_tokens": 64, "length_penalty": 1.0,
                       "batch_size": 64}
TRAINING_DEFAULTS = {"output_dir": "runs/translate", "num_train_epochs": 10,
                     "learning_rate": 1e-3, "per_device_train_batch_size": 64,
                     "per_device_eval_batch_size": 128, "eval_strategy": "epoch",
                     "metric_for_best_model": "loss", "max_grad_norm": 1.0}
# The special tokens of a tokenizer trained here: padding first, so both sides pad with id 0.
VOCAB_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "eos": "[EOS]"}
BPE_SPECIALS = {"pad": "<pad>", "eos": "</s>"}
TOKENIZER_KINDS = ("char", "word", "bpe")
SOURCE_TOKENIZER_DIR, TARGET_TOKENIZER_DIR = "source_tokenizer", "target_tokenizer"
HEATMAPS = 3  # attention heatmaps drawn, of the first test sentences
SAMPLES = 20  # translations kept in result.json
METRICS = tuple(f"{split}_{m}" for split in ("eval", "test")
                for m in ("bleu", "bleu_all_references", "chrf", "loss"))


def train_translation(config: dict[str, Any], *, resume: bool | str = False,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured translation model and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given folder.
    """
    start = time.perf_counter()
    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    model_section, data, teacher, generation, training = config_sections(
        config, SECTIONS, OTHER_KEYS)
    data = _check_data(data)
    teacher = _check_section("teacher_forcing", teacher, TEACHER_DEFAULTS)
    generation = _check_section("generation", generation, GENERATION_DEFAULTS)
    expected = check_expected(config.get("expected"), METRICS)
    max_time = config.get("max_time_seconds")
    max_time = None if max_time is None else coerce("max_time_seconds", max_time, float)
    args = TrainingArguments.from_dict({**TRAINING_DEFAULTS, **training})
    output_dir = Path(args.output_dir)

    splits, skipped = _read_splits(data)
    log(f"data: {', '.join(f'{n} {len(p):,}' for n, p in splits.items())} pairs"
        + (f"; {skipped:,} rows with an empty side skipped" if skipped else ""))
    source_tok, target_tok = build_tokenizers(model_section, splits["train"])
    encoded = {name: encode_pairs(pairs, source_tok, target_tok,
                                  max_source_length=data["max_source_length"],
                                  max_target_length=data["max_target_length"])
               for name, pairs in splits.items()}
    truncated = {name: e.truncated for name, e in encoded.items()}
    if any(n for counts in truncated.values() for n in counts.values()):
        log("truncated to max_source_length / max_target_length: " + "; ".join(
            f"{name} {c['source']} sources, {c['target']} targets"
            for name, c in truncated.items()))
    model = build_translation_model(model_section, source_tok, target_tok, seed=args.seed)
    log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters; vocabularies "
        f"{source_tok.vocab_size:,} (source), {target_tok.vocab_size:,} (target)")

    budget = TimeBudget(max_time) if max_time is not None else None
    callbacks: list[Any] = [budget] if budget else []
    if teacher["schedule"] != "constant" or teacher["start"] != 1.0:
        if not hasattr(model, "teacher_forcing_ratio"):
            raise ConfigError(f"teacher_forcing applies to the recurrent seq2seq model; "
                              f"{type(model).__name__} always reads the true previous tokens")
        per_epoch = math.ceil(len(encoded["train"]) / (args.per_device_train_batch_size
                                                       * args.gradient_accumulation_steps))
        total = args.max_steps if args.max_steps > 0 else math.ceil(
            args.num_train_epochs * per_epoch)
        callbacks.append(TeacherForcingSchedule(teacher, total))
    trainer = Trainer(model, args, train_dataset=encoded["train"],
                      eval_dataset=encoded.get("validation"),
                      data_collator=Seq2SeqCollator(source_tok.pad_token_id),
                      callbacks=callbacks)
    output = trainer.train(resume_from_checkpoint=resume)

    model.eval()
    metrics: dict[str, float] = {}
    samples: dict[str, list[dict[str, str]]] = {}
    gen = {k: v for k, v in generation.items() if k != "batch_size"}
    for name, prefix in (("validation", "eval"), ("test", "test")):
        if name not in splits:
            continue
        metrics[f"{prefix}_loss"] = trainer.evaluate(encoded[name])["eval_loss"]
        pairs = splits[name]
        # Each distinct source is translated once; a source with several translations in
        # the corpus is also scored against all of them at once.
        references: dict[str, list[str]] = {}
        for source, target in pairs:
            references.setdefault(source, []).append(target)
        sources = list(references)
        translations = dict(zip(sources, translate_texts(
            model, source_tok, target_tok, sources, batch_size=generation["batch_size"],
            max_source_length=data["max_source_length"], **gen), strict=True))
        hypotheses = [translations[s] for s, _ in pairs]
        scores = corpus_bleu(hypotheses, [t for _, t in pairs], language=data["target_language"])
        metrics[f"{prefix}_bleu"], metrics[f"{prefix}_chrf"] = scores["bleu"], scores["chrf"]
        metrics[f"{prefix}_bleu_all_references"] = corpus_bleu(
            [translations[s] for s in sources], [references[s] for s in sources],
            language=data["target_language"])["bleu"]
        samples[name] = [{"source": s, "reference": t, "translation": translations[s]}
                         for s, t in pairs[:SAMPLES]]
        log(f"{name}: BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} ({len(pairs):,} "
            f"pairs); BLEU {metrics[f'{prefix}_bleu_all_references']:.2f} against all "
            f"references of the {len(sources):,} distinct sources")
    model_dir = save_translation_model(model, source_tok, target_tok, output_dir / "model")
    heatmaps = []
    if "test" in splits and getattr(model, "attention", True) is not None:
        heatmaps = [str(p) for p in _heatmaps(model, source_tok, target_tok, splits["test"],
                                               gen, output_dir, config.get("name"))]

    result: dict[str, Any] = {
        **run_summary("translation", metrics, trainer, output, budget, start),
        "examples": {name: len(p) for name, p in splits.items()},
        "skipped_empty_pairs": skipped,
        "truncated": truncated,
        "bleu_tokenize": bleu_tokenize(data["target_language"]),
        "samples": samples,
        "model_dir": str(model_dir),
        "attention_heatmaps": heatmaps,
        "config": result_config(config, expected, model=model_section, data=data,
                                teacher_forcing=teacher, generation=generation,
                                training=args.to_dict(), max_time_seconds=max_time),
    }
    return write_result(result, expected, metrics, output_dir)


# ----------------------------------------------------------------------------- the sections


def _check_section(name: str, section: dict[str, Any],
                   defaults: dict[str, Any]) -> dict[str, Any]:
    check_section_keys(name, section, tuple(defaults))
    section = {**defaults, **section}
    for key, default in defaults.items():
        section[key] = coerce(f"{name}.{key}", section[key], type(default))
    return section


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("data", section, (*DATA_FILES, *DATA_DEFAULTS))
    if ("path" in section) == ("train" in section):
        raise ConfigError("data: give either path (one table, split by test_size and "
                          "validation_size) or train (with validation and test files)")
    section = {**DATA_DEFAULTS, **section}
    for key in ("max_source_length", "max_target_length", "split_seed"):
        section[key] = coerce(f"data.{key}", section[key], int)
    for key in ("validation_size", "test_size"):
        section[key] = coerce(f"data.{key}", section[key], float)
    if section["max_target_length"] < 2:
        raise ConfigError("data.max_target_length must leave room for a token and the eos")
    return section


def _read_splits(data: dict[str, Any]) -> tuple[dict[str, list[tuple[str, str]]], int]:
    """The train / validation / test pairs, and how many rows were skipped as empty."""
    def read(path: str):
        return sentence_pairs(read_rows(path, data["fieldnames"]), path,
                              data["source_column"], data["target_column"])

    if "path" in data:
        whole = read(data["path"])
        return split_by_source(whole.pairs, test_size=data["test_size"],
                               validation_size=data["validation_size"],
                               seed=data["split_seed"]), whole.skipped_empty
    splits, skipped = {}, 0
    for name in ("train", "validation", "test"):
        if data.get(name) is not None:
            part = read(data[name])
            splits[name], skipped = part.pairs, skipped + part.skipped_empty
    return splits, skipped


# ----------------------------------------------------------------------------- the pieces


def build_tokenizers(section: dict[str, Any],
                     pairs: list[tuple[str, str]]) -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers: folders, or trained on the training pairs; with
    ``tokenizer`` one vocabulary for both sides, trained on both."""
    given = [k for k in TOKENIZER_KEYS if k in section]
    if given == ["tokenizer"]:
        shared = _tokenizer(section["tokenizer"], [t for pair in pairs for t in pair],
                            "model.tokenizer")
        return shared, shared
    if given != ["source_tokenizer", "target_tokenizer"]:
        raise ConfigError("model needs source_tokenizer and target_tokenizer (folders or "
                          "settings such as {kind: bpe, vocab_size: 8000}), or one tokenizer "
                          "for both languages")
    source = _tokenizer(section["source_tokenizer"], [s for s, _ in pairs],
                        "model.source_tokenizer")
    target = _tokenizer(section["target_tokenizer"], [t for _, t in pairs],
                        "model.target_tokenizer")
    if source.pad_token_id != target.pad_token_id:
        raise ConfigError(f"the source tokenizer pads with id {source.pad_token_id} and the "
                          f"target tokenizer with {target.pad_token_id}; the model has one "
                          "pad_token_id, so both need the same")
    return source, target


def _tokenizer(spec: Any, texts: list[str], field: str) -> Tokenizer:
    kind = spec.get("kind") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and kind not in TOKENIZER_KINDS:
        raise ConfigError(f"{field} is a folder or settings with kind one of "
                          f"{', '.join(TOKENIZER_KINDS)}; got {spec!r}")
    tokenizer = tokenizer_from_settings(spec, texts, field=field,
                                        special_tokens=BPE_SPECIALS if kind == "bpe"
                                        else VOCAB_SPECIALS)
    for role in ("pad", "eos"):
        if getattr(tokenizer, f"{role}_token_id") is None:
            raise ConfigError(f"{field} has no {role} token; translation needs one")
    return tokenizer


def build_translation_model(section: dict[str, Any], source: Tokenizer, target: Tokenizer,
                            *, seed: int) -> PreTrainedModel:
    """The configured model, sized to the tokenizers; it starts decoding from the pad token
    (Marian's convention) and stops at the target's eos."""
    model_type = section.get("type")
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"model.type must be one of {', '.join(MODEL_TYPES)}; got "
                          f"{model_type!r}")
    cls = registry.model_class(model_type)
    fields = {k: v for k, v in section.items() if k not in ("type", *TOKENIZER_KEYS)}
    check_known_keys(cls.config_class, fields, f"{model_type} config field")
    values = {"vocab_size": source.vocab_size, "decoder_vocab_size": target.vocab_size,
              "pad_token_id": source.pad_token_id, "eos_token_id": target.eos_token_id,
              "decoder_start_token_id": target.pad_token_id}
    if cls.config_class.model_type == "marian":
        values["share_encoder_decoder_embeddings"] = source is target
        if fields.get("share_encoder_decoder_embeddings") and source is not target:
            raise ConfigError("share_encoder_decoder_embeddings needs one vocabulary: give "
                              "model.tokenizer instead of source_tokenizer and target_tokenizer")
    torch.manual_seed(seed)
    return cls(cls.config_class.from_dict({**values, **fields}, strict=True))


def save_translation_model(model: PreTrainedModel, source: Tokenizer, target: Tokenizer,
                           folder: Path) -> Path:
    """The model and its tokenizers in one folder (one tokenizer, or one folder per side)."""
    model_dir = model.save_pretrained(folder)
    if source is target:
        source.save(model_dir)
    else:
        source.save(model_dir / SOURCE_TOKENIZER_DIR)
        target.save(model_dir / TARGET_TOKENIZER_DIR)
    return model_dir


def load_translation_model(folder: str | Path) -> tuple[PreTrainedModel, Tokenizer, Tokenizer]:
    """What ``save_translation_model`` wrote: the model (in eval mode) and its tokenizers."""
    from wxb.hub import from_pretrained, resolve

    folder = resolve(folder)
    model = from_pretrained(folder)
    if not getattr(model.config, "is_encoder_decoder", False):
        raise ConfigError(f"{folder} holds a {model.config.model_type} model; translation "
                          "needs an encoder-decoder (seq2seq or transformer)")
    if (folder / SOURCE_TOKENIZER_DIR).is_dir():
        source = load_tokenizer(folder / SOURCE_TOKENIZER_DIR)
        target = load_tokenizer(folder / TARGET_TOKENIZER_DIR)
    else:
        source = target = load_tokenizer(folder)
    return model.eval(), source, target


class TeacherForcingSchedule:
    """A Trainer callback setting the Seq2Seq model's teacher forcing ratio at every step
    (scheduled sampling); the ratio in use is logged as ``teacher_forcing``."""

    def __init__(self, settings: dict[str, Any], total_steps: int) -> None:
        self.settings, self.total = settings, total_steps

    def ratio(self, step: int) -> float:
        from wxb.models.seq2seq import scheduled_ratio

        s = self.settings
        return scheduled_ratio(s["schedule"], step, self.total, start=s["start"], end=s["end"],
                               k=s["k"])

    def on_step_end(self, trainer: Trainer) -> None:
        trainer.model.teacher_forcing_ratio = self.ratio(trainer.state.global_step)

    def on_log(self, trainer: Trainer, logs: dict[str, float]) -> None:
        logs["teacher_forcing"] = round(trainer.model.teacher_forcing_ratio, 4)


def _heatmaps(model: PreTrainedModel, source: Tokenizer, target: Tokenizer,
              pairs: list[tuple[str, str]], gen: dict[str, Any], output_dir: Path,
              name: str | None) -> list[Path]:
    """Attention heatmaps of the first test sentences' translations."""
    paths = []
    for i, (text, _) in enumerate(pairs[:HEATMAPS]):
        path = output_dir / f"attention_{i}.png"
        plot_translation_attention(model, source, target, text, path, gen,
                                   title=f"{name or 'translation'}: test sentence {i}")
        paths.append(path)
    return paths


def plot_translation_attention(model: PreTrainedModel, source: Tokenizer, target: Tokenizer,
                               text: str, path: str | Path, gen: dict[str, Any], *,
                               title: str = "Attention") -> tuple[str, Path]:
    """Translate ``text`` and draw which source tokens each output token attended to;
    returns the translation and the PNG's path."""
    from wxb.generation import generate
    from wxb.viz import plot_attention

    if getattr(model, "attention", True) is None:
        raise ConfigError("this model has no attention (attention: none): nothing to draw")
    source_ids = source.encode(text)
    if not source_ids:
        raise DataError("the text to translate is empty")
    with torch.no_grad():
        output = generate(model, torch.tensor([source_ids]), **gen)[0].tolist()
    if target.eos_token_id in output[1:]:  # what follows the eos is padding
        output = output[:output.index(target.eos_token_id, 1) + 1]
    weights = cross_attention(model, source_ids, output)
    translation = target.decode(output[1:], skip_special_tokens=True).strip()
    plot_attention(weights, token_labels(source, source_ids), token_labels(target, output[1:]),
                   path, title=title)
    return translation, Path(path)


def token_labels(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token as text, for a plot's axis (a byte-level BPE token's own text, not its
    byte symbols)."""
    return [tokenizer.decode([i]).strip() or tokenizer.convert_ids_to_tokens(i) for i in ids]
