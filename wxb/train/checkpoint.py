"""Trainer checkpoints: everything needed to resume a run bit for bit.

A run's folder holds complete checkpoint folders and one small pointer file::

    output_dir/
      checkpoints.json        {"last": "checkpoint-200", "best": "checkpoint-150"}
      checkpoint-150/         model.safetensors, config.json, optimizer.pt, scheduler.pt,
      checkpoint-200/         rng_state.pt, trainer_state.json, training_args.json

A checkpoint folder is written under a temporary name and renamed when complete; the pointer
file is replaced atomically afterwards. A crash at any moment therefore leaves the pointer naming
a complete checkpoint.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_model

from wxb.errors import CheckpointError
from wxb.io import atomic_dir, atomic_write_json
from wxb.models.base import PreTrainedModel, load_safetensors

POINTER = "checkpoints.json"
WEIGHTS = "model.safetensors"
STATE = "trainer_state.json"


def capture_rng_state() -> dict[str, Any]:
    """The state of every random generator training touches (Python, NumPy, torch CPU/CUDA)."""
    version, mt_state, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    folder: Path,
    model: torch.nn.Module,
    *,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: Any,
    rng_state: dict[str, Any],
    trainer_state: dict[str, Any],
    training_args: dict[str, Any],
) -> Path:
    """Write a complete checkpoint folder atomically and return its path."""
    with atomic_dir(folder) as tmp:
        if isinstance(model, PreTrainedModel):  # a Hugging Face folder, loadable as a model
            model.save_pretrained(tmp)
        else:
            save_model(model, str(tmp / WEIGHTS))  # drops the duplicate of tied weights
        torch.save({k: o.state_dict() for k, o in optimizers.items()}, tmp / "optimizer.pt")
        torch.save({k: s.state_dict() for k, s in schedulers.items()}, tmp / "scheduler.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        torch.save(rng_state, tmp / "rng_state.pt")
        (tmp / STATE).write_text(json.dumps(trainer_state, indent=2) + "\n")
        (tmp / "training_args.json").write_text(json.dumps(training_args, indent=2) + "\n")
    return folder


def read_pointer(output_dir: Path) -> dict[str, str]:
    path = Path(output_dir) / POINTER
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def update_pointer(output_dir: Path, **names: str) -> None:
    """Point ``last``/``best`` at checkpoint folders, then delete the ones nothing points to."""
    output_dir = Path(output_dir)
    pointer = {**read_pointer(output_dir), **names}
    atomic_write_json(output_dir / POINTER, pointer)
    keep = set(pointer.values())
    for folder in output_dir.glob("checkpoint-*"):
        if folder.is_dir() and folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def find_checkpoint(path: str | Path, which: str = "last") -> Path:
    """Resolve a run folder (through its pointer file) or a checkpoint folder itself."""
    path = Path(path)
    if (path / STATE).is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"resume directory {path} does not exist; give the output_dir "
                              "of an earlier run or one of its checkpoint-* folders")
    name = read_pointer(path).get(which)
    if name and (path / name / STATE).is_file():
        return path / name
    raise CheckpointError(f"no {which} checkpoint in {path} (no {POINTER} naming a complete "
                          "checkpoint-* folder); train first, or start without resuming")


def load_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load ``model.safetensors`` into ``model``, refusing one saved from a different model."""
    state = json.loads((folder / STATE).read_text())
    saved_class, this_class = state.get("model_class"), type(model).__name__
    if saved_class and saved_class != this_class:
        raise CheckpointError(f"checkpoint {folder} holds a {saved_class}, not a {this_class}; "
                              "resume with the model it was trained with")
    if isinstance(model, PreTrainedModel):
        from wxb.hub import load_weights as load_pretrained_weights

        load_pretrained_weights(model, folder)
    else:
        load_safetensors(model, folder / WEIGHTS)


def load_torch(folder: Path, name: str) -> Any:
    """Read one of the checkpoint's torch files without unpickling arbitrary objects."""
    path = folder / name
    if not path.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {name}; it is incomplete")
    return torch.load(path, weights_only=True)
