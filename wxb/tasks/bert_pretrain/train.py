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

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wxb.config import check_known_keys
from wxb.data.mlm import IGNORE, MLMCollator, chinese_word_ids, mask_once, nsp_pairs
from wxb.data.text import read_column
from wxb.errors import ConfigError, DataError
from wxb.models.bert import BertConfig, BertForPreTraining
from wxb.tasks.run import Run
from wxb.tasks.sections import Section
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.load import load_tokenizer
from wxb.tokenizers.train import train_on_lines

DOCUMENT_KEYS = ("path", "column", "columns")
TRAINING_DEFAULTS = {"output_dir": "runs/bert-pretrain", "max_steps": 1000,
                     "learning_rate": 5e-4, "lr_scheduler_type": "linear", "warmup_ratio": 0.06,
                     "weight_decay": 0.01, "per_device_train_batch_size": 32,
                     "per_device_eval_batch_size": 64, "eval_strategy": "steps",
                     "eval_steps": 200, "logging_steps": 50}
METRICS = ("eval_loss", "mlm_accuracy", "nsp_accuracy")
# A sentence ends after a full stop, question or exclamation mark (Chinese or Western) or at
# a line break.
SENTENCE_END = re.compile(r"(?<=[。！？!?])|\n")


@dataclasses.dataclass
class DataSection(Section):
    """The tables whose rows are the documents, how long a sentence pair may be, and the
    seeded share of documents held out."""

    documents: list[dict] | None = None
    max_length: int = 128
    validation_fraction: float = 0.02
    split_seed: int = 0

    def check(self) -> None:
        if not self.documents:
            raise ConfigError("data.documents is required: a list of tables, e.g. "
                              "[{path: reviews.csv, column: review}]")
        for source in self.documents:
            if not {"path", "column"} <= set(source) or set(source) - set(DOCUMENT_KEYS):
                raise ConfigError(f"each data.documents entry needs path and column (and "
                                  f"columns for a table without a header row); got {source!r}")


@dataclasses.dataclass
class TokenizerSection(Section):
    """A saved tokenizer (``path``), or the settings of a WordPiece trained on the documents."""

    vocab_size: int = 8000
    min_frequency: int = 2
    path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # A saved tokenizer has no training settings to record.
        if self.given("path"):
            return {"path": self.path}
        return {"vocab_size": self.vocab_size, "min_frequency": self.min_frequency}


@dataclasses.dataclass
class ModelSection(Section):
    """Fields of BertConfig (hidden_size, num_hidden_layers, ...); the vocabulary size and the
    positions come from the tokenizer and data.max_length unless given."""

    extra_fields = True

    def check(self) -> None:
        check_known_keys(BertConfig, self.extra, "bert config field")


@dataclasses.dataclass
class MaskingSection(Section):
    """The share of tokens masked, and whether a (jieba) word's characters go together."""

    mlm_probability: float = 0.15
    whole_word_mask: bool = True


SECTIONS = {"data": DataSection, "tokenizer": TokenizerSection, "model": ModelSection,
            "masking": MaskingSection}


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
    """Pretrain the configured BERT and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder, with the tokenizer the run saved. Writes into ``output_dir``: the
    Trainer's checkpoints, log.jsonl and loss_curve.png, ``tokenizer/``, the model with its
    tokenizer as ``model/`` and ``result.json``.
    """
    run = _start(config, log)
    data, masking, args = run["data"], run["masking"], run.args
    run.expect(METRICS)

    documents = read_documents(data.documents)
    order = torch.randperm(len(documents),
                           generator=torch.Generator().manual_seed(data.split_seed)).tolist()
    n_val = max(2, round(len(documents) * data.validation_fraction))
    val_docs = [documents[i] for i in order[:n_val]]
    train_docs = [documents[i] for i in order[n_val:]]
    sentences = sum(len(d) for d in documents)
    run.log(f"documents: {len(documents):,} ({sentences:,} sentences, "
            f"{sum(len(s) for d in documents for s in d):,} characters); "
            f"{len(val_docs):,} held out")

    tokenizer = _tokenizer(run["tokenizer"], train_docs, run.output_dir, resume)
    tokenizer.save(run.output_dir / "tokenizer")
    run.log(f"tokenizer: WordPiece, {tokenizer.vocab_size:,} tokens")
    encode = _encoder(tokenizer, data.max_length, masking.whole_word_mask)
    train_set = encode(nsp_pairs(train_docs, seed=data.split_seed))
    collator = MLMCollator(tokenizer, masking.mlm_probability,
                           whole_word_mask=masking.whole_word_mask, seed=args.seed)
    held_out = MLMCollator(tokenizer, masking.mlm_probability,
                           whole_word_mask=masking.whole_word_mask, seed=args.seed + 1)
    val_set = mask_once(encode(nsp_pairs(val_docs, seed=data.split_seed + 1)), held_out)
    run.log(f"sentence pairs: {len(train_set):,} training, {len(val_set):,} validation")

    model_config = BertConfig.from_dict({
        "vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id,
        "max_position_embeddings": data.max_length, **run["model"].extra}, strict=True)
    torch.manual_seed(args.seed)
    model = BertForPreTraining(model_config)
    model.sparse_prediction = True  # the loss of the masked positions only, computed there
    run.log(f"model: BertForPreTraining, {model.num_parameters():,} parameters")

    trainer = run.trainer(model, args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=collator)
    output = trainer.train(resume_from_checkpoint=resume)
    metrics = {**trainer.evaluate(), **pretraining_accuracy(model, val_set, collator)}
    run.log(f"validation: MLM accuracy {metrics['mlm_accuracy']:.4f}, NSP accuracy "
            f"{metrics['nsp_accuracy']:.4f}, loss {metrics['eval_loss']:.4f}")
    model.sparse_prediction = False
    model_dir = model.save_pretrained(run.output_dir / "model")
    tokenizer.save(model_dir)
    return run.finish(metrics, trainer=trainer, output=output, model_dir=model_dir,
                      tokenizer_size=tokenizer.vocab_size,
                      documents={"train": len(train_docs), "validation": len(val_docs)},
                      pairs={"train": len(train_set), "validation": len(val_set)})


def resolved_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The sections of a pretraining config (and its time budget) with defaults filled in and
    values checked, as result.json's ``config`` records them: what decides whether a finished
    run can be reused (``wxb.tasks.bert_pretrain.then_finetune``)."""
    resolved = _start(config).resolved()
    return {k: resolved[k] for k in (*SECTIONS, "training", "max_time_seconds")}


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


def _start(config: dict[str, Any], log: Callable[[str], None] | None = None) -> Run:
    """The run of ``config``: its sections checked and its training arguments set."""
    run = Run("bert-pretrain", config, SECTIONS, log=log)
    run.arguments(TRAINING_DEFAULTS)
    return run


def _tokenizer(section: TokenizerSection, documents: list[list[str]], output_dir: Path,
               resume: bool | str) -> Tokenizer:
    """The tokenizer a resumed run saved, the one ``path`` names, or a WordPiece trained on
    the training documents (CJK characters become tokens of their own, as in BERT-Chinese)."""
    if resume and (output_dir / "tokenizer").is_dir():
        return load_tokenizer(output_dir / "tokenizer")
    if section.given("path"):
        return load_tokenizer(section.path)
    return train_on_lines("wordpiece", [s for d in documents for s in d],
                          vocab_size=section.vocab_size, min_frequency=section.min_frequency)


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
