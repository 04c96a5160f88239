"""Extractive question answering with a trained folder, as ``transformers``' question-answering
pipeline answers: ``qa(question="Where do I live?", context="My name is Wolfgang and I live in
Berlin")`` -> ``{"score": 0.92, "start": 34, "end": 40, "answer": "Berlin"}``, the answer being
the characters ``context[start:end]``; a list of the best ones with ``top_k > 1``.

The context is read in question-first windows (``features``) and the answer chosen over all of
them (``decode``); both follow the pipeline step by step, so the same folder gives the same
spans and scores here and in transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wxb.errors import ConfigError
from wxb.tasks.models import load_with_head
from wxb.tasks.question_answering.decode import decode_answers
from wxb.tasks.question_answering.features import WindowCollator, encode_windows

Answer = dict[str, Any]
DEFAULT_MAX_SEQ_LEN = 384  # transformers' default window, and its longest doc_stride
DEFAULT_DOC_STRIDE = 128


class QuestionAnswerer:
    """``qa(question=..., context=...)`` -> the answer found in the context (see the module
    docstring); lists of questions and contexts (or one context for every question) give one
    result each."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None) -> None:
        self.model, self.tokenizer = load_with_head(folder, "QuestionAnswering", device)

    def __call__(self, question: str | list[str], context: str | list[str], *,
                 top_k: int = 1, doc_stride: int | None = None, max_answer_len: int = 15,
                 max_seq_len: int | None = None, handle_impossible_answer: bool = False,
                 align_to_words: bool = True, batch_size: int = 32) -> Any:
        """The answer(s): one dict, or a list of them when more than one is asked for and
        found. ``max_seq_len`` defaults to 384 (or less, when the model reads fewer tokens),
        ``doc_stride`` to half that, at most 128, as in transformers."""
        single = isinstance(question, str)
        questions = [question] if single else list(question)
        contexts = [context] * len(questions) if isinstance(context, str) else list(context)
        if len(contexts) != len(questions):
            raise ConfigError(f"got {len(questions)} questions and {len(contexts)} contexts; "
                              "give one context, or one per question")
        if top_k < 1 or max_answer_len < 1:
            raise ConfigError(f"top_k and max_answer_len must be >= 1, got {top_k} and "
                              f"{max_answer_len}")
        if max_seq_len is None:
            limits = (self.tokenizer.model_max_length,
                      getattr(self.model.config, "max_position_embeddings", None))
            max_seq_len = min([DEFAULT_MAX_SEQ_LEN, *(n for n in limits if n)])
        if doc_stride is None:
            doc_stride = min(max_seq_len // 2, DEFAULT_DOC_STRIDE)
        found = answer_questions(self.model, self.tokenizer, questions, contexts,
                                 max_length=max_seq_len, doc_stride=doc_stride, top_k=top_k,
                                 max_answer_len=max_answer_len,
                                 handle_impossible_answer=handle_impossible_answer,
                                 align_to_words=align_to_words, batch_size=batch_size)
        results = [answers[0] if len(answers) == 1 else answers for answers, _ in found]
        return results[0] if single else results


@torch.no_grad()
def answer_questions(model: Any, tokenizer: Any, questions: Sequence[str],
                     contexts: Sequence[str], *, max_length: int, doc_stride: int,
                     top_k: int = 1, max_answer_len: int = 15,
                     handle_impossible_answer: bool = False, align_to_words: bool = True,
                     batch_size: int = 32, ids: Sequence[str] | None = None
                     ) -> list[tuple[list[Answer], float]]:
    """For each (question, context): its best ``top_k`` answers and its null score (the
    probability the model gives to "no answer"). The windows of all the questions go through
    the model in batches of ``batch_size``; ``ids`` name the questions in errors."""
    windows = encode_windows(tokenizer, questions, contexts, max_length=max_length,
                             doc_stride=doc_stride, ids=ids)
    collate = WindowCollator(tokenizer.pad_token_id or 0,
                             "token_type_ids" in tokenizer.model_input_names)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # Windows of similar length together: less padding, and padding changes no real position.
    order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
    by_window: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for begin in range(0, len(order), batch_size):
        chunk = order[begin:begin + batch_size]
        batch = collate([windows[i].inputs() for i in chunk])
        out = model(**{k: v.to(device) for k, v in batch.items()})
        start, end = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
        for row, i in enumerate(chunk):
            n = len(windows[i].input_ids)
            by_window[i] = start[row, :n], end[row, :n]
    model.train(was_training)
    grouped: list[list[int]] = [[] for _ in questions]
    for i, window in enumerate(windows):
        grouped[window.question].append(i)
    results = []
    for q, members in enumerate(grouped):
        starts = [by_window[i][0] for i in members]
        ends = [by_window[i][1] for i in members]
        results.append(decode_answers([windows[i] for i in members], starts, ends, contexts[q],
                                      cls_token_id=tokenizer.cls_token_id, top_k=top_k,
                                      max_answer_len=max_answer_len,
                                      handle_impossible_answer=handle_impossible_answer,
                                      align_to_words=align_to_words))
    return results
