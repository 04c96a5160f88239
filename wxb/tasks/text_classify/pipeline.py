"""Text classification with a fine-tuned checkpoint, as ``transformers``' text-classification
pipeline answers: ``[{"label": "positive", "score": 0.98}, ...]`` (the softmax probability of
the best class), or every class's score with ``top_k=None``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from wxb.tasks.models import load_with_head


class TextClassifier:
    """``classifier(texts)`` -> one ``{"label", "score"}`` per text; ``text_pair`` for
    sentence-pair models (AFQMC, NLI)."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None,
                 max_length: int | None = None) -> None:
        self.model, self.tokenizer = load_with_head(folder, "SequenceClassification", device)
        # A model with positions reads at most that many tokens; a recurrent one any number.
        self.max_length = max_length or getattr(self.model.config, "max_position_embeddings", None)
        self.names = self.model.config.id2label or {}

    @torch.no_grad()
    def __call__(self, texts: str | list[str], text_pair: str | list[str] | None = None, *,
                 top_k: int | None = 1, batch_size: int = 32) -> list[Any]:
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        pairs = [text_pair] if isinstance(text_pair, str) else text_pair
        results = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[start:start + batch_size],
                                 None if pairs is None else pairs[start:start + batch_size],
                                 padding=True, truncation=self.max_length is not None,
                                 max_length=self.max_length,
                                 return_tensors="pt", return_token_type_ids=True)
            enc = {k: v.to(self.model.device) for k, v in enc.items()
                   if k in ("input_ids", "attention_mask", "token_type_ids")}
            probs = self.model(**enc).logits.float().softmax(-1).cpu()
            for row in probs:
                ranked = [{"label": self.names.get(i, f"LABEL_{i}"), "score": float(row[i])}
                          for i in row.argsort(descending=True).tolist()]
                results.append(ranked[0] if top_k == 1 else ranked[:top_k])
        return results
