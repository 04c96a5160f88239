"""Training GloVe: count co-occurrences once, then AdaGrad over the shuffled nonzeros.

    sentences -> Vocabulary (min_count) -> ids -> X = cooccurrence(ids, window)   (scipy.sparse)
              -> for each epoch: shuffle the nonzeros of X, and for each batch of them
                     J_batch and ∂J by hand (GloVe.gradients) -> one AdaGrad step
              -> W + W̃ as WordVectors

AdaGrad as glove.c does it, per parameter: every value of W, W̃, b, b̃ has its own
squared-gradient accumulator G, starting at 1.0; a step is u = η·∂(½J) (glove.c steps along
the gradient of ½J: η = 0.05 means here what its ``-eta 0.05`` means) and G accumulates u²,
as glove.c's ``gradsq`` does; the value moves by u / √G. Two departures, both from batching:
glove.c visits one nonzero at a time (Hogwild threads), while here a batch's entries for the
same word are summed first (the true gradient of J over the batch), and G takes in the batch's
u² before the step rather than after, so that a word seen many times in one batch still moves
by less than one unit per value (u / √(1 + u²) < 1). glove.c's recent gradient clipping (at
±100 per value) is left out: a healthy run's values are orders of magnitude below it.

The loss per epoch is the paper's J (no ½: the formula the paper writes and the tests check)
divided by the nonzeros, summed over the batches as they are visited (as glove.c's printed
cost is: the parameters move during the epoch); glove.c's "cost" is half of it.

Throughput (vector_size 100, batch 16384, CoNLL-2003 + IMDB: 13,921 words, 4.2M nonzeros):
about 1.0-1.25M nonzeros/s on one torch thread, 3.5-4 s an epoch. Two threads were no faster
and erratic: other helpers shared the 2-core machine during every measurement, so take these
as a lower bound.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from wxb.data.corpus import Vocabulary
from wxb.data.vectors import WordVectors
from wxb.errors import DataError
from wxb.models.glove import GloVe, glove_weighting
from wxb.tasks.run import Log
from wxb.tasks.sections import Section, at_least
from wxb.tasks.word_vectors.cooccurrence import cooccurrence


@dataclass
class GloVeConfig(Section):
    """GloVe's settings; defaults are the paper's (window 10, x_max 100, α 0.75, η 0.05) and
    glove.c's demo (25 epochs, min_count 5). ``max_vocab_size`` keeps the most frequent words."""

    vector_size: int = 100
    window: int = 10
    symmetric: bool = True
    distance_weighting: bool = True
    x_max: float = 100.0
    alpha: float = 0.75
    learning_rate: float = 0.05
    epochs: int = 25
    batch_size: int = 16384
    min_count: int = 5
    max_vocab_size: int | None = None
    seed: int = 0

    def check(self) -> None:
        for name in ("vector_size", "window", "epochs", "batch_size", "min_count"):
            at_least(name, getattr(self, name), 1)
        at_least("max_vocab_size", self.max_vocab_size, 1)
        for name in ("x_max", "alpha", "learning_rate"):
            if not getattr(self, name) > 0:
                raise self.fail(f"{name} must be above 0, got {getattr(self, name)}")


def train_glove(sentences: Sequence[Sequence[str]], config: GloVeConfig | None = None, *,
                log: Log | None = None,
                max_time: float | None = None) -> tuple[WordVectors, dict]:
    """GloVe vectors (W + W̃) for the words of ``sentences`` seen ``min_count`` times, and the
    run's numbers: vocab_size, tokens, nonzeros, loss (per epoch), cooccurrence_s, train_time_s,
    nonzeros_per_s, stopped_by_time. ``max_time`` (seconds) bounds the training loop."""
    config = config or GloVeConfig()
    config.check()
    start = time.perf_counter()
    vocab = Vocabulary.build(sentences, min_count=config.min_count,
                             max_size=config.max_vocab_size)
    ids = vocab.encode(sentences)
    matrix = cooccurrence(ids, len(vocab), window=config.window, symmetric=config.symmetric,
                          distance_weighting=config.distance_weighting)
    counted = time.perf_counter() - start
    if log:
        log(f"glove: {len(vocab)} words, {sum(map(len, ids))} tokens, {matrix.nnz} nonzero "
            f"co-occurrences in {counted:.1f}s")
    model, stats = fit_glove(matrix, config, log=log, max_time=max_time)
    vectors = WordVectors(vocab.words, model.vectors().numpy(), source="GloVe (W + W̃)")
    return vectors, {"vocab_size": len(vocab), "tokens": int(sum(map(len, ids))),
                     "cooccurrence_s": counted, **stats}


def fit_glove(matrix: sp.spmatrix, config: GloVeConfig | None = None, *,
              log: Log | None = None, max_time: float | None = None) -> tuple[GloVe, dict]:
    """Fit a GloVe model to the co-occurrence matrix (vocab, vocab); its numbers: nonzeros,
    loss (mean J per nonzero, per epoch), epochs, train_time_s, nonzeros_per_s, stopped_by_time."""
    config = config or GloVeConfig()
    config.check()
    coo = sp.coo_matrix(matrix)
    if coo.shape[0] != coo.shape[1]:
        raise DataError(f"a co-occurrence matrix is square (vocab, vocab); got shape {coo.shape}")
    if not np.isfinite(coo.data).all():
        raise DataError("the co-occurrence matrix holds NaN or infinite counts; counts are "
                        "finite sums of 1/distance")
    keep = coo.data > 0
    if not keep.any():
        raise DataError("the co-occurrence matrix has no positive entry: the corpus needs "
                        "sentences of at least two words from the vocabulary")
    rows = torch.from_numpy(coo.row[keep].astype(np.int64))
    cols = torch.from_numpy(coo.col[keep].astype(np.int64))
    counts = torch.from_numpy(coo.data[keep].astype(np.float64))
    # log X and f(X) never change: computed once, not per batch.
    log_counts = counts.log().float()
    weights = glove_weighting(counts, config.x_max, config.alpha).float()
    nonzeros = rows.numel()

    generator = torch.Generator().manual_seed(config.seed)
    model = GloVe(coo.shape[0], config.vector_size, generator=generator)
    squares = {name: torch.ones_like(p) for name, p in model.named_parameters()}  # AdaGrad's G
    step = 0.5 * config.learning_rate  # η·∂(½J) = (η/2)·∂J

    losses: list[float] = []
    stopped = False
    begin = time.perf_counter()
    with torch.no_grad():
        for epoch in range(config.epochs):
            order = torch.randperm(nonzeros, generator=generator)
            total = 0.0
            for first in range(0, nonzeros, config.batch_size):
                batch = order[first:first + config.batch_size]
                i, j = rows[batch], cols[batch]
                grads = model.gradients(i, j, log_counts[batch], weights[batch])
                # The paper's J: weighted and squared (the course's version was neither).
                total += float(grads.loss)
                for name, index in (("weight", i), ("bias", i), ("context_weight", j),
                                    ("context_bias", j)):
                    _adagrad(getattr(model, name), squares[name], index,
                             getattr(grads, name), step)
                if max_time is not None and time.perf_counter() - begin > max_time:
                    stopped = True
                    break
            if stopped:
                break
            losses.append(total / nonzeros)
            if log:
                elapsed = time.perf_counter() - begin
                log(f"glove: epoch {epoch + 1}/{config.epochs} loss {losses[-1]:.5f} "
                    f"({(epoch + 1) * nonzeros / elapsed:,.0f} nonzeros/s)")
    train_s = time.perf_counter() - begin
    seen = len(losses) * nonzeros + (first + len(batch) if stopped else 0)
    return model, {"nonzeros": nonzeros, "loss": losses, "epochs": len(losses),
                   "train_time_s": train_s, "nonzeros_per_s": seen / max(train_s, 1e-9),
                   "stopped_by_time": stopped}


def _adagrad(param: torch.Tensor, squares: torch.Tensor, index: torch.Tensor,
             grads: torch.Tensor, step: float) -> None:
    """One AdaGrad step on ``param`` (vocab, ...) from the per-entry gradients ``grads``
    (len(index), ...) of the rows ``index``: a word's entries are summed (index_add), then
    u = step·g, G += u², param -= u / √G. The rows no entry touched have g = 0 and do not move,
    so the step is done on the whole table: at 14k words, dense arithmetic over it was 2.5x
    faster than gathering the distinct rows (torch.unique) and scattering them back."""
    g = torch.zeros_like(param).index_add_(0, index, grads)
    squares.addcmul_(g, g, value=step * step)
    param.addcdiv_(g, squares.sqrt(), value=-step)
