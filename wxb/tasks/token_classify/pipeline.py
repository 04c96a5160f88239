"""Named entities with a trained tagger, as ``transformers``' token-classification pipeline
answers with ``aggregation_strategy="simple"``: per text, ``[{"entity_group": "PER", "score":
0.99, "word": "Peter Blackburn", "start": 0, "end": 15}, ...]`` (the score is the mean
probability of the entity's tags). Words are the text's runs of non-space characters, as in the
CoNLL files the tagger learned from. A tagger with ELMo carries its biLM, which reads each
sentence here (framed by <S> and </S>) as it did before training."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from wxb.data.tagging import word_cases, word_ids
from wxb.data.text import PaddingCollator
from wxb.metrics import entities
from wxb.models.elmo import batch_to_ids
from wxb.tasks.models import load_with_head


class Tagger:
    """``tagger(texts)`` -> the entities of each text; ``tagger.tag(sentences)`` -> the tag
    of every word of each sentence (a list of words)."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None) -> None:
        self.model, self.tokenizer = load_with_head(folder, "TokenClassification", device)
        self.names = self.model.config.id2label or {}

    @torch.no_grad()
    def tag(self, sentences: list[list[str]], *, batch_size: int = 64
            ) -> tuple[list[list[str]], list[list[float]]]:
        """The best tag of every word and its probability, per sentence."""
        examples = [{"input_ids": ids} for ids in word_ids(self.tokenizer, sentences)]
        if getattr(self.model.config, "case_embedding_size", 0):
            for example, cases in zip(examples, word_cases(sentences), strict=True):
                example["case_ids"] = cases
        collate = PaddingCollator(self.tokenizer.pad_token_id)
        tags: list[list[str]] = []
        scores: list[list[float]] = []
        elmo = getattr(self.model, "elmo", None)
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start:start + batch_size])
            if elmo is not None:
                batch["char_ids"], _ = batch_to_ids(sentences[start:start + batch_size],
                                                    elmo.config.max_characters_per_token)
            lengths = batch["attention_mask"].sum(1).tolist()
            batch = {k: v.to(self.model.device) for k, v in batch.items()}
            best = self.model(**batch).logits.float().softmax(-1).max(-1)
            for n, p, i in zip(lengths, best.values.tolist(), best.indices.tolist(), strict=True):
                tags.append([self.names.get(j, f"LABEL_{j}") for j in i[:n]])
                scores.append(p[:n])
        return tags, scores

    def __call__(self, texts: str | list[str], *, batch_size: int = 64) -> list[Any]:
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        spans = [[m.span() for m in re.finditer(r"\S+", text)] for text in texts]
        wordy = [i for i, s in enumerate(spans) if s]  # a blank text has no entities
        tags, scores = self.tag([[texts[i][a:b] for a, b in spans[i]] for i in wordy],
                                batch_size=batch_size)
        results: list[list[dict[str, Any]]] = [[] for _ in texts]
        for i, sentence_tags, sentence_scores in zip(wordy, tags, scores, strict=True):
            for kind, first, last in sorted(entities(sentence_tags), key=lambda e: e[1]):
                start, end = spans[i][first][0], spans[i][last][1]
                part = sentence_scores[first:last + 1]
                results[i].append({"entity_group": kind, "score": sum(part) / len(part),
                                   "word": texts[i][start:end], "start": start, "end": end})
        return results[0] if single else results
