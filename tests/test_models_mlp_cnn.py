"""The DNN and the LeNet-style CNN: shapes, configs, checkpoints, from_pretrained."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import wxb
from wxb.errors import CheckpointError, ConfigError
from wxb.models.cnn import CNNConfig, CNNForImageClassification, feature_map_size
from wxb.models.mlp import MLPConfig, MLPForClassification


@pytest.mark.parametrize(("image", "kernel", "padding", "pool", "channels"), [
    (8, 3, 1, 2, [32, 64]),
    (28, 5, 0, 2, [6, 16]),  # LeNet-5 on MNIST: 28 -> 24 -> 12 -> 8 -> 4
    (32, 5, 2, 2, [8, 8, 8]),
    (9, 3, 0, 1, [4]),
])
def test_cnn_feature_map_size_matches_the_real_convolutions(image, kernel, padding, pool,
                                                            channels):
    config = CNNConfig(image_size=image, kernel_size=kernel, padding=padding, pool_size=pool,
                       conv_channels=channels, hidden_sizes=[10])
    model = CNNForImageClassification(config)
    maps = model.features(torch.zeros(2, 1, image, image))
    assert maps.shape[2:] == (feature_map_size(config),) * 2
    assert model.fc[0].in_features == maps[0].numel()
    assert model(torch.zeros(2, 1, image, image)).logits.shape == (2, 10)


def test_lenet_arithmetic_by_hand():
    assert feature_map_size(CNNConfig(image_size=28, kernel_size=5, padding=0,
                                      conv_channels=[6, 16])) == 4


def test_cnn_that_shrinks_the_image_to_nothing_is_refused():
    with pytest.raises(ConfigError, match="image_size 8 shrinks to nothing after conv block 2"):
        CNNConfig(image_size=8, kernel_size=3, padding=0, conv_channels=[4, 4, 4])


def test_models_compute_cross_entropy_and_check_inputs():
    torch.manual_seed(0)
    mlp = MLPForClassification(MLPConfig(input_size=64, hidden_sizes=[16], num_labels=10))
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 4])
    out = mlp(x, labels=y)
    assert out.logits.shape == (5, 10)
    assert torch.allclose(out.loss, nn.functional.cross_entropy(out.logits, y))
    assert mlp(x).loss is None
    with pytest.raises(ConfigError, match="input has 63 features per example, the model expects"):
        mlp(torch.randn(2, 63))
    cnn = CNNForImageClassification(CNNConfig())
    with pytest.raises(ConfigError, match=r"images of shape \(3, 8, 8\) do not fit"):
        cnn(torch.randn(2, 3, 8, 8))


def test_config_round_trip_and_coercion():
    config = CNNConfig(conv_channels=[8, 16], dropout="0.5")
    assert config.dropout == 0.5
    again = CNNConfig.from_dict(json.loads(config.to_json()))
    assert again == config and again.to_dict()["model_type"] == "cnn"
    with pytest.raises(ConfigError, match="unknown cnn config field 'kernel'"):
        CNNConfig.from_dict({"kernel": 3}, strict=True)
    with pytest.raises(ConfigError, match="unknown hidden_act 'swish'"):
        MLPConfig(hidden_act="swish")
    with pytest.raises(ConfigError, match=r"MLPConfig\.num_labels must be a whole number"):
        MLPConfig(num_labels=2.5)


@pytest.mark.parametrize("cls, config", [(MLPForClassification, MLPConfig()),
                                         (CNNForImageClassification, CNNConfig())])
def test_save_pretrained_and_from_pretrained(tmp_path, cls, config):
    torch.manual_seed(0)
    model = cls(config)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["architectures"] == [cls.__name__]
    loaded = wxb.from_pretrained(tmp_path)
    assert type(loaded) is cls and loaded.config == config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_from_pretrained_refuses_bad_folders(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        wxb.from_pretrained(tmp_path / "missing")
    MLPForClassification(MLPConfig(hidden_sizes=[8])).save_pretrained(tmp_path / "small")
    config = json.loads((tmp_path / "small" / "config.json").read_text())
    config["hidden_sizes"] = [16]
    (tmp_path / "small" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"does not fit MLPForClassification \(shape "
                                              r"mismatch .*: layers\.0\.weight \(8, 64\) vs"):
        wxb.from_pretrained(tmp_path / "small")
    (tmp_path / "small" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        wxb.from_pretrained(tmp_path / "small")
    (tmp_path / "small" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no model_type"):
        wxb.from_pretrained(tmp_path / "small")
