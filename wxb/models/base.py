"""What every wxb model and config shares: dict/JSON round trips and the checkpoint folder.

A saved model is a Hugging Face style folder: ``config.json`` (the config's fields plus
``model_type`` and ``architectures``) and ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
import torch.utils.checkpoint
from torch import nn

from wxb.config import check_known_keys, coerce_fields
from wxb.errors import ConfigError
from wxb.models import checkpoint
from wxb.models.checkpoint import CONFIG_NAME as CONFIG_NAME
from wxb.models.checkpoint import WEIGHTS_NAME as WEIGHTS_NAME
from wxb.models.checkpoint import load_safetensors as load_safetensors
from wxb.models.checkpoint import read_config_json

C = TypeVar("C", bound="Config")
M = TypeVar("M", bound="PreTrainedModel")


@dataclasses.dataclass
class Config:
    """Base of the per-family configs; subclasses are dataclasses with Hugging Face field names."""

    model_type: ClassVar[str] = ""

    def __post_init__(self) -> None:
        coerce_fields(self, owner=type(self).__name__)

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any], *, strict: bool = False) -> C:
        """Build from a dict; ``strict`` refuses unknown keys (use it for hand-written configs).

        Without ``strict``, keys the family does not use (``architectures``, ``torch_dtype``,
        ``transformers_version``, ...) are ignored, as they are in a Hugging Face config.json.
        """
        values = {k: v for k, v in values.items() if k != "model_type"}
        if strict:
            check_known_keys(cls, values, f"{cls.model_type} config field")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json_file(cls: type[C], path: str | Path) -> C:
        return cls.from_dict(read_config_json(path))


class LabelledConfig(Config):
    """A classifier family's config: its dataclass has ``num_labels`` and ``id2label``, which
    read and write as Hugging Face's do (``label2id`` too, ``LABEL_i`` names by default)."""

    num_labels: int
    id2label: dict | None

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any], *, strict: bool = False) -> C:
        return super().from_dict(labels_from_dict(values), strict=strict)

    def to_dict(self) -> dict[str, Any]:
        return labels_to_dict(super().to_dict(), self.num_labels, self.id2label)


def labels_from_dict(values: dict[str, Any]) -> dict[str, Any]:
    """Hugging Face's label fields, as a classifier config reads them: config.json keeps the
    labels as ``id2label`` (JSON's string keys become ints again), whose length is
    ``num_labels``; an explicit ``num_labels`` of another length replaces them."""
    values = dict(values)
    values.pop("label2id", None)
    labels = values.get("id2label")
    if labels and values.get("num_labels", len(labels)) != len(labels):
        values.pop("id2label")
    elif labels:
        values["num_labels"] = len(labels)
        values["id2label"] = {int(i): str(name) for i, name in labels.items()}
    return values


def labels_to_dict(values: dict[str, Any], num_labels: int,
                   id2label: dict | None) -> dict[str, Any]:
    """``values`` with ``id2label`` and ``label2id`` as config.json keeps them (``LABEL_i``
    names when none were given)."""
    names = {int(i): str(name) for i, name in (id2label or {}).items()} or {
        i: f"LABEL_{i}" for i in range(num_labels)}
    return {**values, "id2label": {str(i): name for i, name in names.items()},
            "label2id": {name: i for i, name in names.items()}}


def check_token_ids(config: Config, vocab_size: int, *, embedded: tuple[str, ...] = (),
                    generated: tuple[str, ...] = ()) -> None:
    """Special token ids of ``config`` against a vocabulary of ``vocab_size``, the way
    ``transformers`` treats them.

    An id in ``embedded`` is the padding row of an embedding table, so one outside the table
    cannot work: ConfigError (transformers refuses it too). An id in ``generated`` (eos, bos,
    pad of a decoder) is only compared with tokens: one outside the vocabulary is never
    generated, and transformers loads such a checkpoint with a warning, as wxb does.
    """
    owner = type(config).__name__
    for name in embedded:
        value = getattr(config, name)
        # nn.Embedding's range: a negative padding_idx counts from the end.
        if value is not None and not -vocab_size <= value < vocab_size:
            raise ConfigError(f"{owner}: {name} {value} is outside the vocabulary of "
                              f"{vocab_size} tokens, and it is the embeddings' padding row; "
                              f"set it to an id below {vocab_size}")
    for name in generated:
        value = getattr(config, name)
        ids = [] if value is None else [value] if isinstance(value, int) else list(value)
        for i in ids:
            if i >= vocab_size:
                warnings.warn(f"{owner}: {name} {i} is outside the vocabulary of {vocab_size} "
                              "tokens, so the model never generates it", stacklevel=4)


class PreTrainedModel(nn.Module):
    """Base of the concrete models: a config, save_pretrained and from_pretrained."""

    config_class: ClassVar[type[Config]] = Config
    main_input_name: ClassVar[str] = "input_ids"
    supports_gradient_checkpointing: ClassVar[bool] = False  # its layer loop uses run_layer

    def __init__(self, config: Config) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                              f"got {type(config).__name__}")
        self.config = config
        self.gradient_checkpointing = False

    def gradient_checkpointing_enable(self) -> None:
        """Keep only each layer's input while training and run the layer again in the backward
        pass (``transformers``' name): activation memory of one layer instead of all, for
        about a third more compute. Dropout draws the same masks again (the RNG state is
        restored), so losses and gradients are those of the plain model."""
        if not self.supports_gradient_checkpointing:
            raise ConfigError(f"gradient checkpointing: {type(self).__name__} does not support "
                              "it (BERT, GPT-2 and LLaMA do)")
        for module in self.modules():
            if isinstance(module, PreTrainedModel):
                module.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if isinstance(module, PreTrainedModel):
                module.gradient_checkpointing = False

    def run_layer(self, layer: nn.Module, *args: Any, **kwargs: Any) -> Any:
        """``layer(*args, **kwargs)``, recomputed in the backward pass under gradient
        checkpointing."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False,
                                                     **kwargs)
        return layer(*args, **kwargs)

    def num_parameters(self, trainable_only: bool = False) -> int:
        # Tied weights are one tensor: count each once.
        unique = {id(p): p for p in self.parameters() if p.requires_grad or not trainable_only}
        count = sum(p.numel() for p in unique.values())
        if not trainable_only:  # frozen weights stored packed (QLoRA's 4-bit layers) are buffers
            count += sum(m.weight_numel for m in self.modules() if hasattr(m, "weight_numel"))
        return count

    def get_input_embeddings(self) -> nn.Module | None:
        """The token embedding layer (as in ``transformers``): the first ``nn.Embedding``,
        which is where every wxb family defines it (a family may say otherwise)."""
        return next((m for m in self.modules() if isinstance(m, nn.Embedding)), None)

    @property
    def base_model(self) -> nn.Module:
        """The bare model under a head (``model.bert``, ``model.transformer``, ...), or the
        model itself when it is one, as in ``transformers``."""
        return getattr(self, getattr(self, "base_model_prefix", ""), self)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` that ``transformers`` loads."""
        return checkpoint.save_pretrained(self, folder)

    @classmethod
    def from_pretrained(cls: type[M], folder: str | Path, dtype: torch.dtype | None = None,
                        **kwargs: Any) -> M:
        """Load a local folder into this class; ``kwargs``: ``ignore_mismatched_sizes`` and
        config fields to override (e.g. ``num_labels=3``). ``wxb.from_pretrained`` also takes
        hub ids and picks the class itself."""
        return checkpoint.load_pretrained(cls, folder, dtype, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
