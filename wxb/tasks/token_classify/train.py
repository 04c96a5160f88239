"""Training a sequence tagger (named-entity recognition) on CoNLL files, as a function of one
config (task ``token-classify``).

    CoNLL files -> sentences of words and BIO tags -> word vocabulary and tag set (training split)
                -> ids, each sentence cut to max_length words (counted) -> BiLSTM tagger -> Trainer
                -> validation / test: entity P/R/F1 (seqeval's) and the course's token F1
                   without O -> model/ (with its vocabulary) + result.json

The config (a recipe with ``task: token-classify`` is one)::

    model:    {type: rnn, tokenizer: DIR | {kind: word, min_frequency: 1, vocab_size: null,
                                            lowercase: false},
               vectors: FILE (word2vec / GloVe text, optional),
               elmo: DIR (a biLM folder of the bilm task, optional; elmo_layer_norm: false),
               <fields of the family's config: cell, hidden_size, embedding_size,
                num_hidden_layers, dropout, word_dropout, case_embedding_size, impl, ...>}
    data:     {train: FILE, validation: FILE, test: FILE, format: conll,
               tag_column: -1, max_length: 128}
    training: {<TrainingArguments fields>}
    max_time_seconds: 1500    # stop training after this much wall time

With ``elmo``, the biLM is copied into the tagger (its weights in the tagger's
model.safetensors, its config as ``elmo_config`` in config.json), so the saved folder tags on
its own; it stays frozen and only its layers' scalar mix is trained. Its layers of every
sentence are computed once, before training (``add_elmo_features``), since they never change:
with bilm-conll's biLM on one shared core, a step of 32 CoNLL sentences took 0.24 s with them
cached and 0.50 s with the biLM run in the step, while computing all 20,744 sentences of the
three splits once took 90 s and 585 MB. The training split's are kept in float16 (half the
memory; the rounding is far below what dropout adds), the scored splits' in float32, so the
scores are those the saved folder's pipeline (which runs the biLM on the fly) gives.

Scores count every word of the files: the words cut off by ``max_length`` count as tagged
``O``, so a cut never flatters a score. As in text classification, the model evaluated and
saved is the last one; the Trainer's best checkpoint (by validation entity F1) stays on disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from wxb.config import check_known_keys
from wxb.data.conll import TaggedSentence, read_conll
from wxb.errors import ConfigError, DataError
from wxb.metrics import entity_scores, token_scores_without_o
from wxb.models import registry
from wxb.tasks.models import head_architecture, load_bilm
from wxb.tasks.run import Run, evaluate_with
from wxb.tasks.sections import Section, at_least

if TYPE_CHECKING:
    import torch

    from wxb.data.text import EncodedTexts, LabelSet
    from wxb.models.base import PreTrainedModel
    from wxb.tokenizers.base import Tokenizer
    from wxb.train.trainer import EvalPrediction

DEFAULT_TOKENIZER = {"kind": "word"}  # whitespace words, case kept: capitals mark names
DATA_FILES = ("train", "validation", "test")
TRAINING_DEFAULTS = {"output_dir": "runs/tagger", "num_train_epochs": 10,
                     "learning_rate": 1e-3, "per_device_train_batch_size": 32,
                     "per_device_eval_batch_size": 256, "eval_strategy": "epoch",
                     "metric_for_best_model": "entity_f1"}
SPLIT_METRICS = ("loss", "accuracy", "entity_precision", "entity_recall", "entity_f1",
                 "token_precision_without_o", "token_recall_without_o", "token_f1_without_o")
SCORED_SPLITS = (("validation", "eval"), ("test", "test"))  # split -> its metrics' prefix
METRICS = tuple(f"{prefix}_{m}" for _, prefix in SCORED_SPLITS for m in SPLIT_METRICS)


@dataclasses.dataclass
class ModelSection(Section):
    """``type`` names the family (with a token-classification head); the tagger's word
    ``tokenizer`` (a folder, or settings trained on the training split), optional word
    ``vectors`` and an optional biLM folder ``elmo`` whose layers' mix joins each word's
    vector; the other keys are fields of the family's config."""

    extra_fields = True
    type: str | None = None
    tokenizer: str | dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_TOKENIZER))
    vectors: str | None = None
    elmo: str | None = None

    def check(self) -> None:
        if self.type is None:
            raise ConfigError("model.type is missing: a tagger is built from scratch, e.g. "
                              "{type: rnn, cell: lstm, hidden_size: 128}")
        check_known_keys(self.model_class().config_class, self.extra,
                         f"{self.type} config field")
        if "elmo_config" in self.extra:
            raise ConfigError("model.elmo_config comes from the biLM folder: give model.elmo: "
                              "DIR (e.g. runs/bilm-conll/model) instead")

    def model_class(self) -> type:
        return registry.model_class(self.type, head_architecture(self.type,
                                                                 "TokenClassification"))


@dataclasses.dataclass
class DataSection(Section):
    """The CoNLL files: ``train`` (required), ``validation`` and ``test`` (scored when given),
    the column of the tags and the most words a sentence keeps."""

    train: str | None = None
    validation: str | None = None
    test: str | None = None
    format: Literal["conll"] = "conll"
    tag_column: int = -1
    max_length: int = 128

    def check(self) -> None:
        if self.train is None:
            raise ConfigError("data.train is missing: give the training file (CoNLL), and "
                              "validation and/or test files to score the tagger on")
        at_least("data.max_length", self.max_length, 1)

    def read(self) -> dict[str, list[TaggedSentence]]:
        """The sentences of each file given, by split name."""
        return {name: read_conll(getattr(self, name), tag_column=self.tag_column)
                for name in DATA_FILES if getattr(self, name) is not None}


SECTIONS = {"model": ModelSection, "data": DataSection}


def train_tagger(config: dict[str, Any], *, resume: bool | str = False,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured tagger and return the contents of ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder. ``log`` receives one line per stage.
    """
    from wxb.data.tagging import encode_sentences, tag_set
    from wxb.data.text import PaddingCollator
    from wxb.train.memory import TrainingMemory

    run = Run("token-classify", config, SECTIONS, log=log)
    model_section, data = run["model"], run["data"]
    scored = [prefix for name, prefix in SCORED_SPLITS if getattr(data, name) is not None]
    run.expect(m for m in METRICS if m.split("_")[0] in scored)
    splits = data.read()
    tags = tag_set(splits["train"], data.train)
    defaults = dict(TRAINING_DEFAULTS)
    if "validation" not in splits:  # nothing to evaluate on during training
        defaults.update(eval_strategy="no", metric_for_best_model="loss")
    args = run.arguments(defaults)
    run.log("data: " + ", ".join(f"{name} {len(s):,} sentences "
                                 f"({sum(len(x.tokens) for x in s):,} words)"
                                 for name, s in splits.items())
            + f"; tags {', '.join(tags.values)}")

    model, tokenizer, found = build_tagger(model_section, tags, splits["train"], seed=args.seed)
    if found is not None:
        run.log(f"vectors: {found:,} of {tokenizer.vocab_size:,} words found in "
                f"{model_section.vectors}")
    encoded, truncated = {}, {}
    cases = bool(getattr(model.config, "case_embedding_size", 0))
    for name, sentences in splits.items():
        encoded[name], truncated[name] = encode_sentences(
            sentences, tags, tokenizer, max_length=data.max_length, cases=cases,
            source=getattr(data, name))
        if truncated[name]:
            run.log(f"{name}: {truncated[name]:,} sentences truncated to max_length "
                    f"{data.max_length} words (the words cut off count as tagged O)")
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters "
            f"({model.num_parameters(trainable_only=True):,} trained), "
            f"vocabulary {tokenizer.vocab_size:,} words")
    collator = PaddingCollator(tokenizer.pad_token_id)
    elmo_cache = None
    if model_section.elmo is not None:
        import time

        import torch

        start, elmo_cache = time.perf_counter(), {}
        for name, sentences in splits.items():
            dtype = torch.float16 if name == "train" else torch.float32
            elmo_cache[name] = add_elmo_features(
                model, encoded[name], [s.tokens for s in sentences], data.max_length, dtype)
        megabytes = sum(elmo_cache.values()) / 2**20
        run.log(f"elmo: the biLM's layers of every word computed in "
                f"{time.perf_counter() - start:.0f} s, {megabytes:,.0f} MB")
        collator = ElmoCollator(tokenizer.pad_token_id)

    trainer = run.trainer(model, args, train_dataset=encoded["train"],
                          eval_dataset=encoded.get("validation"),
                          data_collator=collator,
                          compute_metrics=tag_metrics(splits["validation"], tags.names)
                          if "validation" in splits else None)
    memory = TrainingMemory()  # what compare-finetune reads of each variant
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()

    metrics: dict[str, float] = {}
    for name, prefix in SCORED_SPLITS:
        if name not in encoded:
            continue
        scores = evaluate_with(trainer, encoded[name], tag_metrics(splits[name], tags.names))
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        run.log(f"{name}: entity F1 {scores['entity_f1']:.4f} "
                f"(P {scores['entity_precision']:.4f}, R {scores['entity_recall']:.4f}), "
                f"token F1 without O {scores['token_f1_without_o']:.4f}, "
                f"accuracy {scores['accuracy']:.4f}")
    model_dir = model.save_pretrained(run.output_dir / "model")
    tokenizer.save(model_dir)
    # Without a goal, the headline is the entity F1 of the last split scored (test, if given).
    headline = f"{scored[-1]}_entity_f1" if scored else None
    return run.finish(metrics, trainer=trainer, output=output, model_dir=model_dir,
                      metric=headline,
                      sentences={name: len(s) for name, s in splits.items()},
                      truncated=truncated, labels=tags.names,
                      vocab_size=tokenizer.vocab_size, vectors_found=found,
                      memory_mib=memory_mib,
                      elmo=elmo_summary(model, elmo_cache) if elmo_cache is not None else None)


def build_tagger(section: ModelSection, tags: LabelSet, sentences: Sequence[TaggedSentence],
                 *, seed: int) -> tuple[PreTrainedModel, Tokenizer, int | None]:
    """The token classifier of ``section.type`` from scratch, its word tokenizer (a folder, or
    one trained on the training ``sentences``), and how many words got pretrained vectors
    (None without ``vectors``)."""
    import torch

    from wxb.tokenizers.train import tokenizer_from_settings

    cls = section.model_class()
    tokenizer = tokenizer_from_settings(section.tokenizer,
                                        [" ".join(s.tokens) for s in sentences])
    if tokenizer.pad_token_id is None or tokenizer.unk_token_id is None:
        raise ConfigError("the tokenizer needs a [PAD] token (batches of sentences) and an "
                          "[UNK] token (words outside the vocabulary)")
    values = {"vocab_size": tokenizer.vocab_size, "pad_token_id": tokenizer.pad_token_id,
              "unk_token_id": tokenizer.unk_token_id, "num_labels": len(tags.values),
              "id2label": tags.id2label, **section.extra}
    bilm = None
    if section.elmo is not None:
        bilm = load_bilm(section.elmo)
        values["elmo_config"] = bilm.config.to_dict()
    torch.manual_seed(seed)
    model = cls(cls.config_class.from_dict(values, strict=True))
    if bilm is not None:
        if getattr(model, "elmo", None) is None:
            raise ConfigError(f"model.elmo: {cls.__name__} takes no ELMo features; use "
                              "type: rnn")
        model.elmo.load_state_dict(bilm.state_dict())
    found = None
    if section.vectors is not None:
        found = _load_vectors(model, tokenizer, section.vectors)
    return model, tokenizer, found


def _load_vectors(model: PreTrainedModel, tokenizer: Tokenizer, path: str) -> int:
    """Copy pretrained vectors into the embeddings: a word2vec / GloVe file or a named set
    (``glove-6b-50d``), where a word missing takes its lower-cased form's vector (GloVe is
    lower-cased, CoNLL's words are not); or a fastText folder, whose character n-grams give
    every word a vector, seen in its corpus or not (its own words are lower-cased too)."""
    from pathlib import Path

    from wxb.data.vectors import read_word_vectors

    if not hasattr(model, "load_vectors"):
        raise ConfigError(f"model.vectors: {type(model).__name__} takes no word vectors; "
                          "use type: rnn")
    vocab = tokenizer.get_vocab()
    if Path(path).is_dir():
        import torch

        from wxb.models.fasttext import FastTextVectors

        subwords = FastTextVectors.load(path)
        special = {tokenizer.pad_token_id, tokenizer.unk_token_id}
        return model.load_vectors({w: torch.from_numpy(subwords.get(w.lower()))
                                   for w, i in vocab.items() if i not in special}, vocab)
    vectors = read_word_vectors(path, {*vocab, *(w.lower() for w in vocab)})
    chosen = {w: vectors.get(w, vectors.get(w.lower())) for w in vocab}
    return model.load_vectors({w: v for w, v in chosen.items() if v is not None}, vocab)


ELMO_KEY = "elmo_representations"


def add_elmo_features(model: Any, dataset: EncodedTexts, sentences: Sequence[Sequence[str]],
                      max_length: int, dtype: torch.dtype, batch_size: int = 64) -> int:
    """Put the frozen biLM's layers of every sentence into ``dataset`` (column
    ``elmo_representations``: per sentence (elmo_layers, words, elmo_dim), cut to
    ``max_length`` words as the ids are) and return how many bytes they take.

    The biLM reads each whole sentence (as the pipeline does), framed by <S> and </S>;
    sentences of similar length share a batch, so little of the work is padding.
    """
    from wxb.models.elmo import batch_to_ids

    chars = model.elmo.config.max_characters_per_token
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    features: list[torch.Tensor | None] = [None] * len(sentences)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        char_ids, _ = batch_to_ids([sentences[i] for i in batch], chars)
        layers = model.elmo_representations(char_ids.to(model.device)).to("cpu", dtype)
        for row, i in enumerate(batch):
            n = min(len(sentences[i]), max_length)
            features[i] = layers[row, :, :n].clone()  # its own storage, not the batch's
    dataset.encodings[ELMO_KEY] = features
    return sum(f.numel() * f.element_size() for f in features)


class ElmoCollator:
    """``PaddingCollator``'s batch plus ``elmo_representations`` (batch, layers, seq, dim) in
    float32, zero past each sentence's end."""

    def __init__(self, pad_token_id: int) -> None:
        from wxb.data.text import PaddingCollator

        self.words = PaddingCollator(pad_token_id)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        batch = self.words([{k: v for k, v in e.items() if k != ELMO_KEY} for e in examples])
        features = [e[ELMO_KEY] for e in examples]
        layers, _, dim = features[0].shape
        out = torch.zeros(len(features), layers, batch["input_ids"].shape[1], dim)
        for i, f in enumerate(features):
            if f.shape[1] != len(examples[i]["input_ids"]):
                raise DataError(f"example {i}: {f.shape[1]} ELMo vectors for "
                                f"{len(examples[i]['input_ids'])} words")
            out[i, :, :f.shape[1]] = f
        batch[ELMO_KEY] = out
        return batch


def elmo_summary(model: Any, cache_bytes: dict[str, int]) -> dict[str, Any]:
    """What result.json says of the ELMo features: the learned mix and the cache's size."""
    import torch

    mix = model.scalar_mix
    return {"layers": model.config.elmo_layers, "dim": model.config.elmo_dim,
            "layer_norm": model.config.elmo_layer_norm,
            "mix_weights": [round(w, 4) for w in
                            torch.softmax(mix.scalar_parameters.detach(), 0).tolist()],
            "gamma": round(float(mix.gamma.detach()), 4),
            "cache_megabytes": {k: round(v / 2**20, 1) for k, v in cache_bytes.items()}}


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
