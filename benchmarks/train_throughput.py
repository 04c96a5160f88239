"""Training tokens/s of wxb vs transformers on the same GPT-2 and LLaMA configurations.

About 10M parameters, context 256, fp32 on the CPU; the same weights, batch and AdamW step for
both, timed alternately in one run (best of several rounds, because these machines are noisy).
MFU is reported against this machine's fp32 matmul peak, measured here too. One JSON line.

    python benchmarks/train_throughput.py [--steps 5] [--rounds 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import transformers

import wxb

CONTEXT = 256
SHAPES = {
    "gpt2": dict(n_embd=384, n_head=6, n_layer=4, n_positions=CONTEXT, vocab_size=8192,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0),
    "llama": dict(hidden_size=384, num_attention_heads=6, num_key_value_heads=2,
                  intermediate_size=1024, num_hidden_layers=4, vocab_size=8192,
                  max_position_embeddings=CONTEXT),
}


def matmul_peak(shapes: list[tuple[int, int, int]], repeats: int = 10) -> float:
    """Best fp32 FLOP/s over matmuls of the given (m, k, n) shapes: the machine's practical peak.

    A single large square matmul is not the best case on a small CPU (it spills the caches);
    the model's own shapes are among those tried, so MFU stays at or below 1.
    """
    best_rate = 0.0
    for m, k, n in shapes:
        a, b = torch.randn(m, k), torch.randn(k, n)
        a @ b
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        best_rate = max(best_rate, 2 * m * k * n / best)
    return best_rate


def flops_per_token(model: torch.nn.Module, layers: int, width: int) -> float:
    """6 FLOPs per weight that multiplies (forward + backward) plus the attention scores
    (nanoGPT's estimate). Embedding lookups multiply nothing: the input embeddings and
    learned positions are left out, the output head counted once even when tied.
    """
    lookups = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    head = model.lm_head.weight
    n = sum(p.numel() for p in model.parameters() if id(p) not in lookups)
    if id(head) in lookups:
        n += head.numel()
    return 6 * n + 12 * layers * width * CONTEXT


def step_time(model: torch.nn.Module, batch: torch.Tensor, steps: int) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocations, optimizer state
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    shapes = [(size, size, size) for size in (512, 1024, 2048)]
    for shape in SHAPES.values():
        width = shape.get("n_embd") or shape["hidden_size"]
        inner = shape.get("intermediate_size") or 4 * width
        tokens = args.batch * CONTEXT
        shapes += [(tokens, width, inner), (tokens, inner, width),
                   (tokens, width, shape["vocab_size"])]
    peak = matmul_peak(shapes)
    result = {"benchmark": "train_throughput", "context": CONTEXT, "batch": args.batch,
              "threads": torch.get_num_threads(), "matmul_peak_gflops": round(peak / 1e9, 1)}
    for family, shape in SHAPES.items():
        torch.manual_seed(0)
        if family == "gpt2":
            ref = transformers.GPT2LMHeadModel(transformers.GPT2Config(**shape))
            layers, width = shape["n_layer"], shape["n_embd"]
        else:
            ref = transformers.LlamaForCausalLM(transformers.LlamaConfig(**shape))
            layers, width = shape["num_hidden_layers"], shape["hidden_size"]
        ref.save_pretrained(f"/tmp/wxb-bench-{family}")
        ours = wxb.from_pretrained(f"/tmp/wxb-bench-{family}")
        batch = torch.randint(0, shape["vocab_size"], (args.batch, CONTEXT))
        times = {"wxb": [], "transformers": []}
        for _ in range(args.rounds):
            times["wxb"].append(step_time(ours, batch, args.steps))
            times["transformers"].append(step_time(ref, batch, args.steps))
        tokens = args.batch * CONTEXT
        ours_tps, ref_tps = tokens / min(times["wxb"]), tokens / min(times["transformers"])
        flops = flops_per_token(ours, layers, width)
        result[family] = {
            "parameters": ours.num_parameters(),
            "wxb_tokens_per_s": round(ours_tps), "transformers_tokens_per_s": round(ref_tps),
            "ratio": round(ours_tps / ref_tps, 3),
            "wxb_mfu": round(ours_tps * flops / peak, 4),
            "transformers_mfu": round(ref_tps * flops / peak, 4),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
