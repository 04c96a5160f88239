"""Pretraining BERT (masked LM + next-sentence prediction) from documents, as one config.

    tables -> documents -> sentences -> WordPiece tokenizer -> next-sentence pairs
           -> masked batches (whole Chinese words masked together) -> BertForPreTraining
           -> Trainer -> MLM and NSP accuracy on held-out documents -> model/ + result.json

The config (a recipe with ``task: bert-pretrain`` is one)::

    data:      {documents: [{path: FILE, column: NAME}, ...], max_length: 128,
                validation_fraction: 0.02, split_seed: 0}
    tokenizer: {vocab_size: 8000, min_frequency: 2}  or  {path: DIR}
    model:     {<BertConfig fields: hidden_size, num_hidden_layers, ...>}
    masking:   {mlm_probability: 0.15, whole_word_mask: true}
    training:  {<TrainingArguments fields>}
    max_time_seconds: 1200

Each row of a table is a document (a review, a news post, an app description), cut into
sentences after 。！？!? and line breaks. A table without a header row names its ``columns``
(``{path: lcsts_zh/train_2k.tsv, columns: [summary, text], column: text}``). Documents, not
sentences, are split into training and validation, so no held-out sentence has a neighbour in
training. The validation pairs are masked once, so every evaluation scores the same positions.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wxb.config import check_known_keys, check_section_keys, coerce
from wxb.data.mlm import IGNORE, MLMCollator, chinese_word_ids, mask_once, nsp_pairs
from wxb.data.text import read_column
from wxb.errors import ConfigError, DataError
from wxb.models.bert import BertConfig, BertForPreTraining
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.load import load_tokenizer
from wxb.tokenizers.train import train_on_lines
from wxb.train.arguments import TrainingArguments
from wxb.train.from_config import (
    check_expected,
    config_sections,
    result_config,
    write_result,
)
from wxb.train.pretrain import TimeBudget, run_summary
from wxb.train.trainer import Trainer

SECTIONS = ("data", "tokenizer", "model", "masking", "training")
OTHER_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
DATA_DEFAULTS = {"max_length": 128, "validation_fraction": 0.02, "split_seed": 0}
DOCUMENT_KEYS = ("path", "column", "columns")
TOKENIZER_DEFAULTS = {"vocab_size": 8000, "min_frequency": 2}
MASKING_DEFAULTS = {"mlm_probability": 0.15, "whole_word_mask": True}
TRAINING_DEFAULTS = {"output_dir": "runs/bert-pretrain", "max_steps": 1000,
                     "learning_rate": 5e-4, "lr_scheduler_type": "linear", "warmup_ratio": 0.06,
                     "weight_decay": 0.01, "per_device_train_batch_size": 32,
                     "per_device_eval_batch_size": 64, "eval_strategy": "steps",
                     "eval_steps": 200, "logging_steps": 50}
METRICS = ("eval_loss", "mlm_accuracy", "nsp_accuracy")
# A sentence ends after a full stop, question or exclamation mark (Chinese or Western) or at
# a line break.
SENTENCE_END = re.compile(r"(?<=[。！？!?])|\n")


def split_sentences(text: str) -> list[str]:
    """``text`` cut after each 。！？!? and at line breaks; blank pieces dropped."""
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]


def read_documents(sources: list[dict[str, Any]]) -> list[list[str]]:
    """Every row of every source table as a document: its list of sentences."""
    documents = [d for d in map(split_sentences, read_column(sources)) if d]
    if not documents:
        raise DataError("the pretraining documents hold no text")
    return documents


def pretrain_bert(config: dict[str, Any], *, resume: bool | str = False,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Pretrain the configured BERT and return the contents of ``result.json``."""
    start = time.perf_counter()
    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    settings = resolved_settings(config)
    data, tok_section, model_section, masking = (
        settings[k] for k in ("data", "tokenizer", "model", "masking"))
    max_time = settings["max_time_seconds"]
    expected = check_expected(config.get("expected"), METRICS)
    args = TrainingArguments.from_dict(settings["training"])
    output_dir = Path(args.output_dir)

    documents = read_documents(data["documents"])
    order = torch.randperm(len(documents),
                           generator=torch.Generator().manual_seed(data["split_seed"])).tolist()
    n_val = max(2, round(len(documents) * data["validation_fraction"]))
    val_docs = [documents[i] for i in order[:n_val]]
    train_docs = [documents[i] for i in order[n_val:]]
    sentences = sum(len(d) for d in documents)
    log(f"documents: {len(documents):,} ({sentences:,} sentences, "
        f"{sum(len(s) for d in documents for s in d):,} characters); "
        f"{len(val_docs):,} held out")

    tokenizer = _tokenizer(tok_section, train_docs, output_dir, resume)
    tokenizer.save(output_dir / "tokenizer")
    log(f"tokenizer: WordPiece, {tokenizer.vocab_size:,} tokens")
    encode = _encoder(tokenizer, data["max_length"], masking["whole_word_mask"])
    train_set = encode(nsp_pairs(train_docs, seed=data["split_seed"]))
    collator = MLMCollator(tokenizer, masking["mlm_probability"],
                           whole_word_mask=masking["whole_word_mask"], seed=args.seed)
    held_out = MLMCollator(tokenizer, masking["mlm_probability"],
                           whole_word_mask=masking["whole_word_mask"], seed=args.seed + 1)
    val_set = mask_once(encode(nsp_pairs(val_docs, seed=data["split_seed"] + 1)), held_out)
    log(f"sentence pairs: {len(train_set):,} training, {len(val_set):,} validation")

    model_config = BertConfig.from_dict({
        "vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id,
        "max_position_embeddings": data["max_length"], **model_section}, strict=True)
    torch.manual_seed(args.seed)
    model = BertForPreTraining(model_config)
    model.sparse_prediction = True  # the loss of the masked positions only, computed there
    log(f"model: BertForPreTraining, {model.num_parameters():,} parameters")

    budget = TimeBudget(max_time) if max_time is not None else None
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=val_set,
                      data_collator=collator, callbacks=[budget] if budget else [])
    output = trainer.train(resume_from_checkpoint=resume)
    metrics = {**trainer.evaluate(), **pretraining_accuracy(model, val_set, collator)}
    log(f"validation: MLM accuracy {metrics['mlm_accuracy']:.4f}, NSP accuracy "
        f"{metrics['nsp_accuracy']:.4f}, loss {metrics['eval_loss']:.4f}")
    model.sparse_prediction = False
    model_dir = model.save_pretrained(output_dir / "model")
    tokenizer.save(model_dir)

    result: dict[str, Any] = {
        **run_summary("bert-pretrain", metrics, trainer, output, budget, start),
        "tokenizer_size": tokenizer.vocab_size,
        "documents": {"train": len(train_docs), "validation": len(val_docs)},
        "pairs": {"train": len(train_set), "validation": len(val_set)},
        "model_dir": str(model_dir),
        "config": result_config(config, expected, **settings),
    }
    return write_result(result, expected, metrics, output_dir)


@torch.no_grad()
def pretraining_accuracy(model: BertForPreTraining, examples: list[dict[str, Any]],
                         collator: MLMCollator, batch_size: int = 64) -> dict[str, float]:
    """The share of masked tokens predicted exactly, and of pairs classified right."""
    was_training = model.training
    model.eval()
    hits = total = nsp_hits = 0
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(model.device)
                 for k, v in collator(examples[start:start + batch_size]).items()}
        labels = batch.pop("labels")
        nsp_labels = batch.pop("next_sentence_label")
        out = model(**batch)
        masked = labels != IGNORE
        hits += int((out.logits.argmax(-1)[masked] == labels[masked]).sum())
        total += int(masked.sum())
        nsp_hits += int((out.seq_relationship_logits.argmax(-1) == nsp_labels).sum())
    model.train(was_training)
    return {"mlm_accuracy": hits / max(total, 1), "nsp_accuracy": nsp_hits / len(examples)}


# ----------------------------------------------------------------------------- the pieces


def resolved_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The sections of a pretraining config with defaults filled in and values checked: what
    result.json records, and what decides whether a finished run can be reused."""
    data, tok_section, model_section, masking, training = config_sections(
        config, SECTIONS, OTHER_KEYS)
    check_known_keys(BertConfig, model_section, "bert config field")
    max_time = config.get("max_time_seconds")
    return {
        "data": _check_data(data),
        "tokenizer": _check(tok_section, "tokenizer", TOKENIZER_DEFAULTS, extra=("path",)),
        "model": dict(model_section),
        "masking": _check(masking, "masking", MASKING_DEFAULTS),
        "training": TrainingArguments.from_dict({**TRAINING_DEFAULTS, **training}).to_dict(),
        "max_time_seconds": None if max_time is None else coerce("max_time_seconds", max_time,
                                                                 float),
    }


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    section = _check(section, "data", DATA_DEFAULTS, extra=("documents",))
    sources = section.get("documents")
    if not isinstance(sources, list) or not sources:
        raise ConfigError("data.documents is required: a list of tables, e.g. "
                          "[{path: reviews.csv, column: review}]")
    for source in sources:
        if not isinstance(source, dict) or not {"path", "column"} <= set(source) or (
                set(source) - set(DOCUMENT_KEYS)):
            raise ConfigError(f"each data.documents entry needs path and column (and columns "
                              f"for a table without a header row); got {source!r}")
    section["validation_fraction"] = coerce("data.validation_fraction",
                                            section["validation_fraction"], float)
    return section


def _check(section: dict[str, Any], name: str, defaults: dict[str, Any],
           extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``section`` over ``defaults``, refusing unknown keys and converting to the defaults'
    types."""
    check_section_keys(name, section, (*defaults, *extra))
    if name == "tokenizer" and "path" in section:
        return {"path": str(section["path"])}
    merged = {**defaults, **section}
    for key, default in defaults.items():
        if isinstance(default, (bool, int, float)) and key in section:
            merged[key] = coerce(f"{name}.{key}", merged[key], type(default))
    return merged


def _tokenizer(section: dict[str, Any], documents: list[list[str]], output_dir: Path,
               resume: bool | str) -> Tokenizer:
    """The tokenizer a resumed run saved, the one ``path`` names, or a WordPiece trained on
    the training documents (CJK characters become tokens of their own, as in BERT-Chinese)."""
    if resume and (output_dir / "tokenizer").is_dir():
        return load_tokenizer(output_dir / "tokenizer")
    if "path" in section:
        return load_tokenizer(section["path"])
    return train_on_lines("wordpiece", [s for d in documents for s in d],
                          vocab_size=section["vocab_size"],
                          min_frequency=section["min_frequency"])


def _encoder(tokenizer: Tokenizer, max_length: int,
             whole_words: bool) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """Pairs -> examples: ``[CLS] A [SEP] B [SEP]`` cut to ``max_length`` (longest first),
    with jieba word ids for whole-word masking."""
    def encode(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        a, b = [p["text_a"] for p in pairs], [p["text_b"] for p in pairs]
        options = {"truncation": "longest_first", "max_length": max_length}
        if whole_words:
            encoding = chinese_word_ids(a, tokenizer, b, **options)
        else:
            encoding = tokenizer(a, b, return_token_type_ids=True, **options)
        keys = [k for k in ("input_ids", "token_type_ids", "word_ids") if k in encoding]
        return [{**{k: encoding[k][i] for k in keys},
                 "next_sentence_label": p["next_sentence_label"]}
                for i, p in enumerate(pairs)]
    return encode


def pretrain_then_finetune(config: dict[str, Any], output_dir: str | Path, *,
                           log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure what pretraining brings: pretrain BERT (``config["pretrain"]``, a
    ``pretrain_bert`` config), then fine-tune it on a labelled task (``config["finetune"]``, a
    ``finetune`` config without ``model``) and fine-tune the same architecture from random
    weights with the same tokenizer, data, steps and seed. ``train_sizes`` (default
    ``[null]``: all) repeats the comparison with that many labelled training examples, where
    pretraining is expected to matter most. Returns every result and the differences in
    accuracy (``accuracy_gain`` for all the labels, ``accuracy_gain_<n>`` for n of them;
    positive when pretraining helped).

    A pretraining run already in ``output_dir/pretrain`` with the same config is reused (the
    log says so), so that changing the fine-tuning does not cost the pretraining again.
    """
    from wxb.train.finetune import finetune  # the classification side loads on use

    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    unknown = sorted(set(config) - {"pretrain", "finetune", "train_sizes", *OTHER_KEYS})
    if unknown or not {"pretrain", "finetune"} <= set(config):
        raise ConfigError("a pretrain-then-finetune config has two sections, pretrain and "
                          f"finetune{f'; unknown: {unknown[0]!r}' if unknown else ''}")
    if "model" in (config["finetune"] or {}):
        raise ConfigError("the finetune section takes its model from the pretraining stage; "
                          "leave model out")
    sizes = config.get("train_sizes") or [None]
    if not isinstance(sizes, list):
        raise ConfigError(f"train_sizes must be a list such as [500, null], got {sizes!r}")
    sizes = [None if n is None else coerce("train_sizes", n, int) for n in sizes]
    output_dir = Path(output_dir)
    names = {n: "" if n is None else f"_{n}" for n in sizes}
    expected = check_expected(config.get("expected"), (
        "mlm_accuracy", *(f"{m}{suffix}" for suffix in names.values()
                          for m in ("accuracy_gain", "pretrained_test_accuracy",
                                    "random_test_accuracy"))))
    pretrained = _pretraining(config["pretrain"], output_dir / "pretrain", log)
    metrics = {"mlm_accuracy": pretrained["metrics"]["mlm_accuracy"],
               "nsp_accuracy": pretrained["metrics"]["nsp_accuracy"]}
    runs: dict[str, Any] = {}
    for size, suffix in names.items():
        accuracy = {}
        for init in ("pretrained", "random"):
            stage = copy.deepcopy(config["finetune"])
            stage["model"] = {"pretrained": pretrained["model_dir"], "init": init}
            stage["data"] = {**(stage.get("data") or {}), "train_size": size}
            folder = output_dir / f"finetune-{init}{suffix.replace('_', '-')}"
            stage["training"] = {**(stage.get("training") or {}), "output_dir": str(folder)}
            log(f"== fine-tuning from {init} weights on "
                f"{'all the' if size is None else size} training examples")
            run = runs[f"{init}{suffix}"] = finetune(stage, log=log)
            split = "test" if "test_accuracy" in run["metrics"] else "eval"
            accuracy[init] = run["metrics"][f"{split}_accuracy"]
        metrics.update({f"pretrained_test_accuracy{suffix}": accuracy["pretrained"],
                        f"random_test_accuracy{suffix}": accuracy["random"],
                        f"accuracy_gain{suffix}": accuracy["pretrained"] - accuracy["random"]})
    result: dict[str, Any] = {
        "task": "pretrain-finetune", "metrics": metrics, "pretraining": pretrained,
        "finetuning": runs,
        "config": {k: config[k] for k in ("name", "description", "task", "reported",
                                          "train_sizes") if k in config},
    }
    return write_result(result, expected, metrics, output_dir)


def _pretraining(section: dict[str, Any], folder: Path,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Pretrain into ``folder``, or reuse the finished run there when its config is this one."""
    import json

    stage = copy.deepcopy(section)
    stage["training"] = {**(stage.get("training") or {}), "output_dir": str(folder)}
    previous = folder / "result.json"
    if previous.is_file():
        done = json.loads(previous.read_text(encoding="utf-8"))
        settings = json.loads(json.dumps(resolved_settings(stage)))  # as JSON stores it
        if (all(done["config"].get(k) == v for k, v in settings.items())
                and Path(done["model_dir"]).is_dir()):
            log(f"== pretraining: reusing the finished run in {folder} (same config); "
                "delete it to pretrain again")
            return done
    log("== pretraining")
    return pretrain_bert(stage, log=log)
