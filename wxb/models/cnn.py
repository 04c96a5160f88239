"""The LeNet-style CNN: convolution and pooling blocks, then fully-connected layers.

    image (batch, channels, H, W)
      -> [Conv2d(k, padding) -> ReLU -> MaxPool(pool)] per entry of conv_channels
      -> flatten -> [Linear -> ReLU -> Dropout] per entry of hidden_sizes -> Linear -> logits

The first fully-connected layer's input size is not a guess: each convolution maps a side of
length n to n + 2*padding - kernel_size + 1 and each pooling to n // pool_size, so the flattened
size is channels_last * side * side (see ``feature_map_size``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import Config, PreTrainedModel
from wxb.models.outputs import SequenceClassifierOutput


@dataclass
class CNNConfig(Config):
    model_type = "cnn"

    image_size: int = 8
    num_channels: int = 1
    conv_channels: list[int] = field(default_factory=lambda: [32, 64])
    kernel_size: int = 3
    padding: int = 1
    pool_size: int = 2
    hidden_sizes: list[int] = field(default_factory=lambda: [128])
    num_labels: int = 10
    dropout: float = 0.25

    def __post_init__(self) -> None:
        super().__post_init__()
        feature_map_size(self)  # fails early if the image shrinks to nothing


def feature_map_size(config: CNNConfig) -> int:
    """Side length of the last feature map: the arithmetic behind the first Linear layer."""
    side = config.image_size
    for i in range(len(config.conv_channels)):
        side = side + 2 * config.padding - config.kernel_size + 1
        side //= config.pool_size
        if side < 1:
            raise ConfigError(f"image_size {config.image_size} shrinks to nothing after conv "
                              f"block {i + 1}; use fewer conv_channels, more padding or a "
                              "smaller kernel_size/pool_size")
    return side


class CNNForImageClassification(PreTrainedModel):
    config_class = CNNConfig
    main_input_name = "pixel_values"

    def __init__(self, config: CNNConfig) -> None:
        super().__init__(config)
        blocks: list[nn.Module] = []
        channels = config.num_channels
        for out in config.conv_channels:
            blocks += [nn.Conv2d(channels, out, config.kernel_size, padding=config.padding),
                       nn.ReLU(), nn.MaxPool2d(config.pool_size)]
            channels = out
        self.features = nn.Sequential(*blocks)
        width = channels * feature_map_size(config) ** 2
        layers: list[nn.Module] = []
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        self.fc = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, config.num_labels)

    def forward(self, pixel_values: torch.Tensor,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """pixel_values: (batch, num_channels, image_size, image_size); labels: (batch,)."""
        c, s = self.config.num_channels, self.config.image_size
        if pixel_values.ndim == 3 and c == 1:  # (batch, H, W) grey images
            pixel_values = pixel_values.unsqueeze(1)
        if tuple(pixel_values.shape[1:]) != (c, s, s):
            raise ConfigError(f"images of shape {tuple(pixel_values.shape[1:])} do not fit this "
                              f"CNN; it expects ({c}, {s}, {s})")
        logits = self.classifier(self.fc(self.features(pixel_values).flatten(1)))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)
