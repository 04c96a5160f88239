"""Parameter-efficient fine-tuning: choosing what trains (``wxb.peft.freeze``)."""

from wxb.peft.freeze import (
    GradualUnfreezing,
    freeze_all_but_head,
    freeze_bottom,
    param_groups,
)

__all__ = ["GradualUnfreezing", "freeze_all_but_head", "freeze_bottom", "param_groups"]
