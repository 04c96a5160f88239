"""Sentence embeddings from an encoder folder, as sentence-transformers makes them.

    texts -> tokenizer (truncated to max_seq_length) -> encoder -> last hidden states
          -> pooling over the real tokens (mean, [CLS], max or mean * sqrt(length))
          -> L2 normalisation (when the folder's modules.json lists a Normalize step)

A sentence-transformers folder (all-MiniLM-L6-v2, say) describes the pooling in
``1_Pooling/config.json``, the length in ``sentence_bert_config.json`` and the steps in
``modules.json``; a plain BERT folder gets mean pooling, normalised, over at most 512 tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from wxb.errors import CheckpointError, ConfigError

POOLING_MODES = ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(batch, seq, dim) hidden states -> (batch, dim), over the positions the mask keeps."""
    if mode == "cls_token":
        return hidden[:, 0]
    mask = attention_mask[..., None].to(hidden.dtype)
    if mode == "max_tokens":
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).amax(dim=1)
    lengths = mask.sum(dim=1).clamp(min=1e-9)
    summed = (hidden * mask).sum(dim=1)
    return summed / (lengths.sqrt() if mode == "mean_sqrt_len_tokens" else lengths)


class SentenceEmbedder:
    """``embedder(texts)`` -> (len(texts), dim) float32 embeddings; ``similarity(a, b)`` ->
    the cosine similarity matrix."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None) -> None:
        import wxb
        from wxb.models.bert import BertModel

        self.folder = Path(folder)
        model = wxb.from_pretrained(self.folder)
        if not isinstance(model, BertModel):
            raise ConfigError(f"{folder} holds a {type(model).__name__}; sentence embeddings "
                              "need an encoder checkpoint (BertModel)")
        self.model = model.eval().to(device or "cpu")
        self.tokenizer = wxb.load_tokenizer(self.folder)
        self.pooling = self._read_pooling()
        steps = self._read_json("modules.json", default=None)
        self.normalize = steps is None or any(
            str(step.get("type", "")).endswith("Normalize") for step in steps)
        settings = self._read_json("sentence_bert_config.json", default={})
        self.max_length = int(settings.get("max_seq_length",
                                           model.config.max_position_embeddings))

    def _read_json(self, name: str, default: Any) -> Any:
        path = self.folder / name
        if not path.is_file():
            return default
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CheckpointError(f"{path} is not valid JSON ({err})") from None

    def _read_pooling(self) -> str:
        config = self._read_json("1_Pooling/config.json", default={})
        chosen = [m for m in POOLING_MODES if config.get(f"pooling_mode_{m}")]
        if len(chosen) > 1:
            raise ConfigError(f"{self.folder}/1_Pooling/config.json turns on several pooling "
                              f"modes ({', '.join(chosen)}); wxb pools one way")
        return chosen[0] if chosen else "mean_tokens"

    @torch.no_grad()
    def __call__(self, texts: str | list[str], batch_size: int = 32) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        # Longest first, as sentence-transformers does: texts of similar length share a
        # batch and pad less (padding changes no vector); the result is in the given order.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = []
        for start in range(0, len(texts), batch_size):
            batch = [texts[i] for i in order[start:start + batch_size]]
            enc = self.tokenizer(batch, padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            enc = {k: v.to(self.model.device) for k, v in enc.items()
                   if k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self.model(**enc).last_hidden_state
            vectors = pool(hidden, enc["attention_mask"], self.pooling)
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
            out.append(vectors.float().cpu())
        dim = self.model.config.hidden_size
        if not out:
            return torch.empty(0, dim)
        vectors = torch.empty(len(texts), out[0].shape[-1])
        vectors[torch.tensor(order)] = torch.cat(out)
        return vectors

    def similarity(self, a: str | list[str], b: str | list[str]) -> torch.Tensor:
        x = torch.nn.functional.normalize(self(a), dim=-1)
        y = torch.nn.functional.normalize(self(b), dim=-1)
        return x @ y.T
