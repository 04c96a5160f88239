"""Greedy decoding of 256 new tokens: wxb.generation vs transformers' generate, same weights.

GPT-2 and LLaMA of about 10M parameters, fp32 on the CPU, batch 1 and batch 8, timed
alternately in one run (best of several rounds). Both must produce the same tokens. One JSON line.

Also measured: the floor of one decoding step, each weight matrix multiplied once (what any
implementation of the same fp32 model must do per token), and the best ratio that floor allows:
transformers' time per token over it. On a small CPU reading the weights dominates, so no
implementation that keeps the same arithmetic can beat that ratio.

    python benchmarks/generate_throughput.py [--new-tokens 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import transformers

import wxb
from wxb.generation import generate

SHAPES = {
    "gpt2": dict(n_embd=384, n_head=6, n_layer=4, n_positions=512, vocab_size=8192),
    "llama": dict(hidden_size=384, num_attention_heads=6, num_key_value_heads=2,
                  intermediate_size=1024, num_hidden_layers=4, vocab_size=8192,
                  max_position_embeddings=512),
}


def best_time(fn, rounds: int, *args, **kwargs) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        with torch.no_grad():
            out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, out


def matmul_floor(model: torch.nn.Module, batch: int, rounds: int = 50) -> float:
    """Seconds to multiply a (batch, in) input by every Linear weight of ``model`` once."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = [torch.randn(batch, w.shape[1]) for w in weights]
    best = float("inf")
    with torch.no_grad():
        for _ in range(rounds):
            start = time.perf_counter()
            for x, w in zip(inputs, weights, strict=True):
                torch.nn.functional.linear(x, w)
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = {"benchmark": "generate_throughput", "new_tokens": args.new_tokens,
              "threads": torch.get_num_threads()}
    for family, shape in SHAPES.items():
        torch.manual_seed(0)
        config_cls = transformers.GPT2Config if family == "gpt2" else transformers.LlamaConfig
        model_cls = (transformers.GPT2LMHeadModel if family == "gpt2"
                     else transformers.LlamaForCausalLM)
        ref = model_cls(config_cls(**shape, eos_token_id=None, bos_token_id=None)).eval()
        ref.save_pretrained(f"/tmp/wxb-gen-{family}")
        ours = wxb.from_pretrained(f"/tmp/wxb-gen-{family}").eval()
        for batch in (1, 8):
            # Token 0 is the pad id given to both; keep it out of the prompts.
            prompt = torch.randint(1, shape["vocab_size"], (batch, args.prompt))
            settings = dict(max_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0)
            t_ours, a = best_time(generate, args.rounds, ours, prompt, **settings)
            t_ref, b = best_time(ref.generate, args.rounds, prompt, **settings)
            tokens = batch * args.new_tokens
            floor = matmul_floor(ours, batch)
            result[f"{family}_batch{batch}"] = {
                "wxb_tokens_per_s": round(tokens / t_ours, 1),
                "transformers_tokens_per_s": round(tokens / t_ref, 1),
                "ratio": round(t_ref / t_ours, 3), "same_tokens": bool(torch.equal(a, b)),
                "ms_per_step": {"wxb": round(1000 * t_ours / args.new_tokens, 3),
                                "transformers": round(1000 * t_ref / args.new_tokens, 3),
                                "weight_matmul_floor": round(1000 * floor, 3)},
                "best_possible_ratio": round(t_ref / args.new_tokens / floor, 3)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
