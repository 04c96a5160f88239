"""Training time of the readable BPE (wxb) against the tokenizers library, same corpus, same run.

    python benchmarks/bpe_train.py [--data-dir ../shared/data] [--vocab-size 4096]

Both learn a byte-level BPE (GPT-2 pre-tokenizer, 256 byte symbols, ``<|endoftext|>``,
min_frequency 2) from tinyshakespeare, fed line by line. Prints one JSON line; ``merges_equal``
says whether both learned the same merges in the same order. The tokenizers library uses every
core it finds (RAYON_NUM_THREADS limits it); wxb uses one.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from wxb.tokenizers.bpe import BPETokenizer
from wxb.tokenizers.corpus import read_corpus

DEFAULT_DATA = Path(os.environ.get("WXB_DATA_DIR",
                                   Path(__file__).resolve().parents[2] / "shared" / "data"))
SPECIAL = "<|endoftext|>"


def train_with_tokenizers(lines: list[str], vocab_size: int) -> list[tuple[str, str]]:
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=[SPECIAL],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(lines, trainer)
    merges = json.loads(backend.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--vocab-size", type=int, default=4096)
    args = parser.parse_args()
    text = read_corpus(args.data_dir / "tinyshakespeare" / "input.txt")
    lines = text.splitlines(keepends=True)

    start = time.perf_counter()
    ours = BPETokenizer.train(lines, args.vocab_size, min_frequency=2,
                              special_tokens={"eos": SPECIAL})
    wxb_seconds = time.perf_counter() - start

    start = time.perf_counter()
    theirs = train_with_tokenizers(lines, args.vocab_size)
    tokenizers_seconds = time.perf_counter() - start

    print(json.dumps({
        "benchmark": "bpe_train",
        "corpus_bytes": len(text.encode("utf-8")),
        "vocab_size": args.vocab_size,
        "wxb_seconds": round(wxb_seconds, 3),
        "tokenizers_seconds": round(tokenizers_seconds, 3),
        "ratio": round(wxb_seconds / tokenizers_seconds, 2),
        "merges_equal": ours.merges == theirs,
    }))


if __name__ == "__main__":
    main()
