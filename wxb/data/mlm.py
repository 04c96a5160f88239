"""BERT's pretraining data: masked-language-model batches and next-sentence pairs.

Masking (Devlin et al., 2018, section 3.1): choose 15% of the real tokens (never [CLS], [SEP],
[PAD] or other special tokens); of the chosen, 80% become [MASK], 10% a random token, 10% stay
as they are. The labels hold the original token at the chosen positions and -100 elsewhere, so
the loss counts only them. With whole-word masking the choice is made per word: every token of
a chosen word is masked together (for Chinese, BERT's tokenizer splits text into characters, and
jieba says which characters form a word).

Next-sentence prediction: sentence A is followed by its true next sentence (label 0) or by a
random sentence from another document (label 1), half the time each.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from typing import Any

import torch

from wxb.data.text import pad
from wxb.errors import DataError

IGNORE = -100


class MLMCollator:
    """Pads examples (dicts with ``input_ids``, optionally ``token_type_ids``,
    ``next_sentence_label`` and ``word_ids``) into a batch and masks it.

    ``word_ids`` gives each token's word index (None for special tokens); with
    ``whole_word_mask=True`` it decides which tokens are masked together. The collator keeps its
    own seeded generator, so a run's masks are reproducible. Examples that already carry
    ``labels`` (a validation set masked once, so that every evaluation scores the same
    positions) are padded as they are.
    """

    def __init__(self, tokenizer: Any, mlm_probability: float = 0.15, *,
                 mask_replace: float = 0.8, random_replace: float = 0.1,
                 whole_word_mask: bool = False, seed: int = 0) -> None:
        if not 0 < mlm_probability < 1:
            raise DataError(f"mlm_probability must be between 0 and 1, got {mlm_probability}")
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise DataError("masked-LM batches need a tokenizer with [MASK] and [PAD] tokens")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.mask_replace, self.random_replace = mask_replace, random_replace
        self.whole_word_mask = whole_word_mask
        self.generator = torch.Generator().manual_seed(seed)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = pad([e["input_ids"] for e in examples], self.tokenizer.pad_token_id)
        batch = {"input_ids": ids, "attention_mask": pad(
            [[1] * len(e["input_ids"]) for e in examples], 0)}
        if "token_type_ids" in examples[0]:
            batch["token_type_ids"] = pad([e["token_type_ids"] for e in examples], 0)
        if "next_sentence_label" in examples[0]:
            batch["next_sentence_label"] = torch.tensor(
                [int(e["next_sentence_label"]) for e in examples])
        if "labels" in examples[0]:
            batch["labels"] = pad([e["labels"] for e in examples], IGNORE)
            return batch
        maskable = (batch["attention_mask"] == 1) & ~torch.isin(ids, self.special)
        if self.whole_word_mask:
            chosen = self._choose_words(examples, maskable)
        else:
            chosen = self._draw(maskable.shape) < self.mlm_probability
        chosen &= maskable
        labels = torch.where(chosen, ids, IGNORE)
        roll = self._draw(ids.shape)
        to_mask = chosen & (roll < self.mask_replace)
        to_random = chosen & (roll >= self.mask_replace) & (
            roll < self.mask_replace + self.random_replace)
        random_ids = torch.randint(self.tokenizer.vocab_size, ids.shape,
                                   generator=self.generator)
        ids = torch.where(to_mask, self.tokenizer.mask_token_id, ids)
        batch["input_ids"] = torch.where(to_random, random_ids, ids)
        batch["labels"] = labels
        return batch

    def _draw(self, shape: torch.Size) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator)

    def _choose_words(self, examples: Sequence[dict[str, Any]],
                      maskable: torch.Tensor) -> torch.Tensor:
        chosen = torch.zeros_like(maskable)
        for row, example in enumerate(examples):
            words = example.get("word_ids")
            if words is None:
                raise DataError("whole_word_mask needs each example's word_ids (the word index "
                                "of every token, None for special tokens)")
            picked = {w for w in set(words) - {None}
                      if float(self._draw(torch.Size([]))) < self.mlm_probability}
            chosen[row, :len(words)] = torch.tensor([w in picked for w in words])
        return chosen


def mask_once(examples: Sequence[dict[str, Any]], collator: MLMCollator,
              batch_size: int = 256) -> list[dict[str, list[int]]]:
    """``examples`` masked by ``collator`` now, once: each keeps its own length, with
    ``labels`` (-100 where nothing is to be predicted). The collator pads them as they are."""
    masked = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        batch = collator(chunk)
        for row, example in enumerate(chunk):
            n = len(example["input_ids"])
            masked.append({**{k: v[row, :n].tolist() for k, v in batch.items()
                              if k in ("input_ids", "token_type_ids", "labels")},
                           **({"next_sentence_label": int(batch["next_sentence_label"][row])}
                              if "next_sentence_label" in batch else {})})
    return masked


def chinese_word_ids(text: str | Sequence[str], tokenizer: Any,
                     text_pair: str | Sequence[str] | None = None,
                     **encode_kwargs: Any) -> dict[str, list]:
    """Encode ``text`` (and ``text_pair``; one or a batch) and give each token the index of
    the jieba word it falls in; the words of the pair's second text are numbered after the
    first's.

    Returns the tokenizer's encoding (``input_ids``, ...) plus ``word_ids``, ready for
    ``MLMCollator(whole_word_mask=True)``.
    """
    import jieba

    single = isinstance(text, str)
    texts = [text] if single else list(text)
    pairs = None if text_pair is None else (
        [text_pair] if isinstance(text_pair, str) else list(text_pair))
    encoding = dict(tokenizer(texts, pairs, return_offsets_mapping=True,
                              return_special_tokens_mask=True, return_token_type_ids=True,
                              **encode_kwargs))
    offsets = encoding.pop("offset_mapping")
    special = encoding.pop("special_tokens_mask")
    word_ids = []
    for row, first in enumerate(texts):
        starts = [[s for _, s, _ in jieba.tokenize(first)]]
        if pairs is not None:
            starts.append([s for _, s, _ in jieba.tokenize(pairs[row])])
        segments = encoding["token_type_ids"][row]
        ids = []
        for (begin, end), is_special, segment in zip(offsets[row], special[row], segments,
                                                     strict=True):
            if is_special or begin == end:
                ids.append(None)
                continue
            before = len(starts[0]) if segment == 1 else 0
            ids.append(before + bisect.bisect_right(starts[segment], begin) - 1)
        word_ids.append(ids)
    encoding["word_ids"] = word_ids
    if "token_type_ids" not in tokenizer.model_input_names:
        encoding.pop("token_type_ids")
    return {k: v[0] for k, v in encoding.items()} if single else encoding


def nsp_pairs(documents: Sequence[Sequence[str]], seed: int = 0) -> list[dict[str, Any]]:
    """Sentence pairs for next-sentence prediction from documents (lists of sentences).

    For each sentence but a document's last: with probability 1/2 the next sentence of the same
    document (``next_sentence_label`` 0), otherwise a random sentence of another document (1).
    """
    if sum(1 for d in documents if d) < 2:
        raise DataError("next-sentence pairs need at least two non-empty documents, so that a "
                        "random sentence can come from another one")
    rng = random.Random(seed)
    nonempty = [j for j, doc in enumerate(documents) if doc]
    pairs = []
    for index, doc in enumerate(documents):
        for i in range(len(doc) - 1):
            if rng.random() < 0.5:
                pairs.append({"text_a": doc[i], "text_b": doc[i + 1], "next_sentence_label": 0})
                continue
            other = index
            while other == index:  # any other document (two tries on average, at most)
                other = rng.choice(nonempty)
            pairs.append({"text_a": doc[i], "text_b": rng.choice(documents[other]),
                          "next_sentence_label": 1})
    return pairs
