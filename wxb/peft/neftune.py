"""NEFTune (Jain et al. 2023): noisy embeddings make instruction fine-tuning generalise better.

In training only, every input embedding vector gets uniform noise, scaled so that the noise's
size does not grow with the sequence length L or the width d:

    e' = e + ε,    ε ~ Uniform(-α/√(L·d), α/√(L·d))        α = neftune_noise_alpha (5 in the paper)

It is a forward hook on the input embedding layer (as in Hugging Face's Trainer, which names the
knob ``neftune_noise_alpha``): evaluation and generation (``model.eval()``) see clean embeddings,
and the hook is removed when training ends.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import nn

from wxb.errors import ConfigError


def input_embeddings(model: nn.Module) -> nn.Embedding:
    """The layer that turns token ids into vectors: ``model.get_input_embeddings()``."""
    model = getattr(model, "module", model)  # inside DistributedDataParallel
    getter = getattr(model, "get_input_embeddings", None)
    embedding = getter() if getter is not None else None
    if not isinstance(embedding, nn.Embedding):
        raise ConfigError(f"NEFTune adds noise to input embeddings; {type(model).__name__} "
                          "has no token embedding layer")
    return embedding


def add_noise(module: nn.Module, inputs: tuple, output: torch.Tensor,
              alpha: float) -> torch.Tensor:
    """(batch, L, d) embeddings -> the same plus NEFTune's noise, in training only."""
    if not module.training:
        return output
    bound = alpha / math.sqrt(output.shape[-2] * output.shape[-1])
    return output + torch.empty_like(output).uniform_(-bound, bound)


@contextmanager
def neftune(model: nn.Module, alpha: float) -> Iterator[nn.Module]:
    """Within the block, ``model``'s input embeddings are noisy while it is in training mode."""
    if alpha <= 0:
        raise ConfigError(f"neftune_noise_alpha must be > 0 (the paper uses 5), got {alpha}")
    handle = input_embeddings(model).register_forward_hook(partial(add_noise, alpha=alpha))
    try:
        yield model
    finally:
        handle.remove()
