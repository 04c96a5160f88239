"""The Trainer stays general: no module of wxb.train imports a fine-tuning method (wxb.peft),
an alignment method (wxb.align), a concrete model family or a task pipeline (wxb.tasks)."""

from __future__ import annotations

import ast
from pathlib import Path

import wxb

TRAIN = Path(wxb.__file__).parent / "train"
CORE = ("__init__", "trainer", "arguments", "checkpoint", "schedules", "callbacks",
        "distributed", "memory", "progress", "seed", "precision")
# Family-agnostic parts of wxb.models the Trainer may use (the PreTrainedModel base class).
MODEL_COMMONS = ("base", "params", "outputs")


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, at the top or inside functions; ``from a import b`` gives
    both ``a`` and ``a.b`` (b may be a submodule)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def forbidden(module: str) -> bool:
    parts = module.split(".")
    if parts[0] != "wxb" or len(parts) < 2:
        return False
    if parts[1] in ("peft", "align", "tasks"):
        return True
    return parts[1] == "models" and len(parts) > 2 and parts[2] not in MODEL_COMMONS


def test_the_rule_catches_what_it_should(tmp_path):
    assert forbidden("wxb.peft.neftune") and forbidden("wxb.align") and forbidden("wxb.tasks")
    assert forbidden("wxb.models.gpt2") and forbidden("wxb.models.registry")
    assert not forbidden("wxb.models.base") and not forbidden("wxb.train.callbacks")
    assert not forbidden("torch.nn") and not forbidden("wxb.models")
    probe = tmp_path / "probe.py"
    probe.write_text("import json\n\ndef f():\n    from wxb.models import llama\n")
    assert [m for m in imported_modules(probe) if forbidden(m)] == ["wxb.models.llama"]


def test_wxb_train_holds_the_training_machinery_only():
    # The tasks (their data, models, evaluation, result.json) live in wxb/tasks.
    assert sorted(p.stem for p in TRAIN.glob("*.py")) == sorted(CORE)


def test_no_module_of_wxb_train_imports_peft_align_a_model_family_or_tasks():
    bad = {p.name: m for p in sorted(TRAIN.glob("*.py")) for m in imported_modules(p)
           if forbidden(m)}
    assert not bad, f"wxb/train must stay general, but imports: {bad}"
