"""The shakespeare-char recipe, measured: validation loss reached within 10 minutes on this CPU.

    python benchmarks/shakespeare_char.py [--data-dir ../shared/data] [--output-dir DIR]

Runs the bundled recipe unchanged (a character-level GPT-2 on tinyshakespeare, stopped by its
time budget of 600 s if its steps take longer) and prints one JSON line: the validation loss,
the training minutes, tokens/s, whether the goal (validation loss <= 1.50) was met, the eval
curve as (step, loss) pairs, and the load average during the run (other processes on the same
cores slow training down, so a high load explains a missed budget). The loss-curve PNG is in
the output folder.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch

from wxb.recipes import run_recipe

DEFAULT_DATA = Path(os.environ.get("WXB_DATA_DIR",
                                   Path(__file__).resolve().parents[2] / "shared" / "data"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="run folder (default: a temporary folder)")
    args = parser.parse_args()
    output_dir = args.output_dir or Path(tempfile.mkdtemp(prefix="shakespeare-char-"))

    load_before = os.getloadavg()[0]
    result = run_recipe("shakespeare-char", args.data_dir, output_dir)
    log = [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]
    print(json.dumps({
        "benchmark": "shakespeare_char",
        "val_loss": round(result["metrics"]["eval_loss"], 4),
        "goal": result["expected"]["at_most"],
        "met": result["expected"]["met"],
        "train_minutes": round(result["train_runtime_s"] / 60, 2),
        "tokens_per_second": result["tokens_per_second"],
        "steps": result["steps"],
        "stopped_by_time_budget": result["stopped_by_time_budget"],
        "num_parameters": result["num_parameters"],
        "eval_curve": [[e["step"], round(e["eval_loss"], 4)] for e in log if "eval_loss" in e],
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "torch_threads": torch.get_num_threads(),
        "loss_curve": result["loss_curve"],
    }))


if __name__ == "__main__":
    main()
