"""The DNN: a multilayer perceptron classifier, the course's first PyTorch model.

    x (batch, features) -> [Linear -> activation -> Dropout] x len(hidden_sizes) -> Linear -> logits
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import Config, PreTrainedModel
from wxb.models.outputs import SequenceClassifierOutput

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"unknown hidden_act {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


@dataclass
class MLPConfig(Config):
    model_type = "mlp"

    input_size: int = 64
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 64])
    num_labels: int = 10
    hidden_act: str = "relu"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        activation(self.hidden_act)
        if self.input_size < 1 or self.num_labels < 1 or any(h < 1 for h in self.hidden_sizes):
            raise ConfigError("MLPConfig sizes must be >= 1: input_size "
                              f"{self.input_size}, hidden_sizes {self.hidden_sizes}, "
                              f"num_labels {self.num_labels}")


class MLPForClassification(PreTrainedModel):
    config_class = MLPConfig
    main_input_name = "input_features"

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        layers: list[nn.Module] = []
        width = config.input_size
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), activation(config.hidden_act),
                       nn.Dropout(config.dropout)]
            width = hidden
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, config.num_labels)

    def forward(self, input_features: torch.Tensor,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """input_features: (batch, ...) flattened to (batch, input_size); labels: (batch,)."""
        x = input_features.flatten(1)
        if x.shape[1] != self.config.input_size:
            raise ConfigError(f"input has {x.shape[1]} features per example, the model expects "
                              f"input_size {self.config.input_size}")
        logits = self.classifier(self.layers(x))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
