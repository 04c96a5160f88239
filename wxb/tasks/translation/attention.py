"""The attention heatmap of one translation: which source tokens each output token read."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wxb.errors import ConfigError, DataError

if TYPE_CHECKING:
    from wxb.models.base import PreTrainedModel
    from wxb.tokenizers.base import Tokenizer


def plot_translation_attention(model: PreTrainedModel, source: Tokenizer, target: Tokenizer,
                               text: str, path: str | Path, gen: dict[str, Any], *,
                               title: str = "Attention") -> tuple[str, Path]:
    """Translate ``text`` (``gen``: ``generate``'s keyword arguments) and draw which source
    tokens each output token attended to; returns the translation and the PNG's path."""
    from wxb.generation import generate
    from wxb.viz import plot_attention

    if getattr(model, "attention", True) is None:
        raise ConfigError("this model has no attention (attention: none): nothing to draw")
    source_ids = source.encode(text)
    if not source_ids:
        raise DataError("the text to translate is empty")
    device = next(model.parameters()).device
    with torch.no_grad():
        output = generate(model, torch.tensor([source_ids], device=device), **gen)[0].tolist()
    if target.eos_token_id in output[1:]:  # what follows the eos is padding
        output = output[:output.index(target.eos_token_id, 1) + 1]
    weights = cross_attention(model, source_ids, output)
    translation = target.decode(output[1:], skip_special_tokens=True).strip()
    plot_attention(weights, token_labels(source, source_ids), token_labels(target, output[1:]),
                   path, title=title)
    return translation, Path(path)


def token_labels(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each token as text, for a plot's axis (a byte-level BPE token's own text, not its
    byte symbols)."""
    return [tokenizer.decode([i]).strip() or tokenizer.convert_ids_to_tokens(i) for i in ids]


@torch.no_grad()
def cross_attention(model: Any, source_ids: Sequence[int],
                    output_ids: Sequence[int]) -> np.ndarray:
    """How much each output token attended to each source token: (len(output_ids) - 1,
    len(source_ids)), for an output that starts with the decoder start token; the last
    decoder layer's weights, averaged over its heads."""
    source = torch.tensor([list(source_ids)], device=next(model.parameters()).device)
    output = torch.tensor([list(output_ids)], device=source.device)
    result = model(source, decoder_input_ids=output[:, :-1], output_attentions=True)
    if result.cross_attentions is None:
        raise ConfigError(f"{type(model).__name__} has no attention over the source "
                         "(attention: none)")
    return result.cross_attentions[-1][0].mean(dim=0).float().cpu().numpy()
