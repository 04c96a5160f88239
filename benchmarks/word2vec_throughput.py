"""Word2Vec speed and quality of wxb against gensim: skip-gram with negative sampling on the
real corpus, one thread each.

Corpus: ``conll2003/train.txt`` + ``imdb/imdb_train.csv.gz`` under ``--data-dir`` read with
``wxb.data.corpus.read_corpus`` (about 1.27M words; ``--limit`` keeps the first sentences).
Settings, the same for both: window 5, 5 negatives, dimension 100, min_count 5, sample 1e-3,
alpha 0.025 -> 1e-4, ``--epochs`` epochs, seed 0; ``torch.set_num_threads(1)`` and gensim's
``workers=1``. A second gensim run (seed 1) gives the ceiling of agreement.

Columns:

- ``*_words_per_second``: epochs x corpus words / training seconds (vocabulary building
  excluded for both); ``ratio_wxb_over_gensim`` is wxb's over gensim's. gensim runs word2vec's
  loop in optimised Cython (one pair at a time, BLAS dot/axpy on 100 floats, no allocation);
  wxb's batched torch step gathers and scatters ~16,000 rows per step through tensors, so it
  is several times slower on one thread.
- ``spearman_wxb_gensim``: Spearman of the two models' cosine similarities over every pair of
  the 200 most frequent words (``wxb.metrics.word_vectors.similarity_correlation``), and
  ``spearman_gensim_seeds`` the same between gensim seed 0 and seed 1.
- ``analogy_*``: top-1 3CosAdd accuracy (``analogy_accuracy``) on
  ``analogy_questions(vocabulary)``: the written relations of ``wxb.metrics.word_vectors``
  (capital-country, nationality, gender, comparative, past tense) where both words of a pair
  are in the vocabulary, plus the corpus's own ``w : w + "s"`` plural pairs among the 2,000
  most frequent words.

``--trainer-overhead`` measures instead what one step costs three ways on word2vec batches of
``--batch-words`` words (the numbers in ``wxb/tasks/word_vectors/skipgram.py``'s docstring):
the wxb Trainer (autograd, SGD, no clipping), a plain autograd loop, and ``sgd_step``.

Measured (``nice -n 19``, 2 cores shared with other jobs: timings approximate), full corpus,
5 epochs: wxb 81,648 words/s, gensim 370,552 (ratio 0.22); Spearman 0.892 (gensim seeds:
0.961); analogy accuracy wxb 0.130, gensim 0.126 / 0.114 over 1,744 questions.
``--trainer-overhead``: Trainer 12.0, plain autograd loop 11.9, sgd_step 5.7 ms per step.

One JSON line.

    python benchmarks/word2vec_throughput.py [--data-dir ../shared/data] [--limit N]
        [--epochs 5] [--trainer-overhead]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from wxb.data.corpus import read_corpus
from wxb.metrics.word_vectors import analogy_accuracy, analogy_questions, similarity_correlation
from wxb.models.word2vec import Word2Vec, Word2VecConfig
from wxb.tasks.word_vectors import skipgram
from wxb.tasks.word_vectors.train import gensim_vectors


def quality(sentences, config: Word2VecConfig) -> dict:
    words = sum(map(len, sentences))
    ours, stats = skipgram.train_word2vec(sentences, config)
    theirs, gensim_s = gensim_vectors(sentences, "skipgram", config, seed=0)
    other, _ = gensim_vectors(sentences, "skipgram", config, seed=1)
    frequent = [w for w in ours.words[:200] if w in theirs.index and w in other.index]
    questions = analogy_questions(ours.words)
    out = {"benchmark": "word2vec_throughput", "corpus_words": words,
           "sentences": len(sentences), "vocab_size": len(ours.words),
           "epochs": config.epochs, "batch_words": config.batch_words,
           "threads": torch.get_num_threads(),
           "wxb_words_per_second": round(config.epochs * words / stats["train_time_s"]),
           "gensim_words_per_second": round(config.epochs * words / gensim_s)}
    out["ratio_wxb_over_gensim"] = round(
        out["wxb_words_per_second"] / out["gensim_words_per_second"], 3)
    out["wxb_final_loss"] = round(stats["loss"], 4)
    out["spearman_wxb_gensim"] = round(similarity_correlation(ours, theirs, frequent), 3)
    out["spearman_gensim_seeds"] = round(similarity_correlation(theirs, other, frequent), 3)
    for name, vectors in (("wxb", ours), ("gensim", theirs), ("gensim_seed1", other)):
        result = analogy_accuracy(vectors, questions)
        out[f"analogy_{name}"] = round(result["accuracy"], 3)
    out["analogy_questions"] = result["questions"]
    out["analogy_relations"] = sorted(questions)
    return out


def trainer_overhead(sentences, config: Word2VecConfig, steps: int) -> dict:
    """ms per step: the wxb Trainer, a plain autograd loop and ``sgd_step``, on the same
    precomputed skip-gram batches."""
    from wxb.train import Trainer, TrainingArguments

    vocab, ids, sentence = skipgram.encode_corpus(sentences, config)
    rng = np.random.default_rng(0)
    sampler = skipgram.NegativeSampler(vocab.counts, config.ns_exponent, rng)
    keep = skipgram.keep_probabilities(vocab.counts, config.sample)
    w2v = Word2Vec(config, len(vocab))
    batches = []
    for chunk in skipgram.epoch_batches(ids, sentence, keep, config.window, config.batch_words,
                                        rng):
        (rows, offsets, targets), kw = skipgram.skipgram_batch(w2v, chunk, sampler,
                                                               config.negative)
        batches.append({"rows": rows, "offsets": offsets, "targets": targets,
                        "valid": kw["valid"]})
        if len(batches) == steps:
            break

    class Pairs(torch.nn.Module):  # what the Trainer calls: model(**batch).loss
        def __init__(self) -> None:
            super().__init__()
            self.w2v = Word2Vec(config, len(vocab))

        def forward(self, rows, offsets, targets, valid):
            return SimpleNamespace(loss=self.w2v(rows, offsets, targets, valid=valid))

    times = {}
    model = Pairs()
    stamps = []

    class Stamp:
        def on_step_end(self, trainer) -> None:
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, optim="sgd", learning_rate=config.alpha,
                                 max_grad_norm=0, num_train_epochs=1,
                                 per_device_train_batch_size=1, logging_steps=10 ** 9,
                                 disable_tqdm=True, plot_loss=False)
        Trainer(model, args, train_dataset=batches, data_collator=lambda ex: ex[0],
                callbacks=[Stamp()]).train()
    times["trainer_ms"] = float(np.median(np.diff(stamps))) * 1000

    model = Pairs()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.alpha)
    stamps = [time.perf_counter()]
    for batch in batches:
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stamps.append(time.perf_counter())
    times["autograd_loop_ms"] = float(np.median(np.diff(stamps[1:]))) * 1000

    stamps = [time.perf_counter()]
    for b in batches:
        w2v.sgd_step(b["rows"], b["offsets"], b["targets"], config.alpha, valid=b["valid"])
        stamps.append(time.perf_counter())
    times["sgd_step_ms"] = float(np.median(np.diff(stamps[1:]))) * 1000
    return {"benchmark": "word2vec_trainer_overhead", "steps": len(batches),
            "batch_words": config.batch_words, "vocab_size": len(vocab),
            "pairs_per_step": round(float(np.mean([len(b["rows"]) for b in batches]))),
            "threads": torch.get_num_threads(),
            **{k: round(v, 2) for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--limit", type=int, default=None, help="first sentences only")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-words", type=int, default=Word2VecConfig.batch_words)
    parser.add_argument("--trainer-overhead", action="store_true")
    parser.add_argument("--steps", type=int, default=60, help="steps for --trainer-overhead")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = Path(args.data_dir)
    sentences = read_corpus([data / "conll2003" / "train.txt", data / "imdb" /
                             "imdb_train.csv.gz"], limit=args.limit)
    config = Word2VecConfig(vector_size=100, window=5, negative=5, min_count=5,
                            epochs=args.epochs, batch_words=args.batch_words, seed=0)
    if args.trainer_overhead:
        print(json.dumps(trainer_overhead(sentences, config, args.steps)))
    else:
        print(json.dumps(quality(sentences, config)))


if __name__ == "__main__":
    main()
