"""Fine-tuning strategies that choose what trains: freezing, gradual unfreezing, layer-wise
learning rates.

    freeze_all_but_head(model)            only the task head trains (optionally the pooler too)
    freeze_bottom(model, n)               embeddings and the first n layers stay fixed
    GradualUnfreezing(model, every=100)   ULMFiT: start with the head, unfreeze one more layer
                                          from the top every 100 steps (a Trainer callback:
                                          these decisions, run by wxb.train's StagedUnfreezing)
    param_groups(model, lr, layer_decay)  layer-wise learning-rate decay: the head at lr, the top
                                          layer at lr * d, ..., the embeddings at lr * d^(L+1)

They work on any wxb model with a stack of layers (BERT's ``bert.encoder.layer``, GPT-2's
``transformer.h``, LLaMA's ``model.layers``). `wxb params` and
``model.num_parameters(trainable_only=True)`` show what trains.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from wxb.errors import ConfigError
from wxb.train.callbacks import StagedUnfreezing

# Where each family keeps its layers and its embeddings, by attribute path.
LAYER_PATHS = ("bert.encoder.layer", "encoder.layer", "transformer.h", "model.layers")
EMBEDDING_PATHS = ("bert.embeddings", "embeddings", "transformer.wte", "transformer.wpe",
                   "model.embed_tokens")
BODY_PREFIXES = ("bert.", "embeddings.", "encoder.", "transformer.", "model.")


def _get(model: nn.Module, path: str) -> Any:
    for name in path.split("."):
        model = getattr(model, name, None)
        if model is None:
            return None
    return model


def layers(model: nn.Module) -> nn.ModuleList:
    """The model's stack of Transformer layers, bottom first."""
    for path in LAYER_PATHS:
        found = _get(model, path)
        if isinstance(found, nn.ModuleList):
            return found
    raise ConfigError(f"{type(model).__name__} has no stack of layers wxb knows "
                      f"({', '.join(LAYER_PATHS)})")


def embeddings(model: nn.Module) -> list[nn.Module]:
    return [m for m in (_get(model, p) for p in EMBEDDING_PATHS) if isinstance(m, nn.Module)]


def _set(modules: list[nn.Module], trainable: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(trainable)


def _head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters outside the body (embeddings + layers + final norm): the task head's."""
    body = {id(p) for name, p in model.named_parameters() if name.startswith(BODY_PREFIXES)}
    tied = {id(p) for m in embeddings(model) for p in m.parameters()}
    return [p for p in model.parameters() if id(p) not in body | tied]


def freeze_all_but_head(model: nn.Module, *, pooler: bool = False) -> nn.Module:
    """Freeze everything but the task head (and BERT's pooler with ``pooler=True``)."""
    head = _head_parameters(model)
    if not head:
        raise ConfigError(f"{type(model).__name__} has no task head outside its body; "
                          "freezing all but the head would leave nothing to train")
    _set([model], False)
    for p in head:
        p.requires_grad_(True)
    if pooler and _get(model, "bert.pooler") is not None:
        _set([model.bert.pooler], True)
    return model


def freeze_bottom(model: nn.Module, n: int, *, embeddings_too: bool = True) -> nn.Module:
    """Freeze the embeddings (unless ``embeddings_too=False``) and the first ``n`` layers."""
    stack = layers(model)
    if not 0 <= n <= len(stack):
        raise ConfigError(f"cannot freeze {n} layers: {type(model).__name__} has {len(stack)}")
    _set(list(stack[:n]), False)
    if embeddings_too:
        _set(embeddings(model), False)
    return model


class GradualUnfreezing(StagedUnfreezing):
    """A Trainer callback (ULMFiT, Howard & Ruder 2018): training starts with only the head;
    every ``every`` optimizer steps the next layer from the top is unfrozen, then at last the
    embeddings. The optimizer must hold every parameter from the start, frozen ones included:
    give the Trainer ``optimizers=torch.optim.AdamW(param_groups(model, lr))``.
    """

    def __init__(self, model: nn.Module, every: int) -> None:
        stack = layers(model)
        freeze_all_but_head(model)
        stages = [list(layer.parameters()) for layer in reversed(stack)]
        stages.append([p for m in embeddings(model) for p in m.parameters()])
        super().__init__(stages, every)

    def unfrozen_layers(self, step: int) -> int:
        """Layers unfrozen after ``step`` steps, counting the embeddings as the last one."""
        return self.unfrozen_stages(step)


def param_groups(model: nn.Module, lr: float, *, layer_decay: float = 1.0,
                 weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Optimizer parameter groups over every parameter (frozen ones too, which simply get no
    gradient), with layer-wise learning-rate decay: the head at ``lr``, layer i of L at
    ``lr * layer_decay ** (L - i)``, the embeddings at ``lr * layer_decay ** (L + 1)``.
    Biases and norm weights (1-D) get no weight decay, as in the Trainer's own optimizer.
    """
    stack = layers(model)
    depth = len(stack)
    scale: dict[int, float] = {}
    for module in embeddings(model):
        scale.update({id(p): layer_decay ** (depth + 1) for p in module.parameters()})
    for i, layer in enumerate(stack):
        scale.update({id(p): layer_decay ** (depth - i) for p in layer.parameters()})
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for p in {id(p): p for p in model.parameters()}.values():
        groups.setdefault((scale.get(id(p), 1.0), p.ndim >= 2), []).append(p)
    return [{"params": params, "lr": lr * s, "weight_decay": weight_decay if decays else 0.0}
            for (s, decays), params in sorted(groups.items(), key=lambda kv: kv[0])]
