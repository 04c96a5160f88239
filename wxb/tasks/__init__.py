"""Every user task of wxb, in one registry.

A task is what a person does with a model: classify texts, tag entities, translate, pretrain a
language model, fine-tune one on chat data, align it with preferences. Each lives in one
sub-package of ``wxb.tasks`` with its configuration sections, its training run (on the
skeleton of ``wxb.tasks.run``), its evaluation and its inference pipeline; inference modules
never import training code. This registry is the one list of task names: ``wxb recipe run``,
``wxb train``, ``wxb finetune``, ``compare-finetune`` and ``wxb.pipeline`` all look tasks up
here. Adding a task is one new module and one ``register(...)`` line below.

The names point at their code as ``"module:attribute"`` strings, so that listing the tasks
(``wxb --help``) loads nothing heavy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError

TrainFunction = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Task:
    """One task: its name, a line on what it does, the function that trains it from a config
    (``train(config, *, resume=False, log=None) -> result``) and the class that serves a
    trained folder (``Pipeline(folder, **kwargs)(inputs)``), each as ``"module:attribute"``
    or the object itself; other ``aliases`` it answers to (older or Hugging Face names)."""

    name: str
    summary: str
    train: str | TrainFunction | None = None
    pipeline: str | type | None = None
    aliases: tuple[str, ...] = ()

    def train_function(self) -> TrainFunction:
        if self.train is None:
            raise ConfigError(f"task {self.name!r} serves trained models only; the tasks that "
                              f"train are: {', '.join(task_names(trains=True))}")
        return _load(self.train)

    def run(self, config: dict[str, Any], *, resume: bool | str = False,
            log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Train on ``config`` and return the result (also written to result.json)."""
        return self.train_function()(config, resume=resume, log=log)

    def pipeline_class(self) -> Any:
        if self.pipeline is None:
            raise ConfigError(f"task {self.name!r} has no pipeline; wxb.pipeline serves: "
                              f"{', '.join(task_names(serves=True))}")
        return _load(self.pipeline)


TASKS: dict[str, Task] = {}
# The older names, kept working where they were used: a config's ``task: classify`` was the
# image / feature classifier, while ``wxb.pipeline("classify")`` was the text classifier.
OLD_NAMES = {"train": {"classify": "image-classify"},
             "pipeline": {"classify": "text-classify", "tag": "token-classify",
                          "translate": "translation", "answer": "question-answering"}}


def register(task: Task) -> Task:
    """Add ``task`` to the registry (a name or alias already taken is refused)."""
    taken = {n for t in TASKS.values() for n in (t.name, *t.aliases)}
    old = {n for names in OLD_NAMES.values() for n in names}
    clash = sorted({task.name, *task.aliases} & (taken | old))
    if clash and TASKS.get(task.name) != task:
        raise ConfigError(f"task name {clash[0]!r} is taken; the tasks are: "
                          f"{', '.join(TASKS)}")
    TASKS[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove the task ``name`` (tests that register a task of their own clean up)."""
    TASKS.pop(name, None)


def get_task(name: str, *, use: str = "train") -> Task:
    """The task called ``name`` (or one of its aliases, or an older name of its ``use``:
    "train" or "pipeline")."""
    name = OLD_NAMES[use].get(name, name)
    for task in TASKS.values():
        if name == task.name or name in task.aliases:
            return task
    if use == "pipeline":
        raise ConfigError(f"unknown pipeline task {name!r}; choose one of: "
                          f"{', '.join(task_names(serves=True))}")
    raise ConfigError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")


def task_names(*, trains: bool = False, serves: bool = False) -> list[str]:
    """The registered task names, those that train or serve when asked."""
    return [t.name for t in TASKS.values()
            if (not trains or t.train is not None) and (not serves or t.pipeline is not None)]


def run_task(name: str, config: dict[str, Any], *, resume: bool | str = False,
             log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the task ``name`` on ``config``; returns its result (written to result.json)."""
    return get_task(name).run(config, resume=resume, log=log)


def pipeline(task: str, model: str | Path, **kwargs: Any) -> Any:
    """A ready-to-call object for one use of a trained folder, as ``transformers.pipeline``:
    ``wxb.pipeline("embed", "path/to/all-MiniLM-L6-v2")(["a text", ...])``,
    ``wxb.pipeline("text-classify", "runs/sst2-minilm/model")("a fine film")``,
    ``wxb.pipeline("token-classify", "runs/conll-bilstm/model")("EU rejects German call")``,
    ``wxb.pipeline("translation", "runs/zh-en-seq2seq/model")("我很好。")``."""
    return get_task(task, use="pipeline").pipeline_class()(model, **kwargs)


def _load(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


register(Task("image-classify", "an MLP or CNN on images or feature vectors (digits, .csv, .npz)",
              train="wxb.tasks.image_classify.train:train_classifier",
              aliases=("image-classification",)))
register(Task("text-classify", "fine-tune an encoder (or train an RNN) to label texts or pairs",
              train="wxb.tasks.text_classify.train:finetune",
              pipeline="wxb.tasks.text_classify.pipeline:TextClassifier",
              aliases=("text-classification",)))
register(Task("token-classify", "a tagger for named entities, trained on CoNLL files",
              train="wxb.tasks.token_classify.train:train_tagger",
              pipeline="wxb.tasks.token_classify.pipeline:Tagger",
              aliases=("token-classification",)))
register(Task("translation", "Seq2Seq or the Transformer on sentence pairs, scored by BLEU",
              train="wxb.tasks.translation.train:train_translation",
              pipeline="wxb.tasks.translation.pipeline:Translator"))
register(Task("summarization", "T5, the Transformer or Seq2Seq on documents, scored by ROUGE",
              train="wxb.tasks.summarization.train:train_summarization",
              pipeline="wxb.tasks.summarization.pipeline:Summarizer",
              aliases=("summarize",)))
register(Task("causal-lm", "pretrain GPT-2 or LLaMA on text, then sample from it",
              train="wxb.tasks.causal_lm.train:pretrain",
              pipeline="wxb.tasks.causal_lm.pipeline:TextGenerator",
              aliases=("text-generation",)))
register(Task("bert-pretrain", "pretrain BERT with masked-LM and next-sentence prediction",
              train="wxb.tasks.bert_pretrain.train:pretrain_bert"))
register(Task("pretrain-finetune", "pretrain BERT, then fine-tune it and a random twin",
              train="wxb.tasks.bert_pretrain.then_finetune:pretrain_then_finetune"))
register(Task("sft", "supervised fine-tuning of a causal LM on chat data",
              train="wxb.tasks.sft.train:train_sft"))
register(Task("dpo", "align a causal LM with preference pairs (DPO, IPO)",
              train="wxb.tasks.preference.train:train_dpo"))
register(Task("reward", "a reward model trained on preference pairs",
              train="wxb.tasks.preference.train:train_reward"))
register(Task("compare-finetune", "one fine-tuning run per variant (full, LoRA, QLoRA...)",
              train="wxb.tasks.compare_finetune:compare_finetune"))
register(Task("embed", "sentence embeddings from an encoder (sentence-transformers' pooling)",
              pipeline="wxb.tasks.embed.pipeline:SentenceEmbedder",
              aliases=("feature-extraction", "sentence-similarity")))
register(Task("question-answering", "extractive QA on SQuAD-format data, scored by EM and F1",
              train="wxb.tasks.question_answering.train:train_question_answering",
              pipeline="wxb.tasks.question_answering.pipeline:QuestionAnswerer",
              aliases=("qa",)))
register(Task("retrieval-eval", "dense, BM25 and hybrid retrieval scored side by side on sets",
              train="wxb.tasks.retrieval.evaluation:evaluate_retrieval"))
register(Task("rag-assistant", "a chat model answering from retrieved passages, on samples",
              train="wxb.tasks.retrieval.assistant:run_assistant"))
register(Task("speech-recognition", "fine-tune Whisper (or train one) on speech, scored by WER/CER",
              train="wxb.tasks.speech_recognition.train:train_speech_recognition",
              pipeline="wxb.tasks.speech_recognition.pipeline:Transcriber",
              aliases=("automatic-speech-recognition", "transcribe", "asr")))
register(Task("embedding-toy", "twelve sentiment words learned as points in two dimensions",
              train="wxb.tasks.embedding_toy.train:train_embedding_toy"))
register(Task("word-vectors", "Word2Vec, fastText or GloVe vectors trained on a corpus",
              train="wxb.tasks.word_vectors.train:train_word_vectors"))
register(Task("bilm", "pretrain ELMo's biLM (char CNN + forward and backward LSTM LMs) on text",
              train="wxb.tasks.bilm.train:train_bilm"))
register(Task("contextual-vectors", "one word in several senses through each layer of a biLM",
              train="wxb.tasks.contextual_vectors.train:train_contextual_vectors"))
