"""Load and save Hugging Face style model folders (``config.json`` + ``model.safetensors``).

``from_pretrained`` reads ``model_type`` (and ``architectures``) from ``config.json`` and builds
the registered wxb class. A name that is not a local folder is treated as a Hugging Face Hub id
and downloaded with ``huggingface_hub`` when it is installed and the network allows.
"""

from __future__ import annotations

from pathlib import Path

from wxb.errors import CheckpointError
from wxb.models import registry
from wxb.models.base import CONFIG_NAME, PreTrainedModel, read_config_json


def resolve(name_or_path: str | Path) -> Path:
    """A local model folder, downloading a hub id first when that is possible."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise CheckpointError(f"model folder {name} does not exist; give a folder holding "
                              f"{CONFIG_NAME} and model.safetensors")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(f"{name} is not a local folder, and downloading it from the "
                              "Hugging Face Hub needs `pip install huggingface_hub`") from None
    try:
        return Path(snapshot_download(name, allow_patterns=["*.json", "*.safetensors", "*.txt"]))
    except Exception as err:  # offline, unknown repo, gated model: all end the same way
        raise CheckpointError(f"{name} is not a local folder and could not be downloaded from "
                              f"the Hugging Face Hub ({type(err).__name__}); check the name and "
                              "the network, or give a local folder") from None


def from_pretrained(name_or_path: str | Path) -> PreTrainedModel:
    """Build the model a folder's ``config.json`` describes and load its weights."""
    folder = resolve(name_or_path)
    values = read_config_json(folder / CONFIG_NAME)
    model_type = values.get("model_type")
    if not model_type:
        raise CheckpointError(f"{folder / CONFIG_NAME} has no model_type; add one of: "
                              f"{', '.join(registry.FAMILIES)}")
    architectures = values.get("architectures") or [None]
    cls = registry.model_class(model_type, architectures[0])
    return cls.from_pretrained(folder)
