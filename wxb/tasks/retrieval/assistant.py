"""The retrieval-augmented assistant as a recipe (task ``rag-assistant``): index the documents,
then answer sample questions with ``wxb.rag.assistant.Assistant`` and record each answer, its
sources and whether the gold passage was retrieved.

    model:     {pretrained: HuggingFaceTB/SmolLM2-135M-Instruct-GGUF}   # the chat model
    embedder:  {pretrained: sentence-transformers/all-MiniLM-L6-v2}
    data:      {path: course/faq_hsinchu.csv, template: "問：{question}\\n答：{answer}",
                chunk_size: 4096, overlap: 0}        # as `wxb rag index`'s flags
    assistant: {system_prompt: "你是客服人員…\\n\\n{passages}", k: 10, method: hybrid,
                fusion: convex, dense_weight: 0.2,     # recorded in the index
                max_new_tokens: 200, generation: {repetition_penalty: 1.2}}
    samples:   {questions: [{question: "...", gold: "faq_hsinchu:3"}, ...],
                one_conversation: true}

The index is written to ``<output_dir>/index`` (so ``wxb rag chat runs/<recipe>/index --model
DIR`` talks with the same assistant). With ``one_conversation`` the questions are the turns of
one chat (each answer joins the history of the next, which the result keeps as
``conversation``); otherwise each is asked alone. A question's ``gold`` is the document id (or
ids) that should be retrieved for it; ``retrieval_hit_rate`` is the share of questions whose
gold was among the passages the model was given.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Literal

from wxb.errors import ConfigError
from wxb.tasks.data import require
from wxb.tasks.models import ChatModelSection
from wxb.tasks.retrieval.evaluation import EmbedderSection
from wxb.tasks.run import Run
from wxb.tasks.sections import Section

METRICS = ("retrieval_hit_rate", "mean_answer_seconds")


@dataclasses.dataclass
class AnswerModelSection(ChatModelSection):
    """The chat model that answers: a folder, .gguf file or hub id, with a ``chat_template``
    for a tokenizer that has none (a plain "Role: text" format is used without one)."""

    def check(self) -> None:
        require(self, "pretrained", "the chat model that answers, e.g. model: {pretrained: "
                "runs/sft-chat-zh/plain/model}")


@dataclasses.dataclass
class DocumentsSection(Section):
    """The documents to index, as ``wxb rag index`` reads them (``wxb.rag.documents``), and
    how they are chunked."""

    path: str | None = None
    column: str = "text"
    template: str | None = None
    id_column: str = "id"
    chunk_by: Literal["tokens", "sentences", "paragraphs"] = "tokens"
    chunk_size: int | None = None
    overlap: int | None = None

    def check(self) -> None:
        from wxb.rag.chunk import chunk_settings

        require(self, "path", "the documents to answer from, e.g. course/faq_hsinchu.csv")
        self.chunk_size, self.overlap = chunk_settings(self.chunk_by, self.chunk_size,
                                                       self.overlap)


@dataclasses.dataclass
class AssistantSection(Section):
    """The system prompt (``{passages}`` where the numbered passages go), the passages a turn
    (``k``), the retrieval ``method`` (for hybrid: its ``fusion`` and ``dense_weight``, as
    ``wxb rag index``'s flags, recorded in the index), and the answer's length and other
    generation settings (GenerationConfig fields; greedy unless they say ``do_sample``)."""

    system_prompt: str | None = None
    k: int = 10
    method: Literal["dense", "bm25", "hybrid"] = "dense"
    fusion: Literal["rrf", "convex"] = "rrf"
    dense_weight: float = 0.5
    max_new_tokens: int = 256
    generation: dict = dataclasses.field(default_factory=dict)

    def check(self) -> None:
        from wxb.rag.prompt import SYSTEM_TEMPLATE, check_template

        if self.system_prompt is None:
            self.system_prompt = SYSTEM_TEMPLATE
        check_template(self.system_prompt, "assistant.system_prompt")
        for key in ("k", "max_new_tokens"):
            if getattr(self, key) < 1:
                raise ConfigError(f"assistant.{key} must be at least 1, got "
                                  f"{getattr(self, key)}")
        if not 0 <= self.dense_weight <= 1:
            raise ConfigError(f"assistant.dense_weight must be from 0 to 1, got "
                              f"{self.dense_weight}")


@dataclasses.dataclass
class SamplesSection(Section):
    """The questions answered (``{question, gold}``, gold a document id or a list of them),
    as the turns of one conversation or each alone."""

    questions: list[dict] = dataclasses.field(default_factory=list)
    one_conversation: bool = True

    def check(self) -> None:
        if not self.questions:
            raise ConfigError("samples.questions is required: a list of {question, gold}, "
                              "gold the document id that should be retrieved")
        for number, sample in enumerate(self.questions):
            where = f"samples.questions[{number}]"
            gold = sample.get("gold") if isinstance(sample, dict) else None
            if isinstance(gold, str):
                gold = [gold]
            if (not isinstance(sample, dict) or set(sample) - {"question", "gold"}
                    or not isinstance(sample.get("question"), str)
                    or not sample["question"].strip() or not isinstance(gold, list)
                    or not gold or not all(isinstance(g, str) for g in gold)):
                raise ConfigError(f"{where} must be {{question: text, gold: document id or "
                                  f"[ids]}}, got {sample!r}")
            sample["gold"] = gold


SECTIONS = {"model": AnswerModelSection, "embedder": EmbedderSection,
            "data": DocumentsSection, "assistant": AssistantSection, "samples": SamplesSection}


def run_assistant(config: dict[str, Any], *, resume: bool | str = False,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Index the documents and answer the sample questions; return the result (also written
    to ``result.json``). ``resume`` is accepted for the registry's signature: nothing here
    trains."""
    from wxb.hub import resolve
    from wxb.rag.assistant import Assistant
    from wxb.rag.embed import Embedder
    from wxb.rag.index import index_files
    from wxb.rag.retrieve import Fusion, Retriever
    from wxb.tasks.models import load_chat_model

    run = Run("rag-assistant", config, SECTIONS, log=log)
    run.expect(METRICS)
    data, settings, samples = run["data"], run["assistant"], run["samples"]
    embedder = Embedder(resolve(run["embedder"].pretrained))
    index = index_files([data.path], embedder, run.output_dir / "index", column=data.column,
                        template=data.template, id_column=data.id_column,
                        chunk_by=data.chunk_by, chunk_size=data.chunk_size,
                        overlap=data.overlap,
                        fusion=Fusion(settings.fusion, settings.dense_weight), log=run.log)
    known = {c.document_id for c in index.chunks}
    for number, sample in enumerate(samples.questions):
        missing = [g for g in sample["gold"] if g not in known]
        if missing:
            raise ConfigError(f"samples.questions[{number}].gold {missing[0]!r} is not a "
                              f"document of {data.path} (its ids look like "
                              f"{index.chunks[0].document_id!r})")
    model, tokenizer = load_chat_model(run["model"].pretrained, run["model"].chat_template,
                                       require_template=False)
    assistant = Assistant(Retriever(index, embedder), model, tokenizer,
                          settings.system_prompt, k=settings.k, method=settings.method,
                          max_new_tokens=settings.max_new_tokens,
                          **settings.generation)
    answers, history = [], []
    for sample in samples.questions:
        start = time.perf_counter()
        turn = assistant.reply(history if samples.one_conversation else [],
                               sample["question"])
        seconds = time.perf_counter() - start
        history = turn.history
        retrieved = [s["document_id"] for s in turn.sources]
        rank = next((n for n, doc in enumerate(retrieved, start=1) if doc in sample["gold"]),
                    None)
        answers.append({"question": sample["question"], "gold": sample["gold"],
                        "answer": turn.text, "hit": rank is not None, "gold_rank": rank,
                        "sources": [{k: v for k, v in s.items() if k != "text"}
                                    for s in turn.sources],
                        "dropped_passages": turn.dropped, "query_truncated": turn.truncated,
                        "seconds": round(seconds, 2)})
        run.log(f"Q: {sample['question']}\n   gold {'hit at ' + str(rank) if rank else 'MISSED'}"
                f"; A ({seconds:.1f} s): {turn.text}")
    metrics = {"retrieval_hit_rate": sum(a["hit"] for a in answers) / len(answers),
               "mean_answer_seconds": sum(a["seconds"] for a in answers) / len(answers)}
    return run.finish(metrics, metric="retrieval_hit_rate",
                      model_dir=str(run["model"].pretrained), answers=answers,
                      conversation=history if samples.one_conversation else None,
                      index=str(run.output_dir / "index"), embedder=index.embedder,
                      num_passages=len(index))
