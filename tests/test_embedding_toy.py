"""Task embedding-toy: twelve words as learned 2-D points, before and after training."""

import numpy as np
import pytest
import torch

from wxb.errors import ConfigError
from wxb.tasks import run_task
from wxb.tasks.embedding_toy.train import NEGATIVE, POSITIVE, separation


def test_training_separates_the_two_kinds_and_draws_both_maps(tmp_path):
    result = run_task("embedding-toy", {"training": {"output_dir": str(tmp_path),
                                                     "num_train_epochs": 150}})
    metrics = result["metrics"]
    assert metrics["accuracy"] == 1.0 and metrics["separation"] > 3.0
    assert metrics["separation"] > 4 * metrics["separation_before"]
    torch.manual_seed(0)  # the points before are the seeded nn.Embedding's initial rows
    start = torch.nn.Embedding(12, 2).weight.detach().numpy()
    np.testing.assert_allclose(result["points"]["before"], start.round(4), atol=1e-4)
    assert result["words"] == POSITIVE + NEGATIVE
    for name in ("before", "after"):
        assert (tmp_path / f"embedding_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "result.json").is_file()


def test_separation_of_hand_placed_points():
    points = np.array([[0.0, 0.0], [0.0, 2.0], [10.0, 0.0], [10.0, 2.0]])
    # centres (0, 1) and (10, 1), every point 1 from its centre: 10 / 1
    assert separation(points, np.array([0, 0, 1, 1])) == pytest.approx(10.0)


@pytest.mark.parametrize(("config", "message"), [
    ({"data": {"positive": ["好"], "negative": ["好"]}}, "'好' is both positive and negative"),
    ({"data": {"positive": []}}, "at least one positive and one negative"),
    ({"model": {"width": 2}}, "unknown model field 'width'"),
    ({"training": {"epochs": 3}}, "unknown training field 'epochs'"),
])
def test_bad_config_is_one_line(tmp_path, config, message):
    config = {**config, "training": {"output_dir": str(tmp_path), **config.get("training", {})}}
    with pytest.raises(ConfigError, match=message):
        run_task("embedding-toy", config)
