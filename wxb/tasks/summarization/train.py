"""Training a summarizer, as a function of one config (task ``summarization``).

    table of documents and summaries -> split by document (no test document is trained on)
      -> the source prefix ("summarize: ") -> tokenizer(s) trained on the training side, or
      a pretrained folder's -> T5, the Transformer or Seq2Seq -> Trainer (validation loss each
      epoch) -> summaries of the validation and test documents (beams, length, repetition and
      n-gram penalties) -> ROUGE-1/2/L/Lsum F1 (rouge-score) beside the lead-n baseline
      -> model/ + result.json

The config (a recipe with ``task: summarization`` is one)::

    model:    the translation task's model section: {type: t5 | transformer | seq2seq,
              <fields of its config>, tokenizer: {kind: bpe, ...} or a folder (T5 needs one
              vocabulary for both sides), or source_tokenizer + target_tokenizer}
              or {pretrained: FOLDER}: an encoder-decoder (T5, Marian) fine-tuned, or a
              causal LM (folder or GGUF file) reading each document in ``data.prompt``
    data:     {path: FILE, validation_size: 0.05, test_size: 0.1, split_seed: 0}
              or {train: FILE, validation: FILE, test: FILE}
              + document_column: document, summary_column: summary, fieldnames,
                source_prefix: "", max_source_length: 512, max_target_length: 64,
                language: en (zh: ROUGE over characters), lead: 3,
                score_against_input: false (also score each summary against its document),
                prompt: "Summarize the following text.\n\n{document}" (decoder-only models)
    generation: {num_beams: 1, max_new_tokens: 64, length_penalty: 1.0,
                 repetition_penalty: 1.0, no_repeat_ngram_size: 0, batch_size: 16}
    training: {<TrainingArguments fields>}
    zero_shot: false   (true: score model.pretrained as it is, without training it)
    max_time_seconds: 1800

Rows with an empty document or summary are skipped and counted (``skipped_empty_pairs``);
documents and summaries longer than the limits are cut and counted (``truncated``).
``score_against_input`` reproduces a measure some tutorials report by mistake: ROUGE of the
summaries against the documents they summarize (copying the input scores high there); its
metrics end in ``_vs_input`` and are never the headline. The saved folder holds the model,
its tokenizer(s) and ``summarization.json``; ``wxb summarize --model DIR`` and
``wxb.pipeline("summarize", DIR)`` use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wxb.config import coerce
from wxb.errors import ConfigError
from wxb.metrics.summarization import ROUGE_TYPES
from wxb.tasks.data import Pairs, PairTables
from wxb.tasks.encoder_decoder import (
    SCORED_SPLITS,
    ModelSection,
    headline,
    model_and_tokenizers,
    score_splits,
)
from wxb.tasks.encoder_decoder import GenerationSection as DecodingSection
from wxb.tasks.run import Run
from wxb.tasks.sections import at_least
from wxb.tasks.summarization.decoder import DEFAULT_PROMPT

TRAINING_DEFAULTS = {"output_dir": "runs/summarize", "num_train_epochs": 10,
                     "learning_rate": 1e-3, "per_device_train_batch_size": 16,
                     "per_device_eval_batch_size": 32, "eval_strategy": "epoch",
                     "metric_for_best_model": "loss", "max_grad_norm": 1.0}
SAMPLES = 20  # summaries kept in result.json
SAMPLE_CHARS = 600  # of each sample's document
# rougeL_over_lead (ROUGE-L minus the lead baseline's) is the goal "beat lead-n" as a number.
METRICS = tuple(f"{prefix}_{kind}" for _, prefix in SCORED_SPLITS
                for kind in ("loss", *ROUGE_TYPES, *(f"lead_{r}" for r in ROUGE_TYPES),
                             "rougeL_over_lead"))


@dataclasses.dataclass
class DataSection(PairTables):
    """Documents and their reference summaries; the prefix put before each document, the
    language (how ROUGE counts tokens) and how many sentences the lead baseline takes."""

    document_column: str = "document"
    summary_column: str = "summary"
    max_source_length: int = 512
    max_target_length: int = 64
    source_prefix: str = ""
    prompt: str = DEFAULT_PROMPT
    language: str = "en"
    lead: int = 3
    score_against_input: bool = False

    def columns(self) -> tuple[str, str]:
        return self.document_column, self.summary_column

    def check(self) -> None:
        super().check()
        at_least("data.lead", self.lead, 1)


@dataclasses.dataclass
class GenerationSection(DecodingSection):
    """How summaries are generated: translation's settings, plus the penalties summarizers
    use against repeating themselves."""

    max_new_tokens: int = 64
    batch_size: int = 16
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    def check(self) -> None:
        super().check()
        if self.repetition_penalty <= 0:
            raise ConfigError("generation.repetition_penalty must be positive (1.0: none), "
                              f"got {self.repetition_penalty}")
        at_least("generation.no_repeat_ngram_size", self.no_repeat_ngram_size, 0)


SECTIONS = {"model": ModelSection, "data": DataSection, "generation": GenerationSection}
EXTRA_KEYS = ("zero_shot",)  # top-level keys besides the sections


def train_summarization(config: dict[str, Any], *, resume: bool | str = False,
                        log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured summarizer and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given folder.
    """
    from wxb.metrics.summarization import rouge_tokenization
    from wxb.tasks.summarization.decoder import holds_causal_lm
    from wxb.tasks.summarization.model import save_settings

    run = Run("summarization", config, SECTIONS, log=log, extra_keys=EXTRA_KEYS)
    data, generation = run["data"], run["generation"]
    run.expect(METRICS + tuple(f"{m}_vs_input" for m in METRICS if m.endswith(ROUGE_TYPES)))
    args = run.arguments(TRAINING_DEFAULTS)
    pretrained = run["model"].pretrained
    zero_shot = coerce("zero_shot", run.config.get("zero_shot", False), bool)
    if zero_shot and pretrained is None:
        raise ConfigError("zero_shot scores a pretrained model as it is; give model.pretrained")

    splits, skipped = data.read()
    run.log(f"data: {', '.join(f'{n} {len(p):,}' for n, p in splits.items())} documents"
            + (f"; {skipped:,} rows with an empty document or summary skipped"
               if skipped else ""))
    if pretrained is not None and holds_causal_lm(pretrained):
        model, save, summarize, encoded, truncated, collator = _decoder_only(run, splits)
    else:
        model, save, summarize, encoded, truncated, collator = _encoder_decoder(run, splits)
    run.log("truncated to max_source_length / max_target_length: " + "; ".join(
        f"{name} {c['source']} documents, {c['target']} summaries"
        for name, c in truncated.items()))

    trainer = run.trainer(model, args, train_dataset=encoded["train"],
                          eval_dataset=encoded.get("validation"), data_collator=collator)
    # zero_shot: the pretrained model is scored as it is, with no training step.
    output = None if zero_shot else trainer.train(resume_from_checkpoint=resume)

    metrics, samples = score_splits(trainer, encoded, splits,
                                    lambda pairs, name: _score(run, summarize, pairs, name))
    model_dir = save(run.output_dir / "model")
    save_settings(model_dir, prefix=data.source_prefix, prompt=data.prompt,
                  max_source_length=data.max_source_length, language=data.language,
                  generation=generation.generate_kwargs())
    return run.finish(metrics, trainer=trainer, output=output, model_dir=model_dir,
                      metric=headline("rougeL", splits),
                      examples={name: len(p) for name, p in splits.items()},
                      skipped_empty_pairs=skipped, truncated=truncated,
                      rouge_tokens=rouge_tokenization(data.language),
                      lead_baseline=f"the first {data.lead} sentences of each document",
                      samples=samples)


def _encoder_decoder(run: Run, splits: dict[str, Pairs]) -> tuple[Any, ...]:
    """T5, the Transformer or Seq2Seq (new, or a pretrained folder) with its tokenizer(s),
    how it saves and summarizes, the encoded splits, what was cut, its batch collator."""
    from wxb.data.pairs import Seq2SeqCollator, encode_pairs
    from wxb.tasks.encoder_decoder import save_encoder_decoder
    from wxb.tasks.summarization.model import summarize_texts

    data, generation = run["data"], run["generation"]
    prefixed = {name: [(data.source_prefix + d, s) for d, s in pairs]
                for name, pairs in splits.items()}
    model, source, target = model_and_tokenizers(run["model"], prefixed["train"],
                                                 seed=run.args.seed)
    encoded = {name: encode_pairs(pairs, source, target,
                                  max_source_length=data.max_source_length,
                                  max_target_length=data.max_target_length)
               for name, pairs in prefixed.items()}
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters; "
            f"vocabularies {source.vocab_size:,} (source), {target.vocab_size:,} (target)")

    def summarize(documents: list[str]) -> list[str]:
        return summarize_texts(model, source, target, documents, prefix=data.source_prefix,
                               batch_size=generation.batch_size,
                               max_source_length=data.max_source_length,
                               **generation.generate_kwargs())

    return (model, lambda folder: save_encoder_decoder(model, source, target, folder),
            summarize, encoded, {name: e.truncated for name, e in encoded.items()},
            Seq2SeqCollator(source.pad_token_id))


def _decoder_only(run: Run, splits: dict[str, Pairs]) -> tuple[Any, ...]:
    """A pretrained causal LM that reads each document in ``data.prompt`` and writes the
    summary after it (see ``decoder``); the same tuple as ``_encoder_decoder``."""
    from wxb.data.text import PaddingCollator
    from wxb.tasks.models import load_chat_model, pad_id
    from wxb.tasks.summarization.decoder import (
        check_prompt,
        encode_examples,
        summarize_with_decoder,
    )

    data, generation = run["data"], run["generation"]
    check_prompt(data.prompt)
    # A chat model's end of turn becomes an eos, so its summary ends with its turn.
    model, tokenizer = load_chat_model(run["model"].pretrained, require_template=False)
    encoded, truncated = {}, {}
    for name, pairs in splits.items():
        encoded[name], truncated[name] = encode_examples(
            pairs, tokenizer, prompt=data.prompt, max_source_length=data.max_source_length,
            max_target_length=data.max_target_length)
    run.log(f"model: {type(model).__name__} (decoder only), {model.num_parameters():,} "
            f"parameters; the document goes into the prompt {data.prompt!r}")

    def save(folder: Path) -> Path:
        model_dir = model.save_pretrained(folder)
        tokenizer.save(model_dir)
        return model_dir

    def summarize(documents: list[str]) -> list[str]:
        return summarize_with_decoder(model, tokenizer, documents, prompt=data.prompt,
                                      batch_size=generation.batch_size,
                                      max_source_length=data.max_source_length,
                                      **generation.generate_kwargs())

    return model, save, summarize, encoded, truncated, PaddingCollator(pad_id(tokenizer))


def _score(run: Run, summarize: Callable[[list[str]], list[str]], pairs: Pairs, name: str
           ) -> tuple[dict[str, float], list[dict[str, str]]]:
    """ROUGE of the summaries of ``pairs``' documents and of the lead baseline (against the
    references, and against the documents with ``score_against_input``), and the first few
    summaries."""
    from wxb.metrics.summarization import lead, rouge

    data = run["data"]
    documents, references = [d for d, _ in pairs], [s for _, s in pairs]
    summaries = summarize(documents)
    leads = [lead(d, data.lead) for d in documents]
    scores = rouge(summaries, references, language=data.language)
    scores.update({f"lead_{k}": v for k, v in
                   rouge(leads, references, language=data.language).items()})
    scores["rougeL_over_lead"] = scores["rougeL"] - scores["lead_rougeL"]
    if data.score_against_input:
        for label, texts in (("", summaries), ("lead_", leads)):
            scores.update({f"{label}{k}_vs_input": v for k, v in
                           rouge(texts, documents, language=data.language).items()})
    run.log(f"{name}: ROUGE-1 {scores['rouge1']:.2f}, ROUGE-2 {scores['rouge2']:.2f}, "
            f"ROUGE-L {scores['rougeL']:.2f} ({len(pairs):,} documents); lead-{data.lead} "
            f"ROUGE-L {scores['lead_rougeL']:.2f}")
    samples = [{"document": d[:SAMPLE_CHARS], "reference": s, "summary": summary,
                "lead": first}
               for (d, s), summary, first in zip(pairs[:SAMPLES], summaries, leads,
                                                 strict=False)]
    return scores, samples
