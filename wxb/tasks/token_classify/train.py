"""Training a sequence tagger (named-entity recognition) on CoNLL files, as a function of one
config.

    CoNLL files -> sentences of words and BIO tags -> word vocabulary and tag set (training split)
                -> ids, each sentence cut to max_length words (counted) -> BiLSTM tagger -> Trainer
                -> validation / test: entity P/R/F1 (seqeval's) and the course's token F1
                   without O -> model/ (with its vocabulary) + result.json

The config (a recipe with ``task: token-classify`` is one)::

    model:    {type: rnn, tokenizer: DIR | {kind: word, min_frequency: 1, vocab_size: null,
                                            lowercase: false},
               vectors: FILE (word2vec / GloVe text, optional),
               <fields of the family's config: cell, hidden_size, embedding_size,
                num_hidden_layers, dropout, word_dropout, case_embedding_size, impl, ...>}
    data:     {train: FILE, validation: FILE, test: FILE, format: conll,
               tag_column: -1, max_length: 128}
    training: {<TrainingArguments fields>}
    max_time_seconds: 1500    # stop training after this much wall time

Scores count every word of the files: the words cut off by ``max_length`` count as tagged
``O``, so a cut never flatters a score. As in ``finetune``, the model evaluated and saved is the
last one; the Trainer's best checkpoint (by validation entity F1) stays on disk.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wxb.config import check_known_keys, check_section_keys, coerce
from wxb.data.conll import TaggedSentence, read_conll
from wxb.data.tagging import encode_sentences, tag_set
from wxb.data.text import LabelSet, PaddingCollator
from wxb.errors import ConfigError
from wxb.metrics import entity_scores, token_scores_without_o
from wxb.models import registry
from wxb.models.base import PreTrainedModel
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.train import tokenizer_from_settings
from wxb.train.arguments import TrainingArguments
from wxb.train.finetune import evaluate_with, head_architecture
from wxb.train.from_config import (
    check_expected,
    config_sections,
    result_config,
    write_result,
)
from wxb.train.pretrain import TimeBudget, run_summary
from wxb.train.trainer import EvalPrediction, Trainer

SECTIONS = ("model", "data", "training")
OTHER_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
MODEL_KEYS = ("type", "tokenizer", "vectors")
DEFAULT_TOKENIZER = {"kind": "word"}  # whitespace words, case kept: capitals mark names
DATA_FILES = ("train", "validation", "test")
DATA_DEFAULTS = {"format": "conll", "tag_column": -1, "max_length": 128}
FORMATS = ("conll",)
TRAINING_DEFAULTS = {"output_dir": "runs/tagger", "num_train_epochs": 10,
                     "learning_rate": 1e-3, "per_device_train_batch_size": 32,
                     "per_device_eval_batch_size": 256, "eval_strategy": "epoch",
                     "metric_for_best_model": "entity_f1"}
SPLIT_METRICS = ("loss", "accuracy", "entity_precision", "entity_recall", "entity_f1",
                 "token_precision_without_o", "token_recall_without_o", "token_f1_without_o")
SCORED_SPLITS = (("validation", "eval"), ("test", "test"))  # split -> its metrics' prefix
METRICS = tuple(f"{prefix}_{m}" for _, prefix in SCORED_SPLITS for m in SPLIT_METRICS)


def train_tagger(config: dict[str, Any], *, resume: bool | str = False,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured tagger and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder. ``log`` receives one line per stage.
    """
    start = time.perf_counter()
    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    model_section, data, training = config_sections(config, SECTIONS, OTHER_KEYS)
    data = _check_data(data)
    scored = [prefix for name, prefix in SCORED_SPLITS if data.get(name) is not None]
    expected = check_expected(config.get("expected"),
                              tuple(m for m in METRICS if m.split("_")[0] in scored))
    max_time = config.get("max_time_seconds")
    max_time = None if max_time is None else coerce("max_time_seconds", max_time, float)
    splits = {name: read_conll(data[name], tag_column=data["tag_column"])
              for name in DATA_FILES if data.get(name) is not None}
    tags = tag_set(splits["train"], data["train"])
    defaults = dict(TRAINING_DEFAULTS)
    if "validation" not in splits:  # nothing to evaluate on during training
        defaults.update(eval_strategy="no", metric_for_best_model="loss")
    args = TrainingArguments.from_dict({**defaults, **training})
    output_dir = Path(args.output_dir)
    log("data: " + ", ".join(f"{name} {len(s):,} sentences ({sum(len(x.tokens) for x in s):,} "
                             f"words)" for name, s in splits.items())
        + f"; tags {', '.join(tags.values)}")

    model, tokenizer, found = build_tagger(model_section, tags, splits["train"], seed=args.seed)
    if found is not None:
        log(f"vectors: {found:,} of {tokenizer.vocab_size:,} words found in "
            f"{model_section['vectors']}")
    encoded, truncated = {}, {}
    cases = bool(getattr(model.config, "case_embedding_size", 0))
    for name, sentences in splits.items():
        encoded[name], truncated[name] = encode_sentences(
            sentences, tags, tokenizer, max_length=data["max_length"], cases=cases,
            source=data[name])
        if truncated[name]:
            log(f"{name}: {truncated[name]:,} sentences truncated to max_length "
                f"{data['max_length']} words (the words cut off count as tagged O)")
    log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters, "
        f"vocabulary {tokenizer.vocab_size:,} words")

    budget = TimeBudget(max_time) if max_time is not None else None
    trainer = Trainer(model, args, train_dataset=encoded["train"],
                      eval_dataset=encoded.get("validation"),
                      data_collator=PaddingCollator(tokenizer.pad_token_id),
                      compute_metrics=tag_metrics(splits["validation"], tags.names)
                      if "validation" in splits else None,
                      callbacks=[budget] if budget else [])
    output = trainer.train(resume_from_checkpoint=resume)

    metrics: dict[str, float] = {}
    for name, prefix in SCORED_SPLITS:
        if name not in encoded:
            continue
        scores = evaluate_with(trainer, encoded[name], tag_metrics(splits[name], tags.names))
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        log(f"{name}: entity F1 {scores['entity_f1']:.4f} (P {scores['entity_precision']:.4f}, "
            f"R {scores['entity_recall']:.4f}), token F1 without O "
            f"{scores['token_f1_without_o']:.4f}, accuracy {scores['accuracy']:.4f}")
    model_dir = model.save_pretrained(output_dir / "model")
    tokenizer.save(model_dir)

    result: dict[str, Any] = {
        **run_summary("token-classify", metrics, trainer, output, budget, start),
        "sentences": {name: len(s) for name, s in splits.items()},
        "truncated": truncated,
        "labels": tags.names,
        "vocab_size": tokenizer.vocab_size,
        "vectors_found": found,
        "model_dir": str(model_dir),
        "config": result_config(config, expected, model=model_section, data=data,
                                training=args.to_dict(), max_time_seconds=max_time),
    }
    return write_result(result, expected, metrics, output_dir)


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("data", section, (*DATA_FILES, *DATA_DEFAULTS))
    if section.get("train") is None:
        raise ConfigError("data.train is missing: give the training file (CoNLL), and "
                          "validation and/or test files to score the tagger on")
    section = {**DATA_DEFAULTS, **section}
    if section["format"] not in FORMATS:
        raise ConfigError(f"unknown data.format {section['format']!r}; tagging reads: "
                          f"{', '.join(FORMATS)} (one word per line with its tag, a blank "
                          "line between sentences)")
    for key in ("tag_column", "max_length"):
        section[key] = coerce(f"data.{key}", section[key], int)
    if section["max_length"] < 1:
        raise ConfigError(f"data.max_length must be at least 1, got {section['max_length']}")
    return section


def build_tagger(section: dict[str, Any], tags: LabelSet, sentences: Sequence[TaggedSentence],
                 *, seed: int) -> tuple[PreTrainedModel, Tokenizer, int | None]:
    """The token classifier of ``model.type`` from scratch, its word tokenizer (a folder, or
    one trained on the training ``sentences``), and how many words got pretrained vectors
    (None without ``vectors``)."""
    known = {k: section[k] for k in MODEL_KEYS if k in section}
    fields = {k: v for k, v in section.items() if k not in MODEL_KEYS}
    if "type" not in known:
        raise ConfigError("model.type is missing: a tagger is built from scratch, e.g. "
                          "{type: rnn, cell: lstm, hidden_size: 128}")
    cls = registry.model_class(known["type"], head_architecture(known["type"],
                                                                "TokenClassification"))
    tokenizer = tokenizer_from_settings(known.get("tokenizer", DEFAULT_TOKENIZER),
                                [" ".join(s.tokens) for s in sentences])
    if tokenizer.pad_token_id is None or tokenizer.unk_token_id is None:
        raise ConfigError("the tokenizer needs a [PAD] token (batches of sentences) and an "
                          "[UNK] token (words outside the vocabulary)")
    check_known_keys(cls.config_class, fields, f"{known['type']} config field")
    values = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id,
              "unk_token_id": tokenizer.unk_token_id, "num_labels": len(tags.values),
              "id2label": tags.id2label, **fields}
    torch.manual_seed(seed)
    model = cls(cls.config_class.from_dict(values, strict=True))
    found = None
    if "vectors" in known:
        found = _load_vectors(model, tokenizer, known["vectors"])
    return model, tokenizer, found


def _load_vectors(model: PreTrainedModel, tokenizer: Tokenizer, path: str) -> int:
    """Copy word2vec / GloVe vectors into the embeddings; a word missing from the file takes
    its lower-cased form's vector (GloVe is lower-cased, CoNLL's words are not)."""
    from wxb.data.vectors import read_word_vectors

    if not hasattr(model, "load_vectors"):
        raise ConfigError(f"model.vectors: {type(model).__name__} takes no word vectors; "
                          "use type: rnn")
    vocab = tokenizer.get_vocab()
    vectors = read_word_vectors(path, {*vocab, *(w.lower() for w in vocab)})
    chosen = {w: vectors.get(w, vectors.get(w.lower())) for w in vocab}
    return model.load_vectors({w: v for w, v in chosen.items() if v is not None}, vocab)


def tag_metrics(sentences: Sequence[TaggedSentence],
                names: Sequence[str]) -> Callable[[EvalPrediction], dict[str, float]]:
    """The Trainer's ``compute_metrics`` for ``sentences`` (encoded in this order): entity
    P/R/F1, the course's token P/R/F1 without O, and token accuracy, over every word.

    The predictions are logits (sentences, seq, tags), padded past each sentence; its words
    are where the labels are not -100. Words cut off by max_length count as predicted O.
    """
    def compute(eval_pred: EvalPrediction) -> dict[str, float]:
        best = eval_pred.predictions.argmax(-1)
        gold, guess = [], []
        for sentence, row, labels in zip(sentences, best, eval_pred.label_ids, strict=True):
            kept = [names[i] for i in row[labels != -100]]
            gold.append(sentence.tags)
            guess.append(kept + ["O"] * (len(sentence.tags) - len(kept)))
        entity = entity_scores(gold, guess)
        token = token_scores_without_o(gold, guess)
        words = [(a, b) for g, p in zip(gold, guess, strict=True)
                 for a, b in zip(g, p, strict=True)]
        return {"accuracy": float(np.mean([a == b for a, b in words])),
                **{f"entity_{k}": v for k, v in entity.items()},
                **{f"token_{k}_without_o": v for k, v in token.items()}}

    return compute
