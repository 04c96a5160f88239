"""Questions and contexts -> model inputs: question-first windows over long contexts, and the
start / end labels of the answers they hold.

A window is ``[CLS] question [SEP] part of the context [SEP]`` (the tokenizer's pair template),
at most ``max_length`` tokens. The question is kept whole; a context too long for one window
is cut into several that overlap by ``doc_stride`` tokens, exactly as the ``tokenizers``
library's ``truncation="only_second"`` with ``return_overflowing_tokens=True, stride=
doc_stride`` cuts it (what ``transformers``' question-answering pipeline and run_qa.py use):
each window holds ``room = max_length - question tokens - special tokens`` context tokens, the
next one starting ``room - doc_stride`` tokens later, until one reaches the end.

Every context token keeps its character span in the context (``offsets``) and the index of the
word it belongs to (``words``: the ``tokenizers`` library's word ids where the tokenizer is a
``tokenizer.json``; for wxb's WordPiece, a word goes on while its pieces start with ``##``;
elsewhere each token is its own word), so that an answer comes back as a slice of the original
context and can be widened to whole words.

Training labels: an answer's first and last tokens when the window holds the whole answer,
else (and for an unanswerable question) the [CLS] token, index 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from wxb.data.text import pad
from wxb.errors import ConfigError, DataError

Span = tuple[int, int]


@dataclasses.dataclass
class Window:
    """One model input: ``input_ids`` and ``token_type_ids`` (seq,); for each position, its
    character span in the context (``offsets``, None outside the context) and its context
    word (``words``); the index of its ``question`` in the batch encoded; the labels."""

    question: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[Span | None]
    words: list[int | None]
    start_position: int = 0
    end_position: int = 0

    def inputs(self, *, labels: bool = False) -> dict[str, Any]:
        """The example the collator pads (with the labels when training)."""
        example: dict[str, Any] = {"input_ids": self.input_ids,
                                   "token_type_ids": self.token_type_ids}
        if labels:
            example.update(start_positions=self.start_position,
                           end_positions=self.end_position)
        return example


def check_lengths(max_length: int, doc_stride: int) -> None:
    """Refuse windows that could not advance along a long context."""
    if max_length < 1 or doc_stride < 0:
        raise ConfigError(f"max_length must be >= 1 and doc_stride >= 0, got {max_length} "
                          f"and {doc_stride}")
    if doc_stride >= max_length:
        raise ConfigError(f"doc_stride {doc_stride} must be less than max_length {max_length}: "
                          "windows overlap by doc_stride tokens and must move on")


def encode_windows(tokenizer: Any, questions: Sequence[str], contexts: Sequence[str], *,
                   max_length: int, doc_stride: int,
                   answers: Sequence[tuple[int, str] | None] | None = None,
                   ids: Sequence[str] | None = None) -> list[Window]:
    """The windows of every (question, context), in order.

    ``answers`` (for training): per question, (first character, text) of its answer in the
    context, or None for an unanswerable one; each window gets its start / end labels.
    ``ids`` name the questions in errors.
    """
    check_lengths(max_length, doc_stride)
    question_ids = tokenizer(list(questions), add_special_tokens=False)["input_ids"]
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    cls_id = tokenizer.cls_token_id
    windows: list[Window] = []
    for i, (question, context) in enumerate(zip(question_ids, contexts, strict=True)):
        name = ids[i] if ids is not None else str(i)
        room = max_length - len(question) - specials
        context_ids, offsets, words = context_tokens(tokenizer, context)
        if room < 1:
            raise DataError(f"question {name} has {len(question)} tokens: with the "
                            f"{specials} special tokens, max_length {max_length} leaves no "
                            "room for the context; raise max_length")
        if len(context_ids) > room and doc_stride >= room:
            raise DataError(f"question {name} has {len(question)} tokens: its windows hold "
                            f"{room} context tokens, not more than doc_stride {doc_stride}, "
                            "so they could not move on; raise max_length or lower doc_stride")
        for start, stop in _window_ranges(len(context_ids), room, doc_stride):
            window = _window(tokenizer, i, question, context_ids[start:stop],
                             offsets[start:stop], words[start:stop])
            if answers is not None:
                if cls_id is None or cls_id not in window.input_ids:
                    raise ConfigError("training question answering needs a tokenizer whose "
                                      "pair template has a [CLS] token (where an answer that "
                                      "is not in a window points)")
                window.start_position, window.end_position = label(
                    window, answers[i], window.input_ids.index(cls_id))
            windows.append(window)
    return windows


def context_tokens(tokenizer: Any, text: str) -> tuple[list[int], list[Span], list[int]]:
    """The ids of ``text`` without special tokens, each one's character span, and each one's
    word index (see the module docstring)."""
    backend = getattr(tokenizer, "backend", None)
    if backend is not None:  # a tokenizer.json: the tokenizers library knows the words
        encoding = backend.encode(text, add_special_tokens=False)
        return list(encoding.ids), list(encoding.offsets), list(encoding.word_ids)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], [tuple(o) for o in encoded["offset_mapping"]]
    words, word = [], -1
    wordpiece = getattr(tokenizer, "kind", "") == "wordpiece"
    for token in tokenizer.convert_ids_to_tokens(ids):
        if not (wordpiece and word >= 0 and str(token).startswith("##")):
            word += 1
        words.append(word)
    return ids, offsets, words


def _window_ranges(length: int, room: int, stride: int) -> list[Span]:
    """The [start, stop) token ranges of the context each window holds."""
    if length <= room:
        return [(0, length)]
    ranges = []
    for start in range(0, length, room - stride):
        ranges.append((start, min(start + room, length)))
        if start + room >= length:
            break
    return ranges


def _window(tokenizer: Any, index: int, question: list[int], context: list[int],
            offsets: list[Span], words: list[int]) -> Window:
    """The question and one part of the context wrapped in the pair template's tokens."""
    window = Window(index, [], [], [], [])
    for item in tokenizer.template["pair"]:
        name, _, type_id = item.partition(":")
        if name in ("$A", "$B"):
            ids = question if name == "$A" else context
            window.input_ids += ids
            window.offsets += [None] * len(ids) if name == "$A" else offsets
            window.words += [None] * len(ids) if name == "$A" else words
        else:
            window.input_ids.append(tokenizer.token_to_id(name))
            window.offsets.append(None)
            window.words.append(None)
        window.token_type_ids += [int(type_id or 0)] * (len(window.input_ids)
                                                        - len(window.token_type_ids))
    return window


def label(window: Window, answer: tuple[int, str] | None, cls_index: int) -> Span:
    """The (start, end) token positions of ``answer`` (first character, text) in ``window``:
    its first and last tokens when the window's context holds the whole answer (spaces around
    the text left out), else (cls_index, cls_index)."""
    if answer is None:
        return cls_index, cls_index
    first, text = answer
    begin = first + len(text) - len(text.lstrip())
    end = first + len(text.rstrip())
    inside = [i for i, o in enumerate(window.offsets) if o is not None]
    if not inside or window.offsets[inside[0]][0] > begin or window.offsets[inside[-1]][1] < end:
        return cls_index, cls_index
    start = max(i for i in inside if window.offsets[i][0] <= begin)
    stop = min(i for i in inside if i >= start and window.offsets[i][1] >= end)
    return start, stop


class WindowDataset(torch.utils.data.Dataset):
    """Windows as the Trainer's examples (``labels``: with start / end positions)."""

    def __init__(self, windows: Sequence[Window], *, labels: bool = False) -> None:
        self.windows, self.labels = list(windows), labels

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.windows[i].inputs(labels=self.labels)


class WindowCollator:
    """Windows -> a batch padded to its longest: ``input_ids`` (pad id), ``token_type_ids``
    (0), ``attention_mask``, and ``start_positions`` / ``end_positions`` (batch,) when the
    examples carry them. ``token_type_ids`` go in only for tokenizers that return them."""

    def __init__(self, pad_token_id: int, token_type_ids: bool = True) -> None:
        self.pad_token_id, self.token_type_ids = pad_token_id, token_type_ids

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = [e["input_ids"] for e in examples]
        batch = {"input_ids": pad(ids, self.pad_token_id),
                 "attention_mask": pad([[1] * len(i) for i in ids], 0)}
        if self.token_type_ids:
            batch["token_type_ids"] = pad([e["token_type_ids"] for e in examples], 0)
        for key in ("start_positions", "end_positions"):
            if key in examples[0]:
                batch[key] = torch.tensor([e[key] for e in examples])
        return batch
