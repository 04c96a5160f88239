"""Fine-tuning an encoder for extractive question answering on SQuAD-format data, as a function
of one config (task ``question-answering``).

    SQuAD file(s) -> questions (split by whole article or passage) -> question-first windows
    over the contexts, labelled with the answer's first and last tokens ([CLS] where the window
    does not hold it, or there is none) -> the encoder under a fresh start/end head -> Trainer
    -> validation / test: every window scored, answers chosen as transformers' pipeline
    chooses them, exact match and F1 (SQuAD's official scores, CMRC's for Chinese) beside the
    "always no answer" baseline on the same questions -> model/ (with its tokenizer) +
    result.json (with sample predictions)

The config (a recipe with ``task: question-answering`` is one)::

    model:    {pretrained: DIR | hub id, init: pretrained | random,
               <config fields to change, e.g. hidden_dropout_prob>}
    data:     {path: FILE, split_by: article | context, validation_size: 0.1,
               test_size: 0.1, split_seed: 0}  or  {train: FILE, validation: FILE, test: FILE}
              + max_length: 384, doc_stride: 128, max_answer_len: 30,
                version_2_with_negative: null (auto: true when a question has no answer),
                null_threshold: null | P | validation (see below),
                language: en | zh (zh: CMRC 2018's scores), train_size: N (a seeded subset
                of the training questions), samples: 5 (predictions kept per split)
    training: {<TrainingArguments fields>}
    max_time_seconds: 1800    # stop training after this much wall time

Reading (``wxb.data.squad``): an answer whose ``answer_start`` does not point at its text is
skipped as a label and counted (``answers_misaligned``); an answerable question left with no
label does not train (``questions_unlabelled``) but is scored, on its answer texts. With
``version_2_with_negative``, each question's null score is its no-answer probability, and the
empty answer is chosen

- ``null_threshold: null`` (the default): as transformers' pipeline with
  ``handle_impossible_answer`` chooses it, when the null score beats every span's;
- ``null_threshold: P``: when the null score is above ``P`` (the official script's
  ``--na-prob-thresh``), the best span otherwise;
- ``null_threshold: validation``: so, with ``P`` the validation split's best-F1 threshold
  (``eval_best_f1_thresh``), chosen there and applied unchanged to the test split.

Every split also reports the official best thresholds (``best_f1``, ``best_f1_thresh``: the
score had the threshold been chosen on that split itself, an upper bound, not a result) and
``HasAns_span_exact`` / ``HasAns_span_f1``, the best span's scores on the answerable questions
whatever the null score (what the answers are worth once a question is known to have one).

Training evaluates the windows' loss on the validation split; exact match and F1 are computed
once training ends, on the model then (the last one: choosing a checkpoint by its validation
score and reporting that score would flatter it; the Trainer's best one stays on disk).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch

from wxb.config import check_known_keys
from wxb.data.squad import SquadData, SquadQuestion, read_squad, split_questions
from wxb.errors import ConfigError, DataError
from wxb.metrics.squad import no_answer_baseline, squad_v2
from wxb.tasks.data import require
from wxb.tasks.models import head_architecture
from wxb.tasks.question_answering.features import (
    WindowCollator,
    WindowDataset,
    check_lengths,
    encode_windows,
)
from wxb.tasks.question_answering.pipeline import answer_questions
from wxb.tasks.run import Run
from wxb.tasks.sections import Section, at_least, fraction

TRAINING_DEFAULTS = {"output_dir": "runs/question-answering", "num_train_epochs": 2,
                     "learning_rate": 5e-5, "warmup_ratio": 0.1, "weight_decay": 0.01,
                     "per_device_train_batch_size": 16, "per_device_eval_batch_size": 64,
                     "eval_strategy": "epoch", "metric_for_best_model": "loss"}
SPLIT_SIZE = 0.1  # the share of a single data.path's articles held out for each split
SCORED_SPLITS = (("validation", "eval"), ("test", "test"))  # split -> its metrics' prefix
# squad_v2's keys (the NoAns and best-threshold ones with unanswerable questions only), then
# the "always no answer" baseline's and how far F1 is above it.
ANSWERABLE_METRICS = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total")
NEGATIVE_METRICS = ("NoAns_exact", "NoAns_f1", "NoAns_total", "best_exact",
                    "best_exact_thresh", "best_f1", "best_f1_thresh", "HasAns_span_exact",
                    "HasAns_span_f1")
BASELINE_METRICS = ("no_answer_exact", "no_answer_f1", "f1_over_no_answer")


@dataclasses.dataclass
class ModelSection(Section):
    """The encoder checkpoint (``pretrained``: a folder or hub id, with its tokenizer) that
    gets a fresh start/end head; ``init: random`` keeps its architecture and tokenizer but
    not its weights. Other keys are fields of the family's config to change."""

    extra_fields = True
    pretrained: str | None = None
    init: Literal["pretrained", "random"] = "pretrained"

    def check(self) -> None:
        if not self.given("pretrained") and self.extra:
            # Without a checkpoint, no config field is known: most likely a misspelt key.
            known = [f.name for f in dataclasses.fields(self)]
            raise ConfigError(f"unknown model field {sorted(self.extra)[0]!r}; known ones are: "
                              f"{', '.join(known)} (with pretrained, its config's fields)")
        require(self, "pretrained", "the encoder folder or hub id to fine-tune, e.g. model: "
                "{pretrained: sentence-transformers/all-MiniLM-L6-v2}")


@dataclasses.dataclass
class DataSection(Section):
    """SQuAD-format files: one (``path``) split by whole articles or passages, or ``train``
    with ``validation`` and / or ``test``; how contexts are windowed and answers read."""

    path: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    split_by: Literal["article", "context"] = "article"
    validation_size: float | None = None
    test_size: float | None = None
    split_seed: int = 0
    train_size: int | None = None
    max_length: int = 384
    doc_stride: int = 128
    max_answer_len: int = 30
    version_2_with_negative: bool | None = None
    null_threshold: float | Literal["validation"] | None = None
    language: Literal["en", "zh"] = "en"
    samples: int = 5

    def check(self) -> None:
        if self.given("path") == self.given("train"):
            raise self.fail("give either path (one SQuAD file, split by split_by into "
                            "test_size and validation_size) or train (with validation and/or "
                            "test files)")
        for key in ("validation_size", "test_size"):
            if self.given("train") and self.given(key):
                raise ConfigError(f"data.{key} splits a single data.path; with data.train, "
                                  "give the validation and test files instead")
            if self.given("path"):
                if not self.given(key):
                    setattr(self, key, SPLIT_SIZE)
                fraction(f"data.{key}", getattr(self, key))
        at_least("data.train_size", self.train_size, 1)
        at_least("data.max_answer_len", self.max_answer_len, 1)
        at_least("data.samples", self.samples, 0)
        check_lengths(self.max_length, self.doc_stride)
        if self.null_threshold == "validation" and not (
                self.validation_size if self.given("path") else self.given("validation")):
            raise ConfigError("data.null_threshold: validation chooses the threshold on the "
                              "validation split; give data.validation_size > 0 (with path) or "
                              "data.validation (with train), or a number as null_threshold")

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items()
                if v is not None or k in ("version_2_with_negative", "null_threshold")}

    def read(self) -> tuple[dict[str, list[SquadQuestion]], dict[str, Any]]:
        """The questions of each split, and what reading found: whether some question has
        no answer, the answers skipped as labels and the questions left without one."""
        files = ({"all": self.path} if self.given("path") else
                 {name: getattr(self, name) for name in ("train", "validation", "test")
                  if self.given(name)})
        read: dict[str, SquadData] = {name: read_squad(path) for name, path in files.items()}
        if self.given("path"):
            splits = split_questions(read["all"].questions, by=self.split_by,
                                     validation_size=self.validation_size,
                                     test_size=self.test_size, seed=self.split_seed)
        else:
            splits = {name: data.questions for name, data in read.items()}
        found = {"version_2_with_negative": any(d.version_2_with_negative
                                                for d in read.values()),
                 "answers_misaligned": sum(d.misaligned for d in read.values()),
                 "questions_unlabelled": sum(d.unlabelled for d in read.values())}
        if self.train_size is not None:
            train = splits["train"]
            if self.train_size > len(train):
                raise ConfigError(f"data.train_size {self.train_size} is more than the "
                                  f"{len(train)} training questions")
            keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(
                self.split_seed))[:self.train_size].sort().values.tolist()
            splits["train"] = [train[i] for i in keep]
        return splits, found


SECTIONS = {"model": ModelSection, "data": DataSection}


def train_question_answering(config: dict[str, Any], *, resume: bool | str = False,
                             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the configured encoder for question answering and return the contents of
    ``result.json``.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder. ``log`` receives one line per stage.
    """
    from wxb.train.memory import TrainingMemory

    run = Run("question-answering", config, SECTIONS, log=log)
    data = run["data"]
    splits, found = data.read()
    negatives = data.version_2_with_negative
    if negatives is None:
        negatives = found["version_2_with_negative"]
    scored = [(name, prefix) for name, prefix in SCORED_SPLITS if name in splits]
    run.expect(f"{prefix}_{m}" for _, prefix in scored
               for m in _split_metrics(negatives))
    defaults = dict(TRAINING_DEFAULTS)
    if "validation" not in splits:  # nothing to evaluate on during training
        defaults.update(eval_strategy="no")
    args = run.arguments(defaults)
    run.log("data: " + ", ".join(f"{name} {len(qs):,} questions "
                                 f"({sum(not q.answerable for q in qs):,} unanswerable)"
                                 for name, qs in splits.items())
            + f"; SQuAD {'2.0' if negatives else '1.1'} rules"
            + (f"; {found['answers_misaligned']:,} answers whose answer_start misses their "
               "text skipped as labels" if found["answers_misaligned"] else ""))

    model, tokenizer = build_model(run["model"], seed=args.seed)
    if tokenizer.pad_token_id is None:
        raise ConfigError("the tokenizer has no [PAD] token; batches of windows need one")
    windows = {name: _labelled_windows(tokenizer, questions, data)
               for name, questions in splits.items() if name != "test"}
    run.log("windows: " + ", ".join(f"{name} {len(w):,}" for name, w in windows.items())
            + f" (max_length {data.max_length}, doc_stride {data.doc_stride}); model: "
            f"{type(model).__name__}, {model.num_parameters():,} parameters")
    if not windows["train"]:
        raise DataError("no training question has an answer whose answer_start matches its "
                        "text (and none is unanswerable): nothing to learn from")
    collate = WindowCollator(tokenizer.pad_token_id,
                             "token_type_ids" in tokenizer.model_input_names)
    trainer = run.trainer(model, args, train_dataset=WindowDataset(windows["train"], labels=True),
                          eval_dataset=WindowDataset(windows["validation"], labels=True)
                          if windows.get("validation") else None, data_collator=collate)
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()

    metrics: dict[str, float] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    threshold = data.null_threshold  # "validation": DataSection made sure there is one
    applied: dict[str, float | None] = {}  # split -> the null threshold its answers had
    for name, prefix in scored:  # validation first: its best threshold may serve the test
        applied[name] = (None if name == "validation" else metrics["eval_best_f1_thresh"]) \
            if threshold == "validation" else threshold
        scores, samples[name] = evaluate_questions(
            trainer.model, tokenizer, splits[name], data, negatives=negatives,
            batch_size=args.per_device_eval_batch_size, null_threshold=applied[name])
        metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
        run.log(f"{name}: exact {scores['exact']:.2f}, F1 {scores['f1']:.2f} (always no "
                f"answer: {scores['no_answer_f1']:.2f}) over {scores['total']:,} questions"
                + (f"; best span on the answerable ones F1 {scores['HasAns_span_f1']:.2f}"
                   if "HasAns_span_f1" in scores else ""))
    model_dir = model.save_pretrained(run.output_dir / "model")
    tokenizer.save(model_dir)
    # The headline is the goal's metric, else the F1 of the last split scored (test, if any).
    headline = None if run.goals or not scored else f"{scored[-1][1]}_f1"
    return run.finish(metrics, trainer=trainer, output=output, model_dir=model_dir,
                      metric=headline, memory_mib=memory_mib,
                      questions={name: len(qs) for name, qs in splits.items()},
                      windows={name: len(w) for name, w in windows.items()},
                      version_2_with_negative=negatives, language=data.language,
                      null_threshold=applied if negatives else None,
                      answers_misaligned=found["answers_misaligned"],
                      questions_unlabelled=found["questions_unlabelled"],
                      held=_articles(splits), samples=samples)


def _split_metrics(negatives: bool) -> tuple[str, ...]:
    return (*ANSWERABLE_METRICS, *(NEGATIVE_METRICS if negatives else ()), *BASELINE_METRICS)


def build_model(section: ModelSection, *, seed: int) -> tuple[Any, Any]:
    """The checkpoint's family with a question-answering head (new, seeded) and its
    tokenizer."""
    from wxb.hub import load_pretrained, resolve
    from wxb.models import registry
    from wxb.models.base import CONFIG_NAME, read_config_json
    from wxb.tokenizers.load import load_tokenizer

    folder = resolve(section.pretrained)
    values = read_config_json(folder / CONFIG_NAME)
    model_type = values.get("model_type")
    cls = registry.model_class(model_type, head_architecture(model_type, "QuestionAnswering"))
    check_known_keys(cls.config_class, section.extra, f"{model_type} config field")
    fields = {"num_labels": 2, **section.extra}  # a start and an end score per token
    torch.manual_seed(seed)  # the new head (or the whole random model) depends on the seed
    if section.init == "pretrained":
        model = load_pretrained(cls, folder, **fields)
    else:
        model = cls(cls.config_class.from_dict({**values, **fields}))
    return model, load_tokenizer(folder)


def _labelled_windows(tokenizer: Any, questions: Sequence[SquadQuestion],
                      data: DataSection) -> list[Any]:
    """The windows of the questions that have a label (or no answer at all)."""
    kept = [q for q in questions if q.label is not None or not q.answerable]
    return encode_windows(tokenizer, [q.question for q in kept], [q.context for q in kept],
                          max_length=data.max_length, doc_stride=data.doc_stride,
                          answers=[q.label for q in kept], ids=[q.id for q in kept])


def evaluate_questions(model: Any, tokenizer: Any, questions: Sequence[SquadQuestion],
                       data: DataSection, *, negatives: bool, batch_size: int = 64,
                       null_threshold: float | None = None
                       ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Exact match and F1 (``squad_v2``'s keys, 0-100) of the model's answers, the "always no
    answer" baseline's beside them, and the first ``data.samples`` predictions. With
    unanswerable questions, ``null_threshold`` None gives the empty answer where the pipeline
    would, a number where the null score is above it (see the module docstring)."""
    # Each question's best span and null score; the pipeline's handle_impossible_answer
    # answers "" exactly where the null score beats the span's (a tie keeps the span).
    found = answer_questions(model, tokenizer, [q.question for q in questions],
                             [q.context for q in questions], max_length=data.max_length,
                             doc_stride=data.doc_stride, max_answer_len=data.max_answer_len,
                             batch_size=batch_size, ids=[q.id for q in questions])
    references = {q.id: list(q.answers) for q in questions}
    best = {q.id: answers[0] if answers else {"answer": "", "score": 0.0}
            for q, (answers, _) in zip(questions, found, strict=True)}
    chances = {q.id: null for q, (_, null) in zip(questions, found, strict=True)}
    spans = {qid: answer["answer"] for qid, answer in best.items()}
    if not negatives:
        predictions = spans
    elif null_threshold is None:
        predictions = {qid: "" if chances[qid] > best[qid]["score"] else span
                       for qid, span in spans.items()}
    else:
        predictions = {qid: "" if chances[qid] > null_threshold else span
                       for qid, span in spans.items()}
    scores = squad_v2(predictions, references, language=data.language)
    if negatives:  # the official best thresholds over the best spans, and the spans alone
        bounds = squad_v2(spans, references, language=data.language,
                          no_answer_probabilities=chances)
        scores.update({k: v for k, v in bounds.items() if k.startswith("best_")},
                      HasAns_span_exact=bounds.get("HasAns_exact", 0.0),
                      HasAns_span_f1=bounds.get("HasAns_f1", 0.0))
    baseline = no_answer_baseline(references, language=data.language)
    scores.update(no_answer_exact=baseline["exact"], no_answer_f1=baseline["f1"],
                  f1_over_no_answer=scores["f1"] - baseline["f1"])
    samples = []
    for q, (_, null) in zip(questions[:data.samples], found, strict=False):
        one = squad_v2({q.id: predictions[q.id]}, {q.id: references[q.id]},
                       language=data.language)
        samples.append({"id": q.id, "question": q.question,
                        "answers": list(dict.fromkeys(q.answers)),
                        "prediction": predictions[q.id],
                        "score": best[q.id]["score"] if predictions[q.id] else null,
                        "no_answer_probability": null, "exact": one["exact"],
                        "f1": one["f1"]})
    return scores, samples


def _articles(splits: dict[str, list[SquadQuestion]]) -> dict[str, Any]:
    """What each split holds: its articles' titles (their number past 20) and passages."""
    held = {}
    for name, questions in splits.items():
        titles = list(dict.fromkeys(q.title for q in questions))
        held[name] = {"articles": titles if len(titles) <= 20 else len(titles),
                      "passages": len({q.context for q in questions})}
    return held
