"""Forward + backward time of wxb's hand-written LSTM against torch.nn.LSTM, same run.

Batch 32, length 128, input and hidden 256, bidirectional, one layer; the same weights and
inputs for both (and wxb's ``impl="torch"`` path, which runs the same parameters through the
fused kernel). Best of several rounds, timed alternately. One JSON line; the goal is a ratio
(wxb time / torch time) of at most 2.

    python benchmarks/lstm.py [--rounds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json

import torch
from timing import best_time

from wxb.nn import Recurrent

BATCH, LENGTH, SIZE = 32, 128, 256


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor):
    def step() -> None:
        out, _ = module(x)
        out.sum().backward()
        module.zero_grad(set_to_none=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    ref = torch.nn.LSTM(SIZE, SIZE, batch_first=True, bidirectional=True)
    ours = Recurrent("lstm", SIZE, SIZE, bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    fused = Recurrent("lstm", SIZE, SIZE, bidirectional=True, impl="torch")
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(BATCH, LENGTH, SIZE)
    with torch.no_grad():
        difference = float((ours(x)[0] - ref(x)[0]).abs().max())
    times = {name: float("inf") for name in ("wxb", "wxb_impl_torch", "torch")}
    for _ in range(args.rounds):
        for name, module in (("wxb", ours), ("wxb_impl_torch", fused), ("torch", ref)):
            times[name] = min(times[name], best_time(fwd_bwd(module, x), 1, args.repeats))
    print(json.dumps({
        "benchmark": "lstm", "batch": BATCH, "length": LENGTH, "hidden": SIZE,
        "bidirectional": True, "threads": torch.get_num_threads(),
        **{f"{name}_ms": round(t * 1000, 1) for name, t in times.items()},
        "ratio_wxb_over_torch": round(times["wxb"] / times["torch"], 3),
        "max_abs_difference": difference,
    }))


if __name__ == "__main__":
    main()
