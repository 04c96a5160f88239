"""Loss-curve PNGs: valid files for full, partial and single-point histories; clear errors."""

import warnings

import matplotlib.image
import pytest
from matplotlib import font_manager

from wxb.errors import DataError
from wxb.viz import font_families, plot_loss_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = [
    {"loss": 2.5, "learning_rate": 1e-3, "epoch": 0.1, "step": 10},
    {"loss": 2.1, "learning_rate": 9e-4, "epoch": 0.2, "step": 20},
    {"eval_loss": 2.2, "eval_runtime": 0.5, "epoch": 0.2, "step": 20},
    {"loss": 1.8, "learning_rate": 8e-4, "epoch": 0.3, "step": 30},
    {"eval_loss": 1.9, "epoch": 0.4, "step": 40},
    {"train_runtime": 3.0, "train_loss": 2.1, "epoch": 0.4, "step": 40},
]


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    height, width, channels = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100 and channels in (3, 4)
    # The atomic write leaves no temporary file behind.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "history",
    [
        HISTORY,
        [entry for entry in HISTORY if "eval_loss" not in entry],
        [{"loss": 3.0, "step": 1}],
        [{"eval_loss": 3.0, "step": 5}],
    ],
    ids=["train+eval", "train only", "single train point", "single eval point"],
)
def test_writes_a_png(tmp_path, history):
    path = plot_loss_curves(history, tmp_path / "loss.png")
    assert path == tmp_path / "loss.png"
    assert_png(path)


def test_replaces_an_existing_plot(tmp_path):
    path = tmp_path / "loss.png"
    path.write_bytes(b"old")
    plot_loss_curves(HISTORY, path)
    assert_png(path)


def test_cjk_title_renders(tmp_path):
    # Without a CJK font installed matplotlib warns about missing glyphs; it must not fail.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        path = plot_loss_curves(HISTORY, tmp_path / "loss.png", title="训练损失")
    assert_png(path)


def test_font_families_lists_only_installed_fonts():
    families = font_families()
    installed = {font.name for font in font_manager.fontManager.ttflist}
    assert families[0] == "DejaVu Sans"
    assert set(families) <= installed


@pytest.mark.parametrize("history", [[], [{"epoch": 1.0, "train_runtime": 2.0}]])
def test_nothing_to_plot_is_a_data_error(tmp_path, history):
    with pytest.raises(DataError, match="log_history has no entry with 'step' and 'loss'"):
        plot_loss_curves(history, tmp_path / "loss.png")
    assert not list(tmp_path.iterdir())
