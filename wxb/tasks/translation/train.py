"""Training a translation model, as a function of one config (task ``translation``).

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
    generation: {num_beams: 1, max_new_tokens: 64, length_penalty: 1.0, batch_size: 64}
    training: {<TrainingArguments fields>}
    max_time_seconds: 1500

The saved folder (``wxb.tasks.encoder_decoder``) holds the model and its tokenizers;
``wxb translate --model DIR "text"`` and ``wxb.pipeline("translation", DIR)`` use it. The
model evaluated is the last one, as in text classification.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wxb.errors import ConfigError
from wxb.tasks.data import Pairs, PairTables
from wxb.tasks.encoder_decoder import (
    SCORED_SPLITS,
    GenerationSection,
    ModelSection,
    headline,
    model_and_tokenizers,
    save_encoder_decoder,
    score_splits,
)
from wxb.tasks.run import Run
from wxb.tasks.sections import Section, choose
from wxb.tasks.translation.attention import plot_translation_attention

if TYPE_CHECKING:
    from wxb.models.base import PreTrainedModel
    from wxb.tokenizers.base import Tokenizer
    from wxb.train.trainer import Trainer

TRAINING_DEFAULTS = {"output_dir": "runs/translate", "num_train_epochs": 10,
                     "learning_rate": 1e-3, "per_device_train_batch_size": 64,
                     "per_device_eval_batch_size": 128, "eval_strategy": "epoch",
                     "metric_for_best_model": "loss", "max_grad_norm": 1.0}
HEATMAPS = 3  # attention heatmaps drawn, of the first test sentences
SAMPLES = 20  # translations kept in result.json
METRICS = tuple(f"{prefix}_{m}" for _, prefix in SCORED_SPLITS
                for m in ("bleu", "bleu_all_references", "chrf", "loss"))


@dataclasses.dataclass
class DataSection(PairTables):
    """Sentence pairs: the source and target columns, and the target's language (how BLEU
    tokenizes it)."""

    source_column: str = "source"
    target_column: str = "target"
    target_language: str | None = None

    def columns(self) -> tuple[str, str]:
        return self.source_column, self.target_column


@dataclasses.dataclass
class TeacherForcingSection(Section):
    """Scheduled sampling for the recurrent Seq2Seq: the share of true previous tokens the
    decoder reads, from ``start`` towards ``end`` over the run (Bengio et al., 2015)."""

    schedule: str = "constant"
    start: float = 1.0
    end: float = 0.5
    k: float = 10.0

    def check(self) -> None:
        from wxb.models.seq2seq import SCHEDULES

        choose("teacher_forcing.schedule", self.schedule, tuple(SCHEDULES))

    @property
    def active(self) -> bool:
        """Whether the decoder ever reads its own guesses (anything but always the truth)."""
        return self.schedule != "constant" or self.start != 1.0


SECTIONS = {"model": ModelSection, "data": DataSection, "teacher_forcing": TeacherForcingSection,
            "generation": GenerationSection}


def train_translation(config: dict[str, Any], *, resume: bool | str = False,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured translation model and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given folder.
    """
    from wxb.data.pairs import Seq2SeqCollator, encode_pairs
    from wxb.metrics.translation import bleu_tokenize

    run = Run("translation", config, SECTIONS, log=log)
    model_section, data, teacher = run["model"], run["data"], run["teacher_forcing"]
    run.expect(METRICS)
    args = run.arguments(TRAINING_DEFAULTS)

    splits, skipped = data.read()
    run.log(f"data: {', '.join(f'{n} {len(p):,}' for n, p in splits.items())} pairs"
            + (f"; {skipped:,} rows with an empty side skipped" if skipped else ""))
    model, source_tok, target_tok = model_and_tokenizers(model_section, splits["train"],
                                                         seed=args.seed)
    encoded = {name: encode_pairs(pairs, source_tok, target_tok,
                                  max_source_length=data.max_source_length,
                                  max_target_length=data.max_target_length)
               for name, pairs in splits.items()}
    truncated = {name: e.truncated for name, e in encoded.items()}
    if any(n for counts in truncated.values() for n in counts.values()):
        run.log("truncated to max_source_length / max_target_length: " + "; ".join(
            f"{name} {c['source']} sources, {c['target']} targets"
            for name, c in truncated.items()))
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters; "
            f"vocabularies {source_tok.vocab_size:,} (source), {target_tok.vocab_size:,} "
            "(target)")

    callbacks: list[Any] = []
    if teacher.active:
        if not hasattr(model, "teacher_forcing_ratio"):
            raise ConfigError(f"teacher_forcing applies to the recurrent seq2seq model; "
                              f"{type(model).__name__} always reads the true previous tokens")
        per_epoch = math.ceil(len(encoded["train"]) / (args.per_device_train_batch_size
                                                       * args.gradient_accumulation_steps))
        total = args.max_steps if args.max_steps > 0 else math.ceil(
            args.num_train_epochs * per_epoch)
        callbacks.append(TeacherForcingSchedule(teacher, total))
    trainer = run.trainer(model, args, train_dataset=encoded["train"],
                          eval_dataset=encoded.get("validation"),
                          data_collator=Seq2SeqCollator(source_tok.pad_token_id),
                          callbacks=callbacks)
    output = trainer.train(resume_from_checkpoint=resume)

    metrics, samples = score_splits(trainer, encoded, splits, lambda pairs, name: _score(
        run, model, source_tok, target_tok, pairs, name))
    model_dir = save_encoder_decoder(model, source_tok, target_tok, run.output_dir / "model")
    heatmaps = []
    if "test" in splits and getattr(model, "attention", True) is not None:
        heatmaps = [str(p) for p in _heatmaps(model, source_tok, target_tok, splits["test"],
                                               run["generation"].generate_kwargs(),
                                               run.output_dir, run.config.get("name"))]
    # Without a goal, the headline is the BLEU of the last split scored (test, if given).
    return run.finish(metrics, trainer=trainer, output=output, model_dir=model_dir,
                      metric=headline("bleu", splits),
                      plots={Path(p).stem: p for p in heatmaps},
                      examples={name: len(p) for name, p in splits.items()},
                      skipped_empty_pairs=skipped, truncated=truncated,
                      bleu_tokenize=bleu_tokenize(data.target_language), samples=samples,
                      attention_heatmaps=heatmaps)


def _score(run: Run, model: PreTrainedModel, source: Tokenizer, target: Tokenizer,
           pairs: Pairs, name: str) -> tuple[dict[str, float], list[dict[str, str]]]:
    """BLEU and chrF of the translations of ``pairs``' sources, and the first few of them."""
    from wxb.metrics.translation import corpus_bleu
    from wxb.tasks.encoder_decoder import decode_texts

    data, generation = run["data"], run["generation"]
    # Each distinct source is translated once; a source with several translations in the
    # corpus is also scored against all of them at once.
    references: dict[str, list[str]] = {}
    for text, reference in pairs:
        references.setdefault(text, []).append(reference)
    sources = list(references)
    translations = dict(zip(sources, decode_texts(
        model, source, target, sources, batch_size=generation.batch_size,
        max_source_length=data.max_source_length, **generation.generate_kwargs()),
        strict=True))
    scores = corpus_bleu([translations[s] for s, _ in pairs], [t for _, t in pairs],
                         language=data.target_language)
    every = corpus_bleu([translations[s] for s in sources], [references[s] for s in sources],
                        language=data.target_language)["bleu"]
    run.log(f"{name}: BLEU {scores['bleu']:.2f}, chrF {scores['chrf']:.2f} ({len(pairs):,} "
            f"pairs); BLEU {every:.2f} against all references of the {len(sources):,} "
            "distinct sources")
    samples = [{"source": s, "reference": t, "translation": translations[s]}
               for s, t in pairs[:SAMPLES]]
    return {"bleu": scores["bleu"], "chrf": scores["chrf"], "bleu_all_references": every}, samples


class TeacherForcingSchedule:
    """A Trainer callback setting the Seq2Seq model's teacher forcing ratio at every step
    (scheduled sampling); the ratio in use is logged as ``teacher_forcing``."""

    def __init__(self, settings: TeacherForcingSection, total_steps: int) -> None:
        self.settings, self.total = settings, total_steps

    def ratio(self, step: int) -> float:
        from wxb.models.seq2seq import scheduled_ratio

        s = self.settings
        return scheduled_ratio(s.schedule, step, self.total, start=s.start, end=s.end, k=s.k)

    def on_step_end(self, trainer: Trainer) -> None:
        trainer.model.teacher_forcing_ratio = self.ratio(trainer.state.global_step)

    def on_log(self, trainer: Trainer, logs: dict[str, float]) -> None:
        logs["teacher_forcing"] = round(trainer.model.teacher_forcing_ratio, 4)


def _heatmaps(model: PreTrainedModel, source: Tokenizer, target: Tokenizer, pairs: Pairs,
              gen: dict[str, Any], output_dir: Path, name: str | None) -> list[Path]:
    """Attention heatmaps of the first test sentences' translations."""
    paths = []
    for i, (text, _) in enumerate(pairs[:HEATMAPS]):
        path = output_dir / f"attention_{i}.png"
        plot_translation_attention(model, source, target, text, path, gen,
                                   title=f"{name or 'translation'}: test sentence {i}")
        paths.append(path)
    return paths
