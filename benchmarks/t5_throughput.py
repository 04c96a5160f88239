"""T5 speed of wxb vs transformers: training sequences/s and greedy generation tokens/s.

The goal (from the issue): wxb at least 1.1x transformers in both.

A t5-small-like shape, narrower (about 20M parameters; v1.1-style: gated-gelu, no output
rescale, dropout 0), fp32 on the CPU. The folder is written by transformers'
``T5ForConditionalGeneration.save_pretrained`` and read by ``wxb.from_pretrained``, so both
have the same weights. transformers 5 ties T5's head to the embeddings whatever the config says
(``tie_word_embeddings=False`` only turns the rescale off, saved as ``scale_decoder_outputs:
false``), so the head here is tied in both (``tied_head`` in the output). Each measurement is a
ratio in one run, the two models timed alternately, best of several rounds (these machines are
noisy):

- training: forward with ``input_ids``, ``attention_mask`` and ``labels`` (source 256, target
  64, batch 8, some rows padded), ``loss.backward()``, an AdamW step with the same settings for
  both; the losses of the first step must agree (``first_loss_diff``);
- generation: greedy decoding of 64 new tokens from a source of 128, batch 1 and batch 8 (some
  sources padded), eos off so both run the full length; both must give the same tokens.

One JSON line.

    python benchmarks/t5_throughput.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import transformers

import wxb
from wxb.generation import generate

FOLDER = "/tmp/wxb-bench-t5"
# tie_word_embeddings=False: v1.1's unscaled head (transformers 5 still ties it; see above).
SHAPE = dict(d_model=384, d_kv=64, num_heads=6, d_ff=1024, num_layers=4, num_decoder_layers=4,
             vocab_size=8192, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
             dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
PAD = SHAPE["pad_token_id"]


def source(batch: int, length: int, padded: bool, g: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random source ids (token 0 is pad, kept out) and their mask; with ``padded`` every
    other row is right-padded to a random shorter length, as a real batch would be."""
    ids = torch.randint(2, SHAPE["vocab_size"], (batch, length), generator=g)
    mask = torch.ones_like(ids)
    if padded:
        for row in range(1, batch, 2):
            keep = int(torch.randint(length // 4, length, (1,), generator=g))
            mask[row, keep:] = 0
    return ids.masked_fill(mask == 0, PAD), mask


def train_batch(batch: int, src: int, tgt: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    ids, mask = source(batch, src, padded=True, g=g)
    labels = torch.randint(2, SHAPE["vocab_size"], (batch, tgt), generator=g)
    for row in range(1, batch, 2):  # shorter targets, -100 past their end
        labels[row, int(torch.randint(tgt // 4, tgt, (1,), generator=g)):] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Trainer:
    """One model's training step with its own AdamW; the first step's loss is kept."""

    def __init__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
        self.model, self.batch = model.train(), batch
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999),
                                           eps=1e-8, weight_decay=0.01)
        self.first_loss = self.step()  # also the warm-up: allocations, optimizer state

    def step(self) -> float:
        loss = self.model(**self.batch).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def seconds_per_step(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - start) / steps


def timed(fn, *args, **kwargs) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    with torch.no_grad():
        out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3, help="training steps per round")
    parser.add_argument("--batch", type=int, default=8, help="training batch")
    parser.add_argument("--source", type=int, default=256, help="training source length")
    parser.add_argument("--target", type=int, default=64, help="training target length")
    parser.add_argument("--gen-source", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()

    torch.manual_seed(0)
    ref = transformers.T5ForConditionalGeneration(transformers.T5Config(**SHAPE))
    ref.save_pretrained(FOLDER)
    ours = wxb.from_pretrained(FOLDER)
    result = {"benchmark": "t5_throughput", "threads": torch.get_num_threads(),
              "config": {k: SHAPE[k] for k in ("d_model", "d_kv", "num_heads", "d_ff",
                                               "num_layers", "num_decoder_layers",
                                               "vocab_size", "feed_forward_proj")},
              "parameters": ours.num_parameters(),
              "transformers_parameters": ref.num_parameters(),
              "tied_head": {"wxb": ours.lm_head.weight is ours.shared.weight,
                            "transformers": ref.lm_head.weight is ref.shared.weight}}

    g = torch.Generator().manual_seed(1)
    batch = train_batch(args.batch, args.source, args.target, g)
    trainers = {"wxb": Trainer(ours, batch), "transformers": Trainer(ref, batch)}
    times = {name: [] for name in trainers}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            times[name].append(trainer.seconds_per_step(args.steps))
    ours_sps = args.batch / min(times["wxb"])
    ref_sps = args.batch / min(times["transformers"])
    result["train"] = {
        "batch": args.batch, "source": args.source, "target": args.target, "steps": args.steps,
        "wxb_sequences_per_s": round(ours_sps, 2),
        "transformers_sequences_per_s": round(ref_sps, 2),
        "ratio": round(ours_sps / ref_sps, 3),
        "first_loss": trainers["wxb"].first_loss,
        "first_loss_diff": abs(trainers["wxb"].first_loss - trainers["transformers"].first_loss),
    }

    # Fresh copies of the saved weights: training above moved both models.
    ref = transformers.T5ForConditionalGeneration.from_pretrained(FOLDER).eval()
    ours = wxb.from_pretrained(FOLDER).eval()
    # eos_token_id=None turns eos off in both generates (wxb's T5Config itself needs an eos id),
    # so both decode the full length.
    settings = dict(max_new_tokens=args.new_tokens, do_sample=False, num_beams=1,
                    pad_token_id=PAD, eos_token_id=None)
    for size in (1, 8):
        ids, mask = source(size, args.gen_source, padded=size > 1, g=g)
        kwargs = dict(attention_mask=mask, **settings)
        generate(ours, ids, **kwargs)  # warm-up
        with torch.no_grad():
            ref.generate(input_ids=ids, **kwargs)
        t_ours, t_ref = float("inf"), float("inf")
        for _ in range(args.rounds):
            t, a = timed(generate, ours, ids, **kwargs)
            t_ours = min(t_ours, t)
            t, b = timed(ref.generate, input_ids=ids, **kwargs)
            t_ref = min(t_ref, t)
        tokens = size * args.new_tokens
        result[f"generate_batch{size}"] = {
            "source": args.gen_source, "new_tokens": args.new_tokens,
            "wxb_tokens_per_s": round(tokens / t_ours, 1),
            "transformers_tokens_per_s": round(tokens / t_ref, 1),
            "ratio": round(t_ref / t_ours, 3),
            "same_tokens": bool(torch.equal(a, b)),
            "full_length": a.shape[1] == b.shape[1] == args.new_tokens + 1,
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
