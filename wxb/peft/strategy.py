"""What trains, as the checked ``finetune`` section of a config says (the section itself is
``wxb.tasks.models.FinetuneSection``: strategy full | head | pooler_head | bottom | gradual |
lora | qlora, with freeze_layers, unfreeze_every, layer_decay, and LoRA's r, lora_alpha,
lora_dropout, target_modules, modules_to_save, use_rslora, adapter).

``apply_strategy`` changes the model in place and returns what the Trainer needs;
``save_finetuned`` / ``save_trained`` write the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from wxb.peft import freeze

STRATEGIES = ("full", "head", "pooler_head", "bottom", "gradual", "lora", "qlora")
def uses_lora(section: dict[str, Any]) -> bool:
    """Whether the ``finetune`` mapping trains LoRA adapters (plain or over NF4 weights)."""
    return section["strategy"] in ("lora", "qlora")


def apply_strategy(model: nn.Module, method: dict[str, Any],
                   args: Any) -> tuple[Any, list[Any]]:
    """Freeze, wrap or quantize what ``method`` (a checked ``finetune`` section) says; return
    the Trainer's ``optimizers`` (None: its own) and callbacks. ``args``: TrainingArguments."""
    strategy, callbacks = method["strategy"], []
    if uses_lora(method):
        from wxb.peft.lora import add_lora, load_adapter, lora_config_from

        if strategy == "qlora":
            from wxb.peft.qlora import quantize_model

            quantize_model(model, skip=lora_config_from(method, model).modules_to_save)
        if method["adapter"]:
            load_adapter(model, method["adapter"], trainable=True)
        else:
            add_lora(model, lora_config_from(method, model))
        return None, callbacks
    if strategy == "head":
        freeze.freeze_all_but_head(model)
    elif strategy == "pooler_head":
        freeze.freeze_all_but_head(model, pooler=True)
    elif strategy == "bottom":
        freeze.freeze_bottom(model, method["freeze_layers"])
    elif strategy == "gradual":
        callbacks.append(freeze.GradualUnfreezing(model, method["unfreeze_every"]))
    if strategy != "gradual" and method["layer_decay"] == 1.0:
        return None, callbacks
    groups = freeze.param_groups(model, args.learning_rate, layer_decay=method["layer_decay"],
                                 weight_decay=args.weight_decay)
    if strategy != "gradual":  # frozen weights need no optimizer state
        groups = [g for g in ({**g, "params": [p for p in g["params"] if p.requires_grad]}
                              for g in groups) if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate,
                                  betas=(args.adam_beta1, args.adam_beta2),
                                  eps=args.adam_epsilon)
    return (optimizer, None), callbacks


def save_finetuned(model: nn.Module, tokenizer: Any, folder: str | Path,
                   method: dict[str, Any]) -> dict[str, str | None]:
    """``save_trained`` with the tokenizer beside the model; returns result.json's
    ``model_dir`` and ``adapter_dir`` (None without LoRA)."""
    model_dir = save_trained(model, folder)
    tokenizer.save(model_dir)
    adapter = Path(folder).parent / "adapter"
    return {"model_dir": str(model_dir), "adapter_dir": str(adapter) if uses_lora(method)
            else None}


def save_trained(model: nn.Module, folder: str | Path) -> Path:
    """Save a fine-tuned model to ``folder`` in the Hugging Face layout. A model with LoRA
    adapters is saved merged (a plain checkpoint any loader reads; quantized weights are
    written back at full precision) and its adapter alone goes to ``folder``'s sibling
    ``adapter/`` (``adapter_config.json`` + ``adapter_model.safetensors``, the PEFT layout).
    The model in memory is left as it was."""
    from wxb.peft.lora import has_lora, merged_copy, save_adapter

    if not has_lora(model):
        return model.save_pretrained(folder)
    save_adapter(model, Path(folder).parent / "adapter")
    return merged_copy(model).save_pretrained(folder)
