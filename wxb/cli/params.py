"""`wxb params`: where a model's parameters are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def params(
    model: Annotated[Path, typer.Argument(help="model folder (Hugging Face layout)")],
) -> None:
    """Print the parameter count of a model, by component, trainable and total.

    Example: wxb params runs/shakespeare-char/model
    """
    import wxb
    from wxb.models.params import parameter_breakdown

    loaded = wxb.from_pretrained(model)
    rows = parameter_breakdown(loaded)
    total = sum(r.parameters for r in rows)
    trainable = sum(r.trainable for r in rows)
    print(f"{type(loaded).__name__} ({loaded.config.model_type}) from {model}")
    print(f"{'component':<14}{'parameters':>14}{'trainable':>14}{'share':>8}")
    for r in rows:
        print(f"{r.component:<14}{r.parameters:>14,}{r.trainable:>14,}"
              f"{r.parameters / total:>8.1%}" + (f"  {r.formula}" if r.formula else ""))
    print(f"{'total':<14}{total:>14,}{trainable:>14,}{trainable / total:>8.1%} trainable")
