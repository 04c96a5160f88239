"""Training Word2Vec (skip-gram, CBOW) and fastText: word2vec's recipe, in batches.

One epoch, as word2vec's C loop (and gensim's) does it::

    corpus ids ─ subsample (keep a word of count c with p = (sqrt(c/t) + 1)·t/c, t = sample·total)
               ─ a window b ~ U{1..window} per kept word
               ─ pairs (center i, context j): same sentence, 0 < |i - j| <= b_i
               ─ every pair of ``batch_words`` consecutive kept words is one batched SGD step,
                 lr falling linearly from alpha to min_alpha over all epochs' words

    skip-gram:  input row = the context word j, predicts the center i (word2vec's order)
    CBOW:       input bag = all contexts of i (mean), predicts i
    fastText:   input bag = [i] + n-grams of i (mean), predicts each context j (fastText's order)

with K negatives per example drawn from counts^ns_exponent (a negative equal to the target
is skipped, as word2vec does). One batch producer (``epoch_batches``) feeds all three.

Why not the Trainer (measured: ``benchmarks/word2vec_throughput.py --trainer-overhead``, one
thread, steps of 500 words = ~2,300 skip-gram pairs, 5 negatives, d=100, the 13,921-word
vocabulary of CoNLL-2003 + IMDB; median ms per step, CPU shared with other jobs):

    wxb Trainer, autograd, SGD (no clipping)    12.0 ms/step
    plain loop, autograd, torch.optim.SGD       11.9 ms/step
    Word2Vec.sgd_step: hand-written, sparse      5.7 ms/step

The Trainer's own per-step overhead is negligible here; what costs is autograd's gradient of
an embedding table, dense (vocab x d, both tables, every step) where a step touches ~16,000
rows. So the loop below calls ``sgd_step`` (``index_add_`` on those rows; its gradients are
checked against autograd in tests/test_word2vec.py), 2.1x faster, and gives no checkpoints:
a run takes minutes.

Batching sums the gradients of every pair of a step, where word2vec applies each pair at
once. That is why steps are small (``batch_words`` 500, fastText 200) and why a row used more
than ``max_row_hits`` times in a step is capped (``wxb.models.word2vec._capped``); a loss that
still diverges stops the run with a TrainingError. The vectors match gensim's (the benchmark:
Spearman 0.89 against gensim, whose two seeds agree 0.96; analogy accuracy 0.130 vs 0.126),
at 0.22x gensim's words/s on one thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wxb.data.corpus import Vocabulary
from wxb.errors import DataError, TrainingError
from wxb.models.fasttext import FastText, FastTextConfig
from wxb.models.word2vec import Word2Vec, Word2VecConfig

Log = Callable[[str], None]


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """(vocab,) the chance each occurrence of a word survives subsampling (gensim's and
    word2vec's formula); all ones when ``sample`` is 0."""
    if sample <= 0:
        return np.ones(len(counts))
    threshold = sample * counts.sum()
    return np.minimum((np.sqrt(counts / threshold) + 1) * threshold / counts, 1.0)


class NegativeSampler:
    """Draws words with probability proportional to ``counts ** exponent`` (gensim's
    cumulative table, searched with ``searchsorted``)."""

    def __init__(self, counts: np.ndarray, exponent: float, rng: np.random.Generator) -> None:
        self.cumulative = np.cumsum(counts.astype(np.float64) ** exponent)
        self.rng = rng

    def __call__(self, targets: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(targets_and_negatives (n, 1 + k), valid (n, 1 + k))``: valid is False where a
        negative is the target."""
        draws = self.rng.random((len(targets), k)) * self.cumulative[-1]
        negatives = np.searchsorted(self.cumulative, draws, side="right")
        table = np.concatenate([targets[:, None], negatives], axis=1)
        valid = table != targets[:, None]
        valid[:, 0] = True
        return table, valid


@dataclass
class Chunk:
    """The pairs of ``batch_words`` consecutive kept words: ``words`` (kept,) their ids,
    ``centers`` / ``contexts`` (pairs,) positions into ``words``, ``done`` the corpus words
    (before subsampling) read up to the chunk's end this epoch."""

    words: np.ndarray
    centers: np.ndarray
    contexts: np.ndarray
    done: int


def epoch_batches(ids: np.ndarray, sentence: np.ndarray, keep: np.ndarray, window: int,
                  batch_words: int, rng: np.random.Generator) -> Iterator[Chunk]:
    """One epoch's chunks of the corpus ``ids`` (n,) with ``sentence`` (n,) the sentence of
    each word; ``keep`` (vocab,) the subsampling probabilities."""
    kept = np.flatnonzero(rng.random(len(ids)) < keep[ids])
    words, sent = ids[kept], sentence[kept]
    reach = rng.integers(1, window + 1, size=len(words))  # word2vec's dynamic window
    padded = np.concatenate([np.full(window, -1), sent, np.full(window, -1)])
    for start in range(0, len(words), batch_words):
        end = min(start + batch_words, len(words))
        center = np.arange(start, end)
        centers, contexts = [], []
        for d in range(1, window + 1):
            for other in (center - d, center + d):
                ok = (reach[start:end] >= d) & (padded[other + window] == sent[start:end])
                centers.append(center[ok])
                contexts.append(other[ok])
        lo, hi = max(start - window, 0), min(end + window, len(words))
        yield Chunk(words[lo:hi], np.concatenate(centers) - lo, np.concatenate(contexts) - lo,
                    int(kept[end - 1]) + 1)


def skipgram_batch(model: Word2Vec, chunk: Chunk, sampler: NegativeSampler, k: int):
    """Word2vec's skip-gram: the context's row predicts the center."""
    inputs = torch.from_numpy(chunk.words[chunk.contexts])
    return _with_targets(model, (inputs, torch.arange(len(inputs))), None,
                         chunk.words[chunk.centers], sampler, k)


def cbow_batch(model: Word2Vec, chunk: Chunk, sampler: NegativeSampler, k: int):
    """CBOW: the mean of a center's contexts predicts it."""
    order = np.argsort(chunk.centers, kind="stable")
    centers, counts = np.unique(chunk.centers[order], return_counts=True)
    rows = torch.from_numpy(chunk.words[chunk.contexts[order]])
    offsets = torch.from_numpy(np.cumsum(counts) - counts)
    return _with_targets(model, (rows, offsets), None, chunk.words[centers], sampler, k)


def fasttext_batch(model: Word2Vec, chunk: Chunk, sampler: NegativeSampler, k: int):
    """fastText's skip-gram: the center's bag (its row and n-grams) predicts each context;
    pairs of one center word share its bag."""
    unique, bag_of = np.unique(chunk.words[chunk.centers], return_inverse=True)
    return _with_targets(model, model.bags(torch.from_numpy(unique)),
                         torch.from_numpy(bag_of), chunk.words[chunk.contexts], sampler, k)


def _with_targets(model, bags, bag_of, targets: np.ndarray, sampler: NegativeSampler, k: int):
    if model.config.softmax:
        return (*bags, torch.from_numpy(targets)), {"bag_of": bag_of}
    table, valid = sampler(targets, k)
    return (*bags, torch.from_numpy(table)), {"bag_of": bag_of,
                                              "valid": torch.from_numpy(valid)}


def encode_corpus(sentences: Sequence[Sequence[str]], config: Word2VecConfig):
    if not any(len(s) for s in sentences):
        raise DataError("the corpus is empty: no sentence has a word; give a text file with "
                        "words in it")
    vocab = Vocabulary.build(sentences, min_count=config.min_count,
                             max_size=config.max_vocab_size)
    encoded = [s for s in vocab.encode(sentences) if len(s) > 1]
    if not encoded:
        raise DataError(f"no sentence keeps two words of the vocabulary (min_count="
                        f"{config.min_count}, {len(vocab)} words), so there is no window to "
                        "train on; lower min_count or give longer sentences")
    ids = np.concatenate(encoded)
    sentence = np.repeat(np.arange(len(encoded)), [len(s) for s in encoded])
    return vocab, ids, sentence


def _train(model: Word2Vec, vocab: Vocabulary, ids: np.ndarray, sentence: np.ndarray,
           step: Callable, config: Word2VecConfig, log: Log | None,
           max_time: float | None) -> dict[str, Any]:
    """The loop both trainers share; returns the stats."""
    rng = np.random.default_rng(config.seed)
    sampler = NegativeSampler(vocab.counts, config.ns_exponent, rng)
    keep = keep_probabilities(vocab.counts, config.sample)
    total = config.epochs * len(ids)
    # Three times the loss of untrained vectors (scores 0): never reached by a sound run.
    start_loss = (np.log(len(vocab)) if config.softmax
                  else (1 + config.negative) * np.log(2))
    diverged = 3 * start_loss
    start, words, epochs, stopped = time.perf_counter(), 0, 0, False
    loss_sum = examples = 0.0
    for epoch in range(config.epochs):
        loss_sum = examples = 0.0
        for chunk in epoch_batches(ids, sentence, keep, config.window, config.batch_words, rng):
            if len(chunk.centers) == 0:
                continue
            progress = (epoch * len(ids) + chunk.done) / total
            lr = config.alpha - (config.alpha - config.min_alpha) * progress
            args, kwargs = step(model, chunk, sampler, config.negative)
            loss = model.sgd_step(*args, lr=lr, **kwargs)
            if not loss / len(args[2]) < diverged:
                raise TrainingError(
                    f"the loss diverged ({loss / len(args[2]):.3g} per example, from "
                    f"{diverged / 3:.3g} at the start): batch_words={config.batch_words} sums "
                    f"too many updates of the same rows for a vocabulary of {len(vocab)} "
                    "words; lower batch_words or alpha")
            loss_sum += loss
            examples += len(args[2])
            if max_time is not None and time.perf_counter() - start > max_time:
                stopped = True
                words = epoch * len(ids) + chunk.done
                break
        if stopped:
            break
        epochs, words = epoch + 1, (epoch + 1) * len(ids)
        if log:
            log(f"epoch {epochs}/{config.epochs}: loss {loss_sum / max(examples, 1):.4f}, "
                f"{words / (time.perf_counter() - start):,.0f} words/s")
    seconds = time.perf_counter() - start
    return {"words_per_second": words / seconds, "epochs": epochs, "words": words,
            "loss": loss_sum / max(examples, 1), "train_time_s": seconds,
            "vocab_size": len(vocab), "stopped_by_time": stopped}


def train_word2vec(sentences: Sequence[Sequence[str]], config: Word2VecConfig | None = None, *,
                   log: Log | None = None, max_time: float | None = None):
    """Train Word2Vec on ``sentences`` (lists of words); returns ``(WordVectors, stats)``:
    the input vectors of the vocabulary (most frequent first) and ``words_per_second``,
    ``epochs`` done, the last epoch's mean ``loss`` per example, ``train_time_s``, ...
    ``max_time`` (seconds) stops early, between two steps."""
    from wxb.data.vectors import WordVectors

    config = config or Word2VecConfig()
    vocab, ids, sentence = encode_corpus(sentences, config)
    model = Word2Vec(config, len(vocab),
                     generator=torch.Generator().manual_seed(config.seed))
    step = skipgram_batch if config.sg else cbow_batch
    stats = _train(model, vocab, ids, sentence, step, config, log, max_time)
    return WordVectors(vocab.words, model.input_vectors.detach().numpy().copy()), stats


def train_fasttext(sentences: Sequence[Sequence[str]], config: FastTextConfig | None = None, *,
                   log: Log | None = None, max_time: float | None = None):
    """Train fastText (skip-gram, negative sampling) on ``sentences``; returns
    ``(FastTextVectors, stats)`` (stats as ``train_word2vec``'s)."""
    config = config or FastTextConfig()
    vocab, ids, sentence = encode_corpus(sentences, config)
    model = FastText(config, vocab.words,
                     generator=torch.Generator().manual_seed(config.seed))
    stats = _train(model, vocab, ids, sentence, fasttext_batch, config, log, max_time)
    return model.to_vectors(), stats
