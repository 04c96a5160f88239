"""Word2Vec (Mikolov et al. 2013): skip-gram and CBOW, with negative sampling or a full softmax.

Two tables of word vectors: the *input* vectors ``W_in`` (the word vectors one keeps) and the
*output* vectors ``W_out`` (one per word that can be predicted). A training example is a bag of
input rows and a word to predict::

    h = mean(W_in[bag])                                   (d,)   the hidden vector
    negative sampling:  loss = -log σ(h·W_out[t]) - Σ_k log σ(-h·W_out[n_k])
                        n_1..n_K drawn from the unigram distribution ^ 0.75
    full softmax:       loss = -log softmax(W_out h)[t]   (every word scored: small vocabularies)

    skip-gram:  bag = [one word of the window],    t = the window's center word
    CBOW:       bag = every word of the window,    t = the center word (the mean: cbow_mean=1)
    fastText:   bag = [the word] + its n-grams,    t = a word of its window (models/fasttext.py)

Batches of examples are scored at once; the gradients are written out by hand
(``negative_sampling_grads``, ``softmax_grads``) so that one SGD step touches only the rows the
batch uses (``index_add_``), as word2vec's C loop does. ``forward`` is the same loss through
autograd, the reference the tests compare the hand-written gradients with.

A row that one step uses more than ``max_row_hits`` times moves as far as that many uses
(see ``_capped``): summing hundreds of stale updates of one row diverges where word2vec's
one-at-a-time updates saturate.

One rule is word2vec's, not the gradient's: every row of a bag receives the whole gradient of
``h`` (word2vec's CBOW and fastText both add ``neu1e`` to each context row; gensim with
``cbow_mean=1`` too), i.e. ``len(bag)`` times the gradient of the mean. For skip-gram (bags of
one) it is the plain gradient.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError
from wxb.models.base import Config


@dataclass
class Word2VecConfig(Config):
    """Word2Vec's settings, named and defaulted as gensim's ``Word2Vec`` (``sg=1``: skip-gram,
    ``sg=0``: CBOW; ``softmax=True`` replaces negative sampling by the full softmax)."""

    model_type: ClassVar[str] = "word2vec"

    vector_size: int = 100
    window: int = 5  # the effective window is drawn in 1..window for each center word
    sg: int = 1
    negative: int = 5
    ns_exponent: float = 0.75
    softmax: bool = False
    sample: float = 1e-3  # frequent-word subsampling threshold; 0 disables it
    min_count: int = 5
    max_vocab_size: int | None = None
    alpha: float = 0.025
    min_alpha: float = 1e-4
    epochs: int = 5
    batch_words: int = 500  # consecutive words whose pairs make one SGD step (skipgram.py)
    max_row_hits: int = 16  # a row used more often in one step moves as far as this many uses
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check()

    def check(self) -> None:
        def need(ok: bool, field: str, what: str) -> None:
            if not ok:
                raise ConfigError(f"{type(self).__name__}: {field}={getattr(self, field)!r} "
                                  f"is invalid; {what}")
        need(self.vector_size > 0, "vector_size", "give a positive number of dimensions")
        need(self.window > 0, "window", "give a window of at least 1 word")
        need(self.sg in (0, 1), "sg", "use 1 for skip-gram or 0 for CBOW")
        need(self.softmax or self.negative > 0, "negative",
             "give at least 1 negative sample, or set softmax: true")
        need(self.sample >= 0, "sample", "give 0 (no subsampling) or a threshold like 1e-3")
        need(self.min_count >= 1, "min_count", "give a count of at least 1")
        need(self.alpha > 0 and 0 <= self.min_alpha <= self.alpha, "min_alpha",
             f"give 0 <= min_alpha <= alpha ({self.alpha})")
        need(self.epochs >= 1, "epochs", "give at least 1 epoch")
        need(self.batch_words >= 1, "batch_words", "give at least 1 word per step")
        need(self.max_row_hits >= 1, "max_row_hits", "give at least 1")

    def replace(self, **changes) -> Word2VecConfig:
        return dataclasses.replace(self, **changes)


def negative_sampling_loss(hidden: torch.Tensor, output: torch.Tensor, targets: torch.Tensor,
                           valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example loss (N,): ``hidden`` (N, d), ``output`` (V, d) the output vectors,
    ``targets`` (N, 1 + K) the word to predict then K negatives, ``valid`` (N, 1 + K) False
    where a negative is the target itself (word2vec skips those)."""
    scores = torch.einsum("nd,nkd->nk", hidden, output[targets])
    signs = torch.ones_like(scores)
    signs[:, 1:] = -1
    losses = -F.logsigmoid(signs * scores)
    if valid is not None:
        losses = losses * valid
    return losses.sum(1)


def negative_sampling_grads(hidden: torch.Tensor, output: torch.Tensor, targets: torch.Tensor,
                            valid: torch.Tensor | None = None):
    """The loss of ``negative_sampling_loss`` and its gradients, written out.

    Returns ``(loss (N,), grad_hidden (N, d), grad_rows (N, 1 + K, d))``; ``grad_rows[n, k]``
    belongs to the output row ``targets[n, k]``. With s = h·w, ∂loss/∂s is σ(s) - 1 for the
    target and σ(s) for a negative (word2vec's ``g = (label - σ(s)) · alpha``, negated).
    """
    # index_select, not output[targets]: several times faster on the CPU for (N, 1 + K) ids
    rows = output.index_select(0, targets.reshape(-1)).view(*targets.shape, -1)  # (N, 1+K, d)
    scores = torch.bmm(rows, hidden.unsqueeze(2)).squeeze(2)    # (N, 1 + K)
    labels = torch.zeros_like(scores)
    labels[:, 0] = 1
    signs = 2 * labels - 1
    losses = -F.logsigmoid(signs * scores)
    ds = torch.sigmoid(scores) - labels                         # ∂loss/∂score
    if valid is not None:
        losses, ds = losses * valid, ds * valid
    grad_hidden = torch.bmm(ds.unsqueeze(1), rows).squeeze(1)   # (N, d)
    grad_rows = ds.unsqueeze(2) * hidden.unsqueeze(1)           # (N, 1 + K, d)
    return losses.sum(1), grad_hidden, grad_rows


def softmax_loss(hidden: torch.Tensor, output: torch.Tensor,
                 targets: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy (N,) of the full softmax over every output row: ``hidden``
    (N, d), ``output`` (V, d), ``targets`` (N,)."""
    return F.cross_entropy(hidden @ output.T, targets, reduction="none")


def softmax_grads(hidden: torch.Tensor, output: torch.Tensor, targets: torch.Tensor):
    """``softmax_loss`` and its gradients: ``(loss (N,), grad_hidden (N, d), grad_output
    (V, d))``; ∂loss/∂logits = softmax - one_hot(target)."""
    logits = hidden @ output.T                                  # (N, V)
    losses = F.cross_entropy(logits, targets, reduction="none")
    dlogits = torch.softmax(logits, dim=1)
    dlogits[torch.arange(len(targets)), targets] -= 1
    return losses, dlogits @ output, dlogits.T @ hidden


class Word2Vec(nn.Module):
    """The two tables and one SGD step over a batch of (bag, target) examples.

    ``input_vectors`` (rows, d) starts uniform in ±0.5/d and ``output_vectors`` (vocab, d) at
    zero, as in word2vec. A batch names its bags as flat ``rows`` with ``offsets`` (the start
    of each bag in ``rows``, as ``nn.EmbeddingBag``) and, optionally, ``bag_of`` (N,): which
    bag example n uses (default: bag n), so that examples sharing an input share its bag.
    """

    def __init__(self, config: Word2VecConfig, vocab_size: int, input_rows: int | None = None,
                 *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        d = config.vector_size
        rows = vocab_size if input_rows is None else input_rows
        start = (torch.rand(rows, d, generator=generator) - 0.5) / d
        self.input_vectors = nn.Parameter(start)
        self.output_vectors = nn.Parameter(torch.zeros(vocab_size, d))

    def bags(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, offsets)`` of the bags of ``words`` (n,): for Word2Vec, each word's own row
        (fastText adds its n-grams)."""
        return words, torch.arange(len(words))

    def hidden(self, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The mean of each bag's input rows: (bags, d)."""
        if len(rows) == len(offsets):  # bags of one: a plain lookup, the common case
            return self.input_vectors.index_select(0, rows)
        return F.embedding_bag(rows, self.input_vectors, offsets, mode="mean")

    def forward(self, rows: torch.Tensor, offsets: torch.Tensor, targets: torch.Tensor,
                bag_of: torch.Tensor | None = None,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """The summed loss of the batch, through autograd (the reference of ``sgd_step``)."""
        hidden = self.hidden(rows, offsets)
        if bag_of is not None:
            hidden = hidden[bag_of]
        if self.config.softmax:
            return softmax_loss(hidden, self.output_vectors, targets).sum()
        return negative_sampling_loss(hidden, self.output_vectors, targets, valid).sum()

    @torch.no_grad()
    def gradients(self, rows: torch.Tensor, offsets: torch.Tensor, targets: torch.Tensor,
                  bag_of: torch.Tensor | None = None, valid: torch.Tensor | None = None):
        """The summed loss and the updates' directions, by hand: ``(loss, grad_bags (bags, d),
        out_rows, grad_out)`` where ``grad_bags`` is ∂loss/∂h of each bag and ``grad_out``
        belongs to the output rows ``out_rows`` (``None``: every row, the softmax's)."""
        hidden = self.hidden(rows, offsets)
        per_example = hidden if bag_of is None else hidden[bag_of]
        if self.config.softmax:
            loss, grad_h, grad_out = softmax_grads(per_example, self.output_vectors, targets)
            out_rows = None
        else:
            loss, grad_h, grad_out = negative_sampling_grads(
                per_example, self.output_vectors, targets, valid)
            out_rows, grad_out = targets.reshape(-1), grad_out.reshape(-1, hidden.shape[1])
        if bag_of is not None:  # examples sharing a bag add up their gradients
            grad_h = torch.zeros_like(hidden).index_add_(0, bag_of, grad_h)
        return loss.sum(), grad_h, out_rows, grad_out

    @torch.no_grad()
    def sgd_step(self, rows: torch.Tensor, offsets: torch.Tensor, targets: torch.Tensor,
                 lr: float, bag_of: torch.Tensor | None = None,
                 valid: torch.Tensor | None = None) -> float:
        """One SGD step at learning rate ``lr`` on the rows the batch touches; returns the
        summed loss before the step. Each row of a bag moves by ``-lr * grad_bag`` (word2vec's
        rule, see the module docstring)."""
        loss, grad_h, out_rows, grad_out = self.gradients(rows, offsets, targets, bag_of, valid)
        cap = self.config.max_row_hits
        if out_rows is None:
            self.output_vectors.sub_(grad_out, alpha=lr)
        else:
            grad_out = grad_out * _capped(out_rows, torch.ones(len(out_rows)), cap)[:, None]
            self.output_vectors.index_add_(0, out_rows, grad_out, alpha=-lr)
        uses = (torch.ones(len(offsets)) if bag_of is None
                else torch.bincount(bag_of, minlength=len(offsets)).float())
        if len(rows) != len(offsets):  # each row of a bag gets its bag's gradient
            sizes = torch.diff(offsets, append=torch.tensor([len(rows)]))
            grad_h = grad_h.repeat_interleave(sizes, dim=0)
            uses = uses.repeat_interleave(sizes)
        grad_h = grad_h * _capped(rows, uses, cap)[:, None]
        self.input_vectors.index_add_(0, rows, grad_h, alpha=-lr)
        return float(loss)


def _capped(rows: torch.Tensor, uses: torch.Tensor, cap: int) -> torch.Tensor:
    """(len(rows),) the factor min(1, cap / hits) of each entry, hits being how many examples
    of the step use its row. Word2vec applies each example at once, so a row used many times
    in a row (a run of "!!!!", a frequent negative) feels its own updates saturate the scores;
    summed at once, hundreds of stale updates overshoot and the loss diverges (seen on IMDB at
    batch_words=100 without it). Rows used at most ``cap`` times move exactly as word2vec's."""
    hits = torch.zeros(int(rows.max()) + 1).index_add_(0, rows, uses)
    return (cap / hits[rows]).clamp(max=1.0)
