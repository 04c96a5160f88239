"""`wxb params`: where a model's parameters are, and what a LoRA adapter would train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def params(
    model: Annotated[Path, typer.Argument(help="model folder (Hugging Face layout)")],
    adapter: Annotated[Path | None, typer.Option(
        help="count with this LoRA adapter folder loaded for training (wxb or PEFT)")] = None,
    lora_r: Annotated[int | None, typer.Option(
        help="count with LoRA adapters of this rank added")] = None,
    target_modules: Annotated[str, typer.Option(
        help="with --lora-r: the layers LoRA wraps, all-linear or a name pattern")]
    = "all-linear",
) -> None:
    """Print the parameter count of a model, by component, trainable and total.

    Example: wxb params runs/shakespeare-char/model

    Example: wxb params runs/zh-chat-base/model --lora-r 8 --target-modules 'q_proj|v_proj'
    """
    import wxb
    from wxb.models.params import parameter_breakdown
    from wxb.peft.lora import LoraConfig, add_lora, load_adapter

    loaded = wxb.from_pretrained(model)
    if adapter is not None:
        load_adapter(loaded, adapter, trainable=True)
    elif lora_r is not None:
        add_lora(loaded, LoraConfig(r=lora_r, lora_alpha=2 * lora_r,
                                    target_modules=target_modules))
    rows = parameter_breakdown(loaded)
    total = sum(r.parameters for r in rows)
    trainable = sum(r.trainable for r in rows)
    print(f"{type(loaded).__name__} ({loaded.config.model_type}) from {model}")
    print(f"{'component':<14}{'parameters':>14}{'trainable':>14}{'share':>8}")
    for r in rows:
        print(f"{r.component:<14}{r.parameters:>14,}{r.trainable:>14,}"
              f"{r.parameters / total:>8.1%}" + (f"  {r.formula}" if r.formula else ""))
    print(f"{'total':<14}{total:>14,}{trainable:>14,}{trainable / total:>8.2%} trainable")
