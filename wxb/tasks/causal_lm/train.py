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
    max_time_seconds: 600        # stop training after this much wall time

``vocab_size``, the context length (``n_positions`` / ``max_position_embeddings``, from
``block_size``) and the special token ids come from the tokenizer and the data. The run folder
(``training.output_dir``) receives the Trainer's checkpoints, ``log.jsonl`` and
``loss_curve.png``, the tokenizer and token file, ``model/`` (config.json, model.safetensors and
the tokenizer's files: what ``wxb.from_pretrained`` and ``wxb.load_tokenizer`` read), and
``result.json``.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from wxb.config import check_known_keys, check_section_keys, check_strings, coerce
from wxb.data.text import read_column
from wxb.data.tokens import TokenWindows, encode_to_file, read_tokens, split_tokens
from wxb.errors import ConfigError
from wxb.models.registry import config_class, model_class
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.chat import BUILTIN_TEMPLATES
from wxb.tokenizers.corpus import read_corpus
from wxb.tokenizers.load import load_tokenizer, tokenizer_class
from wxb.train.arguments import TrainingArguments
from wxb.train.checkpoint import load_weights
from wxb.train.from_config import (
    check_expected,
    config_sections,
    result_config,
    write_result,
)
from wxb.train.seed import set_seed
from wxb.train.trainer import Trainer

SECTIONS = ("data", "tokenizer", "model", "training", "samples")
OTHER_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
MODEL_TYPES = ("gpt2", "llama")
DATA_DEFAULTS = {"path": [], "documents": [], "block_size": 128, "stride": None,
                 "validation_fraction": 0.1}
TOKENIZER_DEFAULTS = {"kind": "char", "vocab_size": None, "min_frequency": 1,
                      "added_tokens": [], "chat_template": None}
TOKENIZER_KINDS = ("char", "bpe")
SAMPLES_DEFAULTS = {
    "prompts": ["\n"], "max_new_tokens": 100, "stop_token": None, "seed": 0,
    "strategies": {"greedy": {}, "top_k": {"do_sample": True, "top_k": 10},
                   "top_p": {"do_sample": True, "top_p": 0.9}},
}
TRAINING_DEFAULTS = {"output_dir": "runs/pretrain", "max_steps": 1000, "learning_rate": 1e-3,
                     "lr_scheduler_type": "cosine", "warmup_ratio": 0.05, "weight_decay": 0.1,
                     "adam_beta2": 0.99, "per_device_train_batch_size": 32,
                     "eval_strategy": "steps", "eval_steps": 200, "logging_steps": 50}
# Where each family keeps its context length.
CONTEXT_FIELDS = {"gpt2": "n_positions", "llama": "max_position_embeddings"}
METRICS = ("eval_loss", "perplexity")

SampleMetric = Callable[[list[str]], float]


class TimeBudget:
    """A Trainer callback that stops training once ``seconds`` of wall time have passed.

    The clock starts when the callback is made, so make it just before ``trainer.train()``.
    The step in flight finishes, and the Trainer saves its last checkpoint as on any stop.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()
        self.stopped = False

    def on_step_end(self, trainer: Trainer) -> None:
        if time.perf_counter() - self.start >= self.seconds:
            self.stopped = True
            trainer.stop()


def run_summary(task: str, metrics: dict[str, float], trainer: Trainer, output: Any,
                budget: TimeBudget | None, start: float) -> dict[str, Any]:
    """The fields every training pipeline's result.json opens with: the task, its metrics,
    how far and how long training went, the model's size and the loss curve's PNG."""
    curve = Path(trainer.args.output_dir) / "loss_curve.png"
    return {
        "task": task,
        "metrics": metrics,
        "steps": trainer.state.global_step,
        "epoch": trainer.state.epoch,
        "train_runtime_s": round(output.metrics["train_runtime"], 2),
        "stopped_by_time_budget": bool(budget and budget.stopped),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "num_parameters": trainer.model.num_parameters(),
        "trainable_parameters": trainer.model.num_parameters(trainable_only=True),
        "loss_curve": str(curve) if curve.is_file() else None,
    }


def pretrain(config: dict[str, Any], *, resume: bool | str = False,
             sample_metrics: Mapping[str, SampleMetric] | None = None,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Pretrain the configured causal LM and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder, reusing the run's saved tokenizer. ``sample_metrics`` maps a name to a
    function of the sampled continuations (e.g. the share of well-formed poems), reported next
    to ``eval_loss``. ``log`` receives one line per stage of the pipeline.
    """
    start = time.perf_counter()
    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    data, tok_section, model_section, training, samples = config_sections(
        config, SECTIONS, OTHER_KEYS)
    data = _check_data(data)
    tok_section = _check_tokenizer(tok_section)
    samples = _check_samples(samples)
    sample_metrics = dict(sample_metrics or {})
    expected = check_expected(config.get("expected"), (*METRICS, *sample_metrics))
    max_time = config.get("max_time_seconds")
    max_time = None if max_time is None else coerce("max_time_seconds", max_time, float)
    args = TrainingArguments.from_dict({**TRAINING_DEFAULTS, **training})
    output_dir = Path(args.output_dir)
    model_type = model_section.get("type", "gpt2")
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"model.type {model_type!r} is not a causal language model; "
                          f"choose one of: {', '.join(MODEL_TYPES)}")

    texts = [read_corpus(p) for p in data["path"]]
    if data["documents"]:  # one row per line, as the model will read them
        texts.append("\n".join(read_column(data["documents"])) + "\n")
    tokenizer = _tokenizer(tok_section, texts, output_dir, resume)
    tokenizer.save(output_dir / "tokenizer")
    log(f"tokenizer: {tokenizer.kind}, {tokenizer.vocab_size:,} tokens")
    tokens = read_tokens(encode_to_file(texts, tokenizer, output_dir / "data" / "tokens.bin"))
    train_tokens, val_tokens = split_tokens(tokens, data["validation_fraction"])
    block = data["block_size"]
    train_set = TokenWindows(train_tokens, block, data["stride"], name="training split")
    val_set = TokenWindows(val_tokens, block, name="validation split")
    log(f"corpus: {sum(map(len, texts)):,} characters -> {len(tokens):,} tokens "
        f"({len(train_tokens):,} train, {len(val_tokens):,} validation)")

    model_config = _model_config(model_type, model_section, tokenizer, block)
    samples = _prepare_samples(samples, tokenizer, model_config.max_position_embeddings)
    set_seed(args.seed)  # the initial weights depend on the seed alone
    model = model_class(model_type)(model_config)
    log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters")

    budget = TimeBudget(max_time) if max_time is not None else None
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=val_set,
                      callbacks=[budget] if budget else [])
    output = trainer.train(resume_from_checkpoint=resume)

    metrics = trainer.evaluate()
    best = trainer.state.best_checkpoint
    if best is not None and trainer.state.best_metric < metrics["eval_loss"]:
        load_weights(model, output_dir / best)  # training ended past its best point
        metrics = trainer.evaluate()
    metrics["perplexity"] = math.exp(metrics["eval_loss"])
    model_dir = model.save_pretrained(output_dir / "model")
    tokenizer.save(model_dir)

    log("sampling")
    model.eval()
    drawn = _sample(model, tokenizer, samples)
    texts_only = [s["continuation"] for s in drawn]
    metrics.update({name: fn(texts_only) for name, fn in sample_metrics.items()})

    runtime = output.metrics["train_runtime"]
    # Counted over this call's steps only (a resumed run did the others earlier).
    tokens_seen = (output.metrics["train_steps"] * args.per_device_train_batch_size
                   * args.gradient_accumulation_steps * block)
    result: dict[str, Any] = {
        **run_summary("causal-lm", metrics, trainer, output, budget, start),
        "tokens_per_second": round(tokens_seen / runtime, 1) if runtime else None,
        "tokens": {"train": len(train_tokens), "validation": len(val_tokens),
                   "vocab_size": tokenizer.vocab_size},
        "best_checkpoint": best,
        "model_dir": str(model_dir),
        "samples": drawn,
        "config": result_config(
            config, expected, data=data, tokenizer=tok_section,
            model={"type": model_type, **model_config.to_dict()}, training=args.to_dict(),
            samples=samples, max_time_seconds=max_time),
    }
    result["config"]["model"].pop("model_type")
    return write_result(result, expected, metrics, output_dir)


# ----------------------------------------------------------------------------- the sections


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("data", section, tuple(DATA_DEFAULTS))
    if not section.get("path") and not section.get("documents"):
        raise ConfigError("data.path is required: the UTF-8 text file(s) to pretrain on, "
                          "e.g. data: {path: input.txt}, or data.documents: the rows of "
                          "tables, e.g. [{path: reviews.csv, column: review}]")
    section = {**DATA_DEFAULTS, **section}
    paths = section["path"] if isinstance(section["path"], list) else [section["path"]]
    section["path"] = [str(p) for p in paths]
    documents = section["documents"]
    if not isinstance(documents, list) or not all(
            isinstance(d, dict) and {"path", "column"} <= set(d) for d in documents):
        raise ConfigError("data.documents must be a list of tables, each {path, column} "
                          "(and columns: [...] for a table without a header row)")
    section["block_size"] = coerce("data.block_size", section["block_size"], int)
    if section["stride"] is not None:
        section["stride"] = coerce("data.stride", section["stride"], int)
    section["validation_fraction"] = coerce("data.validation_fraction",
                                            section["validation_fraction"], float)
    return section


def _check_tokenizer(section: dict[str, Any]) -> dict[str, Any]:
    if "path" in section:
        check_section_keys("tokenizer", section, ("path",))
        return {"path": str(section["path"])}
    check_section_keys("tokenizer", section, tuple(TOKENIZER_DEFAULTS))
    section = {**TOKENIZER_DEFAULTS, **section}
    if section["kind"] not in TOKENIZER_KINDS:
        raise ConfigError(f"unknown tokenizer.kind {section['kind']!r}; train one of: "
                          f"{', '.join(TOKENIZER_KINDS)}, or give tokenizer.path to load one")
    if section["kind"] == "bpe" and section["vocab_size"] is None:
        raise ConfigError("tokenizer.kind bpe needs tokenizer.vocab_size, e.g. 4096")
    if section["vocab_size"] is not None:
        section["vocab_size"] = coerce("tokenizer.vocab_size", section["vocab_size"], int)
    section["min_frequency"] = coerce("tokenizer.min_frequency", section["min_frequency"], int)
    if not all(check_strings("tokenizer.added_tokens", section["added_tokens"])):
        raise ConfigError("tokenizer.added_tokens holds an empty string; every token needs text")
    return section


def _check_samples(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("samples", section, tuple(SAMPLES_DEFAULTS))
    section = {**SAMPLES_DEFAULTS, **section}
    check_strings("samples.prompts", section["prompts"])
    strategies = section["strategies"]
    if not isinstance(strategies, dict) or not all(
            isinstance(v, dict) for v in strategies.values()):
        raise ConfigError("samples.strategies must map a name to generate() settings, e.g. "
                          "{top_p: {do_sample: true, top_p: 0.9}}")
    section["max_new_tokens"] = coerce("samples.max_new_tokens", section["max_new_tokens"], int)
    section["seed"] = coerce("samples.seed", section["seed"], int)
    return section


# ----------------------------------------------------------------------------- the pieces


def _tokenizer(section: dict[str, Any], texts: list[str], output_dir: Path,
               resume: bool | str) -> Tokenizer:
    """The tokenizer a resumed run saved, the one ``path`` names, or one trained on ``texts``.

    Training sees whole texts, line breaks included: a character model must learn ``"\\n"``.
    """
    if resume and (output_dir / "tokenizer").is_dir():
        return load_tokenizer(output_dir / "tokenizer")
    if "path" in section:
        return load_tokenizer(section["path"])
    cls = tokenizer_class(section["kind"])
    options = {"min_frequency": section["min_frequency"],
               "added_tokens": section["added_tokens"]}
    if section["kind"] == "char":
        tokenizer = cls.train(texts, max_size=section["vocab_size"], **options)
    else:
        tokenizer = cls.train(texts, section["vocab_size"], **options)
    template = section["chat_template"]
    if template is not None:
        tokenizer.chat_template = BUILTIN_TEMPLATES.get(template, template)
    return tokenizer


def _model_config(model_type: str, section: dict[str, Any], tokenizer: Tokenizer,
                  block_size: int):
    """The family's config from ``section``, sized to the tokenizer and the context length."""
    config_cls = config_class(model_type)
    fields = {k: v for k, v in section.items() if k != "type"}
    check_known_keys(config_cls, fields, f"{model_type} config field")
    given = {"vocab_size": tokenizer.vocab_size, CONTEXT_FIELDS[model_type]: block_size,
             # The family defaults (GPT-2's 50256, LLaMA's 1 and 2) would name ids outside a
             # small vocabulary; the tokenizer's own special tokens (or None) are the right ones.
             "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
             "pad_token_id": tokenizer.pad_token_id}
    config = config_cls.from_dict({**given, **fields}, strict=True)
    if config.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size {config.vocab_size} is smaller than the "
                          f"tokenizer's {tokenizer.vocab_size}; leave it out to use the latter")
    if config.max_position_embeddings < block_size:
        raise ConfigError(f"the model's context ({config.max_position_embeddings}) is shorter "
                          f"than data.block_size {block_size}")
    return config


def _prepare_samples(section: dict[str, Any], tokenizer: Tokenizer,
                     context: int) -> dict[str, Any]:
    """Check, before any training, that every prompt and its continuation fit the context."""
    stop = section["stop_token"]
    if stop is not None and tokenizer.token_to_id(stop) is None:
        raise ConfigError(f"samples.stop_token {stop!r} is not one token of the tokenizer")
    longest = max((len(tokenizer.encode(p, add_special_tokens=False))
                   for p in section["prompts"]), default=0)
    if longest + section["max_new_tokens"] > context:
        raise ConfigError(f"samples: a prompt of {longest} tokens plus max_new_tokens "
                          f"{section['max_new_tokens']} exceeds the model's context of "
                          f"{context}; lower samples.max_new_tokens")
    return section


@torch.no_grad()
def _sample(model: torch.nn.Module, tokenizer: Tokenizer,
            section: dict[str, Any]) -> list[dict[str, Any]]:
    """Continue every prompt with every strategy; each row is cut at the stop token."""
    from wxb.generation import generate  # generation builds on the models; load it on use

    stop = section["stop_token"]
    stop_id = None if stop is None else tokenizer.token_to_id(stop)
    # The course's trick: never emit [PAD] or [UNK], which carry no text.
    banned = [i for i in (tokenizer.pad_token_id, tokenizer.unk_token_id)
              if i is not None and i != stop_id]
    drawn = []
    for strategy, settings in section["strategies"].items():
        for prompt in section["prompts"]:
            ids = tokenizer.encode(prompt, add_special_tokens=False)
            kwargs = {"max_new_tokens": section["max_new_tokens"], "seed": section["seed"],
                      "bad_token_ids": banned or None,
                      **({"eos_token_id": stop_id} if stop_id is not None else {}), **settings}
            out = generate(model, torch.tensor([ids], device=model.device), **kwargs)
            for row in out.tolist():
                new = row[len(ids):]
                if stop_id is not None and stop_id in new:
                    new = new[:new.index(stop_id)]
                continuation = tokenizer.decode(new, skip_special_tokens=True)
                drawn.append({"strategy": strategy, "prompt": prompt,
                              "continuation": continuation})
    return drawn
