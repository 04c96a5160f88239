"""Pretraining ELMo's biLM on a corpus, as a function of one config.

    corpus files -> sentences of words (wxb.data.corpus.read_corpus), cut to max_length words
                 -> a seeded held-out share for validation
                 -> the training split's words seen min_count times + <S>, </S>, <UNK>
                 -> ElmoBiLM sized to them -> Trainer (the mean of the two directions' losses)
                 -> validation loss and perplexity of each direction, before and after
                 -> model/ (config.json, model.safetensors, vocab.txt) -> result.json

The config (a recipe with ``task: bilm`` is one)::

    data:     {corpus: [conll2003/train.txt, ...], min_count: 2, max_size: null,
               max_length: 50, validation_fraction: 0.05, split_seed: 0, lowercase: false,
               limit: null}
    model:    {<ElmoConfig fields but vocab_size>}   small defaults (MODEL_DEFAULTS)
    training: {<TrainingArguments fields>}
    max_time_seconds: 600

A sentence longer than ``max_length`` words is cut into pieces of at most that many (nothing is
thrown away); each piece is one example, ``<S> w_1 ... w_n </S>``, where the forward LM
predicts w_1 ... w_n, </S> and the backward LM <S>, w_1 ... w_n. Words stay cased by default,
as ELMo's do (the characters see the capitals anyway). Words outside the vocabulary are
<UNK> as targets, and the perplexities count them as one word, as bilm-tf's do.

The metrics are token-weighted over the validation split (the Trainer's own ``eval_loss``
during training is the mean over batches): ``eval_loss_forward`` and ``eval_loss_backward``
(nats per word), ``perplexity_forward`` and ``perplexity_backward``, ``eval_loss`` their mean
and ``perplexity`` its exponential (the geometric mean of the two).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from wxb.config import check_known_keys
from wxb.errors import ConfigError
from wxb.models.elmo import (
    BOS,
    EOS,
    SPECIALS,
    ElmoBiLM,
    ElmoConfig,
    ElmoVocabulary,
    sentence_char_ids,
)
from wxb.tasks.run import Run
from wxb.tasks.sections import Section, at_least, fraction

METRICS = ("eval_loss", "perplexity", "eval_loss_forward", "eval_loss_backward",
           "perplexity_forward", "perplexity_backward")
DIRECTIONS = ("forward", "backward")
# Small enough to pretrain on a laptop CPU in minutes (ELMo's own are ElmoConfig's defaults).
MODEL_DEFAULTS = {"max_characters_per_token": 50, "char_embedding_dim": 16,
                  "filters": [[1, 32], [2, 32], [3, 64], [4, 64], [5, 64]],
                  "n_highway": 2, "projection_dim": 128, "hidden_size": 256,
                  "num_hidden_layers": 2, "dropout": 0.1}
TRAINING_DEFAULTS = {"output_dir": "runs/bilm", "max_steps": 1000, "learning_rate": 2e-3,
                     "lr_scheduler_type": "cosine", "warmup_ratio": 0.05,
                     "per_device_train_batch_size": 32, "eval_strategy": "steps",
                     "eval_steps": 200, "logging_steps": 25, "group_by_length": True}


@dataclasses.dataclass
class DataSection(Section):
    """The corpus files and how they become sentences, the vocabulary and the two splits."""

    corpus: str | list[str] = dataclasses.field(default_factory=list)
    min_count: int = 2
    max_size: int | None = None
    max_length: int = 50
    validation_fraction: float = 0.05
    split_seed: int = 0
    lowercase: bool = False
    limit: int | None = None  # the first sentences only (a quick run)

    def check(self) -> None:
        self.corpus = [self.corpus] if isinstance(self.corpus, str) else list(self.corpus)
        if not self.corpus:
            raise self.fail("corpus is required: the text, CoNLL or table files to pretrain on, "
                            "e.g. data: {corpus: [conll2003/train.txt]}")
        fraction("data.validation_fraction", self.validation_fraction, open_low=True)
        for name in ("min_count", "max_length", "max_size", "limit"):
            at_least(f"data.{name}", getattr(self, name), 1)


@dataclasses.dataclass
class ModelSection(Section):
    """Fields of ``ElmoConfig`` over ``MODEL_DEFAULTS``; ``vocab_size`` comes from the data."""

    extra_fields = True

    def check(self) -> None:
        check_known_keys(ElmoConfig, self.extra, "elmo config field")
        if "vocab_size" in self.extra:
            raise ConfigError("model.vocab_size is the vocabulary's size (set by data.min_count "
                              "and data.max_size); leave it out")
        self.config(len(SPECIALS))  # a bad value is refused now, before any work

    def config(self, vocab_size: int) -> ElmoConfig:
        return ElmoConfig.from_dict({**MODEL_DEFAULTS, **self.extra, "vocab_size": vocab_size},
                                    strict=True)

    def to_dict(self) -> dict[str, Any]:
        return {**MODEL_DEFAULTS, **self.extra}


SECTIONS = {"data": DataSection, "model": ModelSection}


class SentenceDataset(Dataset):
    """Example i: sentence i as ``char_ids`` (n + 2, max_characters) int16 and ``word_ids``
    (n + 2,) int64, both framed by <S> and </S>."""

    def __init__(self, sentences: Sequence[Sequence[str]], vocabulary: ElmoVocabulary,
                 max_characters: int) -> None:
        self.sentences, self.vocabulary = sentences, vocabulary
        self.max_characters = max_characters

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        words = self.sentences[i]
        chars = sentence_char_ids([BOS, *words, EOS], self.max_characters)
        return {"char_ids": torch.from_numpy(chars),
                "word_ids": torch.from_numpy(self.vocabulary.encode(words))}


def collate_bilm(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """A right-padded batch: ``char_ids`` (batch, seq, chars) with 0 for padded words,
    ``attention_mask`` (batch, seq), and the labels shifted for each direction,
    ``labels_forward[k]`` = word k+1 and ``labels_backward[k]`` = word k-1, -100 where there is
    none (after </S>, before <S>, and the padding)."""
    seq = max(len(e["word_ids"]) for e in examples)
    chars = examples[0]["char_ids"].shape[1]
    char_ids = torch.zeros(len(examples), seq, chars, dtype=torch.long)
    mask = torch.zeros(len(examples), seq, dtype=torch.long)
    forward = torch.full((len(examples), seq), -100, dtype=torch.long)
    backward = forward.clone()
    for i, example in enumerate(examples):
        ids = example["word_ids"]
        n = len(ids)
        char_ids[i, :n] = example["char_ids"]
        mask[i, :n] = 1
        forward[i, :n - 1] = ids[1:]
        backward[i, 1:n] = ids[:-1]
    return {"char_ids": char_ids, "attention_mask": mask, "labels_forward": forward,
            "labels_backward": backward}


def evaluate_bilm(model: ElmoBiLM, dataset: Dataset, batch_size: int = 64) -> dict[str, float]:
    """The token-weighted loss and perplexity of each direction over ``dataset``, their mean
    loss and its perplexity (see the module docstring for the names)."""
    was_training = model.training
    model.eval()
    totals = dict.fromkeys(DIRECTIONS, 0.0)
    counts = dict.fromkeys(DIRECTIONS, 0)
    # Sentences of similar length batched together: the sums do not depend on the order,
    # and the LSTMs' loops do not run over padding.
    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i]["word_ids"]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_sampler=batches, collate_fn=collate_bilm):
            batch = {k: v.to(model.device) for k, v in batch.items()}
            out = model(**batch)
            for d in DIRECTIONS:
                n = int((batch[f"labels_{d}"] != -100).sum())
                totals[d] += float(out[f"loss_{d}"]) * n
                counts[d] += n
    model.train(was_training)
    losses = {d: totals[d] / counts[d] for d in DIRECTIONS}
    mean = sum(losses.values()) / len(losses)
    metrics = {"eval_loss": mean, "perplexity": math.exp(mean),
               **{f"eval_loss_{d}": loss for d, loss in losses.items()},
               **{f"perplexity_{d}": math.exp(loss) for d, loss in losses.items()}}
    return {k: round(v, 4) for k, v in metrics.items()}


def cut(sentences: list[list[str]], max_length: int) -> list[list[str]]:
    """Every sentence as pieces of at most ``max_length`` words."""
    return [s[i:i + max_length] for s in sentences for i in range(0, len(s), max_length)]


def split(sentences: list[list[str]], share: float, seed: int
          ) -> tuple[list[list[str]], list[list[str]]]:
    """(train, validation): a seeded ``share`` of the sentences held out."""
    from wxb.data.datasets import DictDataset, train_test_split

    rest, held = train_test_split(DictDataset(i=torch.arange(len(sentences))), share, seed)
    return ([sentences[i] for i in rest.tensors["i"].tolist()],
            [sentences[i] for i in held.tensors["i"].tolist()])


def train_bilm(config: dict[str, Any], *, resume: bool | str = False,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Pretrain the configured biLM and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder (the same config gives the same vocabulary). ``log`` receives one line
    per stage.
    """
    from wxb.data.corpus import Vocabulary, read_corpus
    from wxb.train.seed import set_seed

    run = Run("bilm", config, SECTIONS, log=log)
    data, model_section = run["data"], run["model"]
    run.expect(METRICS)
    args = run.arguments(TRAINING_DEFAULTS)
    output_dir = run.output_dir

    sentences = cut(read_corpus(data.corpus, lowercase=data.lowercase, limit=data.limit),
                    data.max_length)
    train_sentences, val_sentences = split(sentences, data.validation_fraction,
                                           data.split_seed)
    counts = Vocabulary.build(train_sentences, min_count=data.min_count, max_size=data.max_size)
    vocabulary = ElmoVocabulary.from_words(counts.words)
    model_config = model_section.config(len(vocabulary))
    chars = model_config.max_characters_per_token
    train_set = SentenceDataset(train_sentences, vocabulary, chars)
    val_set = SentenceDataset(val_sentences, vocabulary, chars)
    n_train, n_val = (sum(map(len, s)) for s in (train_sentences, val_sentences))
    unknown = sum(w not in vocabulary.index for s in val_sentences for w in s)
    run.log(f"corpus: {len(sentences):,} sentences, {n_train + n_val:,} words ({n_train:,} "
            f"train, {n_val:,} validation); vocabulary {len(vocabulary):,} words, "
            f"{unknown / n_val:.1%} of the validation words unknown")

    set_seed(args.seed)  # the initial weights depend on the seed alone
    model = ElmoBiLM(model_config, vocabulary)
    run.log(f"model: ElmoBiLM, {model.num_parameters():,} parameters")
    trainer = run.trainer(model, args, train_dataset=train_set, eval_dataset=val_set,
                          data_collator=collate_bilm)
    batch = args.per_device_eval_batch_size
    before = evaluate_bilm(trainer.model, val_set, batch)
    run.log(f"before training: perplexity forward {before['perplexity_forward']:.1f}, "
            f"backward {before['perplexity_backward']:.1f}")
    output = trainer.train(resume_from_checkpoint=resume)
    metrics = evaluate_bilm(trainer.model, val_set, batch)
    run.log(f"after training: perplexity forward {metrics['perplexity_forward']:.1f}, "
            f"backward {metrics['perplexity_backward']:.1f}")
    model_dir = model.save_pretrained(output_dir / "model")

    runtime = output.metrics["train_runtime"]
    # Words predicted per second (each direction predicts n + 1 per sentence of n words).
    steps = output.metrics["train_steps"]
    per_step = (n_train + len(train_sentences)) / len(train_sentences) * (
        args.per_device_train_batch_size * args.gradient_accumulation_steps)
    fields = {k: v for k, v in model_config.to_dict().items()
              if k not in ("model_type", "vocab_size")}
    return run.finish(
        metrics, trainer=trainer, output=output, model_dir=model_dir,
        before=before,
        words_per_second=round(steps * per_step / runtime, 1) if runtime else None,
        corpus={"sentences": {"train": len(train_sentences), "validation": len(val_sentences)},
                "words": {"train": n_train, "validation": n_val},
                "vocab_size": len(vocabulary),
                "validation_unknown_share": round(unknown / n_val, 4),
                "mean_sentence_length": round(float(np.mean([len(s) for s in sentences])), 2)},
        config=run.resolved(model=fields))
