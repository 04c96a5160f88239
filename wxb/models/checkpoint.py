"""A model folder on disk, in Hugging Face's format: ``config.json`` + safetensors weights.

What ``save_pretrained`` and ``from_pretrained`` of every model need, and nothing about where a
folder comes from (``wxb.hub`` finds folders: local paths, packaged checkpoints, downloads).

The weights keep Hugging Face's names; the one conversion is GPT-2's: Hugging Face stores its
c_attn / c_proj / c_fc as ``Conv1D`` with (in, out) matrices, wxb as ``nn.Linear`` (out, in).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, load_model, save_file
from torch import nn

from wxb.errors import CheckpointError
from wxb.io import atomic_save, atomic_write_json, read_json_object

if TYPE_CHECKING:  # the models import this module, so only the type checker imports them back
    from wxb.models.base import PreTrainedModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
StateDict = dict[str, torch.Tensor]
logger = logging.getLogger("wxb")
CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def _gpt2_from_hf(state: StateDict) -> StateDict:
    # The causal-mask buffers old GPT-2 checkpoints carry are no weights.
    return {k: v.t() if k.endswith(CONV1D) else v for k, v in state.items()
            if not k.endswith((".attn.bias", ".attn.masked_bias"))}


def _gpt2_to_hf(state: StateDict) -> StateDict:
    return {k: v.t() if k.endswith(CONV1D) else v for k, v in state.items()}


def _bert_from_hf(state: StateDict) -> StateDict:
    # Checkpoints saved by older transformers carry the position_ids buffer: no weight.
    return {k: v for k, v in state.items() if not k.endswith("embeddings.position_ids")}


def _marian_from_hf(state: StateDict) -> StateDict:
    """Older Marian checkpoints carry the fixed sinusoid tables; the model computes them."""
    return {k: v for k, v in state.items() if not k.endswith("embed_positions.weight")}


# model_type -> (Hugging Face state dict -> wxb, wxb -> Hugging Face)
CONVERSIONS: dict[str, tuple[Callable[[StateDict], StateDict], Callable[[StateDict], StateDict]]]
CONVERSIONS = {"gpt2": (_gpt2_from_hf, _gpt2_to_hf), "bert": (_bert_from_hf, dict),
               "marian": (_marian_from_hf, dict)}


def read_config_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; a model folder needs a {CONFIG_NAME}")
    return read_json_object(path, CheckpointError)


def load_safetensors(model: nn.Module, path: str | Path) -> None:
    """Load weights into ``model``, refusing missing, unexpected or mis-shaped tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; the model folder has no weights")
    try:
        load_model(model, str(path), strict=True)
    except (RuntimeError, OSError, ValueError) as err:
        detail = " ".join(str(err).split())[:240]
        raise CheckpointError(f"{path} does not fit this {type(model).__name__}: {detail}; "
                              "it was saved from a model with another configuration") from None


def read_state_dict(folder: Path) -> StateDict:
    """The tensors of a model folder: one safetensors file, shards, or pytorch_model.bin."""
    if (folder / WEIGHTS_NAME).is_file():
        return load_file(folder / WEIGHTS_NAME)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise CheckpointError(f"{folder} has no weights: expected {WEIGHTS_NAME}, "
                          "model.safetensors.index.json with shards, or pytorch_model.bin")


def load_weights(model: PreTrainedModel, folder: str | Path, *,
                 ignore_mismatched_sizes: bool = False) -> list[str]:
    """Load a folder's weights into ``model``; every key and shape must match.

    One exception, as in Hugging Face: a model with a task head (``base_model_prefix``, e.g.
    ``bert.``) loads a checkpoint of the bare model or of another head, and a bare model loads
    a checkpoint with a head. Then the head's keys may be missing (they keep their fresh
    initialisation) and the other head's are left out; a head whose shape differs (another
    ``num_labels``) is an error, or is re-initialised with ``ignore_mismatched_sizes=True``.
    Returns what was not loaded, one line per key, so the caller can say so; empty when the
    checkpoint fitted exactly.
    """
    folder = Path(folder)
    state = read_state_dict(folder)
    convert = CONVERSIONS.get(model.config.model_type)
    if convert:
        state = convert[0](state)
    state = _match_base_prefix(model, state)
    expected = model.state_dict()
    tied = _tied_names(model)
    missing = [k for k in expected if k not in state and k not in tied]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    notes = []
    prefix = getattr(model, "base_model_prefix", None)
    if prefix and any(k.startswith(prefix + ".") for k in expected):
        def in_head(key: str) -> bool:
            return not key.startswith(prefix + ".") or key.startswith(f"{prefix}.pooler.")

        notes += [f"newly initialised: {k}" for k in missing if in_head(k)]
        notes += [f"not used: {k}" for k in unexpected if in_head(k)]
        missing = [k for k in missing if not in_head(k)]
        unexpected = [k for k in unexpected if not in_head(k)]
        if ignore_mismatched_sizes:
            notes += [f"re-initialised (checkpoint {tuple(state[k].shape)}, model "
                      f"{tuple(expected[k].shape)}): {k}" for k in wrong if in_head(k)]
            state = {k: v for k, v in state.items() if k not in wrong or not in_head(k)}
            wrong = [k for k in wrong if not in_head(k)]
    if missing or unexpected or wrong:
        parts = []
        shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in wrong]
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("shape mismatch (checkpoint vs model)", shapes)):
            if keys:
                more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
                parts.append(f"{label}: {', '.join(keys[:4])}{more}")
        hint = ("; pass ignore_mismatched_sizes=True to re-initialise the head"
                if prefix and wrong else "; check config.json against the weights")
        raise CheckpointError(f"{folder} does not fit {type(model).__name__} "
                              f"({'; '.join(parts)}){hint}")
    # Tied copies may be absent, and a task head may be new; both were checked above.
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return notes


def _match_base_prefix(model: nn.Module, state: StateDict) -> StateDict:
    """Add or strip the base model prefix (``bert.``, ``transformer.``, ``model.``) so the
    checkpoint's keys meet the model's: a bare model's keys have none, a model with a head has
    it on the bare model's. Stripping leaves out the head's keys."""
    prefix = getattr(model, "base_model_prefix", None)
    if not prefix:
        return state
    p = prefix + "."
    model_has = any(k.startswith(p) for k in model.state_dict())
    state_has = any(k.startswith(p) for k in state)
    if model_has and not state_has:
        return {p + k: v for k, v in state.items()}
    if state_has and not model_has:
        return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
    return state


def _tied_names(model: nn.Module) -> set[str]:
    """Names of parameters that share their tensor with an earlier name (tied weights)."""
    seen, tied = set(), set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        seen.add(id(p))
    return tied


def save_pretrained(model: PreTrainedModel, folder: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors``, each atomically, that ``transformers``
    (and ``from_pretrained``) load."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tied = _tied_names(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in tied}
    convert = CONVERSIONS.get(model.config.model_type)
    if convert:
        state = {k: v.contiguous() for k, v in convert[1](state).items()}
    atomic_save(folder / WEIGHTS_NAME,
                lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    atomic_write_json(folder / CONFIG_NAME,
                      {**model.config.to_dict(), "architectures": [type(model).__name__]})
    return folder


def load_pretrained(cls: type[PreTrainedModel], folder: str | Path,
                    dtype: torch.dtype | None = None, *, ignore_mismatched_sizes: bool = False,
                    **config_overrides: Any) -> PreTrainedModel:
    """Build ``cls`` from the local ``folder``'s config.json (with ``config_overrides``) and load
    its weights; what was left out or newly initialised is logged as one warning."""
    folder = Path(folder)
    values = {**read_config_json(folder / CONFIG_NAME), **config_overrides}
    model = cls(cls.config_class.from_dict(values))
    notes = load_weights(model, folder, ignore_mismatched_sizes=ignore_mismatched_sizes)
    if notes:
        more = f" and {len(notes) - 6} more" if len(notes) > 6 else ""
        logger.warning("%s from %s: %s%s", cls.__name__, folder, "; ".join(notes[:6]), more)
    return model.to(dtype) if dtype is not None else model
