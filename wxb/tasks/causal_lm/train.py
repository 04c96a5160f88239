"""Pretraining a causal language model from text files, as a function of one config.

    corpus -> tokenizer -> token file (memmap) -> train / validation windows
           -> GPT-2 or LLaMA sized to the tokenizer -> Trainer -> model/ -> samples -> result.json

The config (a recipe with ``task: causal-lm`` is one) has these sections, each optional but
``data.path``::

    data:      {path: input.txt | [a.txt, b.txt], block_size: 128, stride: 1,
                validation_fraction: 0.1,
                documents: [{path: reviews.csv, column: review}, ...]}  # rows of tables too
    tokenizer: {kind: char | bpe, vocab_size: 4096, min_frequency: 1,
                added_tokens: ["<|im_start|>", "<|im_end|>"],  # kept whole, e.g. chat markers
                chat_template: chatml | llama3 | <a Jinja template>}  or  {path: DIR}
    model:     {type: gpt2 | llama, <fields of that family's config>}
    training:  {<TrainingArguments fields>}
    samples:   {prompts: ["ROMEO:"], max_new_tokens: 100, stop_token: null,
                strategies: {greedy: {}, top_k: {do_sample: true, top_k: 10}, ...}}
    sample_metrics: [regular_poem_share]   # scores of the samples (causal_lm.samples)
    max_time_seconds: 600        # stop training after this much wall time

``vocab_size``, the context length (``n_positions`` / ``max_position_embeddings``, from
``block_size``) and the special token ids come from the tokenizer and the data. The run folder
(``training.output_dir``) receives the Trainer's checkpoints, ``log.jsonl`` and
``loss_curve.png``, the tokenizer and token file, ``model/`` (config.json, model.safetensors and
the tokenizer's files: what ``wxb.from_pretrained`` and ``wxb.load_tokenizer`` read), and
``result.json``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from wxb.config import check_known_keys
from wxb.errors import ConfigError
from wxb.models.registry import config_class, model_class
from wxb.tasks.causal_lm.samples import SAMPLE_METRICS, SamplesSection, check_sample_metrics
from wxb.tasks.run import Run
from wxb.tasks.sections import Section
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.chat import BUILTIN_TEMPLATES
from wxb.tokenizers.load import load_tokenizer, tokenizer_class

TRAINING_DEFAULTS = {"output_dir": "runs/pretrain", "max_steps": 1000, "learning_rate": 1e-3,
                     "lr_scheduler_type": "cosine", "warmup_ratio": 0.05, "weight_decay": 0.1,
                     "adam_beta2": 0.99, "per_device_train_batch_size": 32,
                     "eval_strategy": "steps", "eval_steps": 200, "logging_steps": 50}
# Where each family keeps its context length.
CONTEXT_FIELDS = {"gpt2": "n_positions", "llama": "max_position_embeddings"}
METRICS = ("eval_loss", "perplexity")


@dataclasses.dataclass
class DataSection(Section):
    """Text files (``path``) and the rows of tables (``documents``), cut into windows."""

    path: str | list[str] = dataclasses.field(default_factory=list)
    documents: list[dict] = dataclasses.field(default_factory=list)
    block_size: int = 128
    stride: int | None = None
    validation_fraction: float = 0.1

    def check(self) -> None:
        if not self.path and not self.documents:
            raise ConfigError("data.path is required: the UTF-8 text file(s) to pretrain on, "
                              "e.g. data: {path: input.txt}, or data.documents: the rows of "
                              "tables, e.g. [{path: reviews.csv, column: review}]")
        self.path = [str(p) for p in (self.path if isinstance(self.path, list)
                                      else [self.path])]
        if not all({"path", "column"} <= set(d) for d in self.documents):
            raise ConfigError("data.documents must be a list of tables, each {path, column} "
                              "(and columns: [...] for a table without a header row)")


@dataclasses.dataclass
class TokenizerSection(Section):
    """A tokenizer folder (``path``), or the settings of one trained on the corpus."""

    path: str | None = None
    kind: Literal["char", "bpe"] = "char"
    vocab_size: int | None = None
    min_frequency: int = 1
    added_tokens: list[str] = dataclasses.field(default_factory=list)
    chat_template: str | None = None

    def check(self) -> None:
        if self.path is not None and set(self.keys) - {"path"}:
            raise ConfigError(f"unknown tokenizer field {sorted(set(self.keys) - {'path'})[0]!r}"
                              " beside path; a tokenizer loaded from a folder takes path only")
        if self.kind == "bpe" and self.vocab_size is None:
            raise ConfigError("tokenizer.kind bpe needs tokenizer.vocab_size, e.g. 4096")
        if not all(self.added_tokens):
            raise ConfigError("tokenizer.added_tokens holds an empty string; every token needs "
                              "text")

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path} if self.path is not None else super().to_dict()

    def build(self, texts: list[str], output_dir: Path, resume: bool | str) -> Tokenizer:
        """The tokenizer a resumed run saved, the one ``path`` names, or one trained on
        ``texts`` (whole texts, line breaks included: a character model must learn "\\n")."""
        if resume and (output_dir / "tokenizer").is_dir():
            return load_tokenizer(output_dir / "tokenizer")
        if self.path is not None:
            return load_tokenizer(self.path)
        cls = tokenizer_class(self.kind)
        options = {"min_frequency": self.min_frequency, "added_tokens": self.added_tokens}
        if self.kind == "char":
            tokenizer = cls.train(texts, max_size=self.vocab_size, **options)
        else:
            tokenizer = cls.train(texts, self.vocab_size, **options)
        if self.chat_template is not None:
            tokenizer.chat_template = BUILTIN_TEMPLATES.get(self.chat_template,
                                                            self.chat_template)
        return tokenizer


@dataclasses.dataclass
class ModelSection(Section):
    """``type`` (gpt2 or llama); the other keys are fields of the family's config."""

    extra_fields = True
    type: str = "gpt2"

    def check(self) -> None:
        if self.type not in CONTEXT_FIELDS:
            raise ConfigError(f"model.type {self.type!r} is not a causal language model; "
                              f"choose one of: {', '.join(CONTEXT_FIELDS)}")
        check_known_keys(config_class(self.type), self.extra, f"{self.type} config field")

    def config(self, tokenizer: Tokenizer, block_size: int) -> Any:
        """The family's config, sized to the tokenizer and the context length."""
        given = {"vocab_size": tokenizer.vocab_size, CONTEXT_FIELDS[self.type]: block_size,
                 # The family defaults (GPT-2's 50256, LLaMA's 1 and 2) would name ids outside
                 # a small vocabulary; the tokenizer's own special tokens (or None) are right.
                 "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                 "pad_token_id": tokenizer.pad_token_id}
        config = config_class(self.type).from_dict({**given, **self.extra}, strict=True)
        if config.vocab_size < tokenizer.vocab_size:
            raise ConfigError(f"model.vocab_size {config.vocab_size} is smaller than the "
                              f"tokenizer's {tokenizer.vocab_size}; leave it out to use the "
                              "latter")
        if config.max_position_embeddings < block_size:
            raise ConfigError(f"the model's context ({config.max_position_embeddings}) is "
                              f"shorter than data.block_size {block_size}")
        return config


SECTIONS = {"data": DataSection, "tokenizer": TokenizerSection, "model": ModelSection,
            "samples": SamplesSection}


def pretrain(config: dict[str, Any], *, resume: bool | str = False,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Pretrain the configured causal LM and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder, reusing the run's saved tokenizer. ``log`` receives one line per stage.
    """
    from wxb.data.text import read_column
    from wxb.data.tokens import TokenWindows, encode_to_file, read_tokens, split_tokens
    from wxb.tokenizers.corpus import read_corpus
    from wxb.train.checkpoint import load_weights
    from wxb.train.seed import set_seed

    run = Run("causal-lm", config, SECTIONS, log=log, extra_keys=("sample_metrics",))
    data, model_section, samples = run["data"], run["model"], run["samples"]
    metric_names = check_sample_metrics(run.config.get("sample_metrics"))
    run.expect((*METRICS, *metric_names))
    args = run.arguments(TRAINING_DEFAULTS)
    output_dir = run.output_dir

    texts = [read_corpus(p) for p in data.path]
    if data.documents:  # one row per line, as the model will read them
        texts.append("\n".join(read_column(data.documents)) + "\n")
    tokenizer = run["tokenizer"].build(texts, output_dir, resume)
    tokenizer.save(output_dir / "tokenizer")
    run.log(f"tokenizer: {tokenizer.kind}, {tokenizer.vocab_size:,} tokens")
    tokens = read_tokens(encode_to_file(texts, tokenizer, output_dir / "data" / "tokens.bin"))
    train_tokens, val_tokens = split_tokens(tokens, data.validation_fraction)
    block = data.block_size
    train_set = TokenWindows(train_tokens, block, data.stride, name="training split")
    val_set = TokenWindows(val_tokens, block, name="validation split")
    run.log(f"corpus: {sum(map(len, texts)):,} characters -> {len(tokens):,} tokens "
            f"({len(train_tokens):,} train, {len(val_tokens):,} validation)")

    model_config = model_section.config(tokenizer, block)
    samples.fit(tokenizer, model_config.max_position_embeddings)
    set_seed(args.seed)  # the initial weights depend on the seed alone
    model = model_class(model_section.type)(model_config)
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters")

    trainer = run.trainer(model, args, train_dataset=train_set, eval_dataset=val_set)
    output = trainer.train(resume_from_checkpoint=resume)
    metrics = trainer.evaluate()
    best = trainer.state.best_checkpoint
    if best is not None and trainer.state.best_metric < metrics["eval_loss"]:
        load_weights(model, output_dir / best)  # training ended past its best point
        metrics = trainer.evaluate()
    metrics["perplexity"] = math.exp(metrics["eval_loss"])
    model_dir = model.save_pretrained(output_dir / "model")
    tokenizer.save(model_dir)

    run.log("sampling")
    model.eval()
    drawn = samples.draw(model, tokenizer)
    continuations = [s["continuation"] for s in drawn]
    metrics.update({name: SAMPLE_METRICS[name](continuations) for name in metric_names})

    runtime = output.metrics["train_runtime"]
    # Counted over this call's steps only (a resumed run did the others earlier).
    tokens_seen = (output.metrics["train_steps"] * args.per_device_train_batch_size
                   * args.gradient_accumulation_steps * block)
    fields = {k: v for k, v in model_config.to_dict().items() if k != "model_type"}
    return run.finish(
        metrics, trainer=trainer, output=output, model_dir=model_dir,
        tokens_per_second=round(tokens_seen / runtime, 1) if runtime else None,
        tokens={"train": len(train_tokens), "validation": len(val_tokens),
                "vocab_size": tokenizer.vocab_size},
        best_checkpoint=best, samples=drawn,
        config=run.resolved(model={"type": model_section.type, **fields},
                            sample_metrics=metric_names))
