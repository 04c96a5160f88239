"""The digits chapter: test accuracy and wall time of the digits-mlp and digits-cnn recipes.

The issue's goal: >= 95 % (DNN) and >= 97 % (CNN) on the fixed 20 % split, each in under a
minute on 2 cores. One JSON line.

    python benchmarks/digits.py
"""

from __future__ import annotations

import json
import tempfile
import time

import torch

from wxb.recipes import load_recipe, run_recipe


def main() -> None:
    result = {"benchmark": "digits", "threads": torch.get_num_threads()}
    for name in ("digits-mlp", "digits-cnn"):
        recipe = load_recipe(name)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            run = run_recipe(name, output_dir=out)
            seconds = time.perf_counter() - start
        result[name] = {"test_accuracy": round(run["metrics"]["eval_accuracy"], 4),
                        "expected_at_least": recipe["expected"]["at_least"],
                        "wall_time_s": round(seconds, 2), "under_a_minute": seconds < 60}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
