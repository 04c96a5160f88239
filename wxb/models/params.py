"""Parameter counts by component: where a model's weights are (what `wxb params` prints)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

# First match wins; names are Hugging Face's.
LORA = ("lora", r"\.lora_[AB]\.")  # LoRA's A and B (wxb.peft.lora), before their layer's row
COMPONENTS = [
    LORA,
    ("embeddings", r"(^|\.)(wte|wpe|embed_tokens|embeddings?)\."),
    ("attention", r"(^|\.)(attn|self_attn|attention|c_attn)\."),
    ("feed-forward", r"(^|\.)(mlp|intermediate|feed_forward|fc)\."),
    ("norm", r"(^|\.)(ln_\w+|\w*layernorm|\w*layer_norm|norm|ln_f)\."),
    ("head", r"(^|\.)(lm_head|classifier|pooler|cls|qa_outputs|score)\."),
]


@dataclass
class ComponentCount:
    component: str
    parameters: int
    trainable: int
    formula: str = ""  # how the count follows from the config, where the family says


def component_of(name: str, table: list[tuple[str, str]] | None = None) -> str:
    for component, pattern in table or COMPONENTS:
        if re.search(pattern, name):
            return component
    return "other"


def parameter_breakdown(model: nn.Module) -> list[ComponentCount]:
    """Counts per component, in table order; a tied weight counts once (where it first
    appears, usually the embeddings).

    A family may give its own finer table with the formula of each line: a method
    ``parameter_components()`` returning (component, name pattern, formula) rows.
    """
    rows_spec = model.parameter_components() if hasattr(model, "parameter_components") else [
        (component, pattern, "") for component, pattern in COMPONENTS]
    table = [LORA] + [(component, pattern) for component, pattern, _ in rows_spec
                      if (component, pattern) != LORA]
    formulas = {component: formula for component, _, formula in rows_spec}
    rows: dict[str, ComponentCount] = {}
    for name, p in model.named_parameters():  # named_parameters skips tied duplicates
        component = component_of(name, table)
        row = rows.setdefault(component, ComponentCount(component, 0, 0,
                                                        formulas.get(component, "")))
        row.parameters += p.numel()
        row.trainable += p.numel() if p.requires_grad else 0
    order = [c for c, _ in table] + ["other"]
    return sorted(rows.values(), key=lambda r: order.index(r.component))
