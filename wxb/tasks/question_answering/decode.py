"""Start and end scores -> answers, as ``transformers``' question-answering pipeline decides
them.

For each window of a question:

1. every position that cannot hold an answer (the question, the special tokens, padding) gets
   the logit -10000, except [CLS], which stays in (it stands for "no answer");
2. the start and end logits go through a softmax each; the *null score* is p_start(first
   token) x p_end(first token) (the first token is BERT's [CLS]); then [CLS] is taken out;
3. a span (start, end) scores p_start(start) x p_end(end), for end >= start and at most
   ``max_answer_len`` tokens; the best ``top_k * 2 + 10`` spans are kept (room for the ones
   that merge below; ``top_k`` without ``align_to_words``);
4. each span becomes characters of the context, widened to whole words
   (``align_to_words``), and its text is the context's slice; a span whose text (ignoring
   case) was already found, in this window or an earlier one, adds its score to that answer.

Then, with ``handle_impossible_answer``, the empty answer joins with the lowest null score of
the windows; the answers are sorted by score and the best ``top_k`` kept. Spans of zero
probability (only possible when a context has fewer spans than asked for) are left out, where
transformers would list them with a score of 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wxb.tasks.question_answering.features import Window

MASKED = -10000.0  # what transformers gives the positions that cannot be in an answer


def decode_answers(windows: Sequence[Window], start_logits: Sequence[np.ndarray],
                   end_logits: Sequence[np.ndarray], context: str, *,
                   cls_token_id: int | None, top_k: int = 1, max_answer_len: int = 15,
                   handle_impossible_answer: bool = False,
                   align_to_words: bool = True) -> tuple[list[dict[str, Any]], float]:
    """The best ``top_k`` answers ``{"score", "start", "end", "answer"}`` of one question
    from its windows' logits (each (seq,), the window's own length), best first, and the
    null score (the lowest over the windows: the probability given to "no answer")."""
    answers: list[dict[str, Any]] = []
    null = 1_000_000.0  # transformers' "large and positive" start
    for window, start, end in zip(windows, start_logits, end_logits, strict=True):
        ids = np.asarray(window.input_ids)
        allowed = np.array([o is not None for o in window.offsets])
        if cls_token_id is not None:
            allowed |= ids == cls_token_id
        p_start = _softmax(np.where(allowed, np.asarray(start, np.float32)[:len(ids)], MASKED))
        p_end = _softmax(np.where(allowed, np.asarray(end, np.float32)[:len(ids)], MASKED))
        null = min(null, float(p_start[0] * p_end[0]))
        p_start[0] = p_end[0] = 0.0
        # Room for spans that merge once widened to words (none merge without that).
        keep = top_k * 2 + 10 if align_to_words else top_k
        for first, last, score in _best_spans(p_start, p_end, allowed, keep, max_answer_len):
            begin, stop = _characters(window, first, last, align_to_words)
            text = context[begin:stop]
            same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
            if same is not None:
                same["score"] += score
            else:
                answers.append({"score": score, "start": begin, "end": stop, "answer": text})
    if handle_impossible_answer:
        answers.append({"score": null, "start": 0, "end": 0, "answer": ""})
    return sorted(answers, key=lambda a: a["score"], reverse=True)[:top_k], null


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def _best_spans(p_start: np.ndarray, p_end: np.ndarray, allowed: np.ndarray, k: int,
                max_answer_len: int) -> list[tuple[int, int, float]]:
    """The ``k`` best (start, end, probability) spans with end >= start, at most
    ``max_answer_len`` tokens long, both ends allowed, probability above 0; best first."""
    scores = np.tril(np.triu(np.outer(p_start, p_end)), max_answer_len - 1)
    flat = scores.ravel()
    k = min(k, flat.size)
    best = np.argpartition(-flat, k - 1)[:k] if k < flat.size else np.arange(flat.size)
    best = best[np.argsort(-flat[best], kind="stable")]
    starts, ends = np.unravel_index(best, scores.shape)
    return [(int(s), int(e), float(scores[s, e])) for s, e in zip(starts, ends, strict=True)
            if scores[s, e] > 0 and allowed[s] and allowed[e]]


def _characters(window: Window, first: int, last: int, align_to_words: bool) -> tuple[int, int]:
    """The characters of the context from token ``first`` to token ``last``; with
    ``align_to_words``, from the start of ``first``'s word to the end of ``last``'s (within
    the window, as the tokenizers library's ``word_to_chars`` sees it)."""
    offsets = [o or (0, 0) for o in window.offsets]  # a special token: (0, 0), as in tokenizers
    words = window.words
    if align_to_words and words[first] is not None and words[last] is not None:
        first = next(i for i, w in enumerate(words) if w == words[first])
        last = max(i for i, w in enumerate(words) if w == words[last])
    return offsets[first][0], offsets[last][1]
