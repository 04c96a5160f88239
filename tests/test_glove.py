"""GloVe: co-occurrence counting against a brute-force loop, the paper's loss on numbers worked
out by hand, hand-written gradients against autograd and finite differences, the AdaGrad step,
and vectors that find planted word groups."""

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from wxb.errors import ConfigError, DataError
from wxb.models.glove import GloVe, glove_loss, glove_weighting
from wxb.tasks.word_vectors.cooccurrence import cooccurrence
from wxb.tasks.word_vectors.glove import GloVeConfig, _adagrad, fit_glove, train_glove

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force(ids, vocab_size, window, symmetric=True, distance_weighting=True):
    """X by the definition: every pair (p, q), p < q ≤ p + window, of each sentence."""
    x = np.zeros((vocab_size, vocab_size))
    for sentence in ids:
        for p in range(len(sentence)):
            for q in range(p + 1, min(p + window, len(sentence) - 1) + 1):
                weight = 1.0 / (q - p) if distance_weighting else 1.0
                x[sentence[p], sentence[q]] += weight
                if symmetric:
                    x[sentence[q], sentence[p]] += weight
    return x


def random_ids(seed=0, sentences=40, vocab_size=12):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab_size, size=rng.integers(0, 16)) for _ in range(sentences)]


@pytest.mark.parametrize("window", [1, 3, 10])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("distance_weighting", [True, False])
def test_cooccurrence_equals_brute_force(window, symmetric, distance_weighting):
    ids = random_ids()
    expected = brute_force(ids, 12, window, symmetric, distance_weighting)
    for chunk_tokens in (1, 7, 10_000):  # one sentence a chunk, a few, all at once
        x = cooccurrence(ids, 12, window=window, symmetric=symmetric,
                         distance_weighting=distance_weighting, chunk_tokens=chunk_tokens)
        assert isinstance(x, sp.csr_matrix) and x.has_canonical_format
        np.testing.assert_allclose(x.toarray(), expected, rtol=1e-12, atol=0)
        assert x.nnz == np.count_nonzero(expected)  # only pairs seen are stored


def test_pairs_never_cross_a_sentence_boundary():
    x = cooccurrence([np.array([0, 1]), np.array([2, 3])], 4, window=5).toarray()
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = expected[2, 3] = expected[3, 2] = 1.0
    np.testing.assert_array_equal(x, expected)  # X[1, 2] = 0: "1" ends one, "2" starts the next


def test_cooccurrence_is_symmetric_and_weights_by_distance():
    ids = random_ids(seed=1, sentences=60, vocab_size=9)
    x = cooccurrence(ids, 9, window=4)
    assert abs(x - x.T).max() == 0
    one_way = cooccurrence(ids, 9, window=4, symmetric=False)
    assert abs(x - (one_way + one_way.T)).max() < 1e-12
    x = cooccurrence([np.array([0, 1, 2, 3])], 4, window=10).toarray()
    assert x[0, 1] == 1.0 and x[0, 2] == 0.5 and x[0, 3] == pytest.approx(1 / 3)


def test_cooccurrence_refuses_bad_input():
    with pytest.raises(DataError, match="word id 7 is outside the vocabulary"):
        cooccurrence([np.array([0, 7])], 5)
    with pytest.raises(ConfigError, match="window must be at least 1"):
        cooccurrence([np.array([0, 1])], 5, window=0)


def test_weighting_below_at_and_above_x_max():
    f = glove_weighting(torch.tensor([1.0, 50.0, 99.0, 100.0, 200.0], dtype=torch.float64))
    # (1/100)^0.75, (50/100)^0.75, (99/100)^0.75 by plain Python floats; 1 from x_max on.
    expected = [0.03162277660168379, 0.5946035575013605, 0.992490585716335, 1.0, 1.0]
    np.testing.assert_allclose(f.numpy(), expected, rtol=1e-14)
    assert glove_weighting(torch.tensor([5.0]), x_max=10.0, alpha=1.0).item() == 0.5


def test_loss_equals_the_paper_on_a_hand_computed_example():
    weight = torch.tensor([[1.0, 2.0], [0.5, -1.0]], dtype=torch.float64)
    context = torch.tensor([[0.3, 0.1], [-0.2, 0.4]], dtype=torch.float64)
    bias = torch.tensor([0.1, -0.2], dtype=torch.float64)
    context_bias = torch.tensor([0.05, 0.3], dtype=torch.float64)
    rows, cols = torch.tensor([0, 1, 0]), torch.tensor([1, 0, 0])
    counts = torch.tensor([50.0, 200.0, 1.0], dtype=torch.float64)
    # (0, 1), X=50:  w0·w̃1 = -0.2 + 0.8 = 0.6; diff = 0.6 + 0.1 + 0.3 - log 50 = -2.912023005428146
    #                f = 0.5^0.75 = 0.5946035575013605 -> f·diff² = 5.042165616548758
    # (1, 0), X=200: w1·w̃0 = 0.15 - 0.1 = 0.05; diff = 0.05 - 0.2 + 0.05 - log 200
    #                = -5.398317366548036, f = 1 -> 29.14183038997412
    # (0, 0), X=1:   w0·w̃0 = 0.5; diff = 0.5 + 0.1 + 0.05 - 0 = 0.65, f = 0.01^0.75
    #                = 0.03162277660168379 -> 0.013360623114211401
    loss = glove_loss(weight, context, bias, context_bias, rows, cols, counts)
    assert loss.item() == pytest.approx(5.042165616548758 + 29.14183038997412
                                        + 0.013360623114211401, rel=1e-13)
    assert loss.item() == pytest.approx(34.197356629637085, rel=1e-13)


def small_model_and_entries(seed=0, vocab_size=7, dim=5, entries=30):
    generator = torch.Generator().manual_seed(seed)
    model = GloVe(vocab_size, dim, generator=generator).double()
    with torch.no_grad():
        for p in model.parameters():  # values of the size training reaches, not the tiny init
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.5)
    rows = torch.randint(0, vocab_size, (entries,), generator=generator)  # repeats included
    cols = torch.randint(0, vocab_size, (entries,), generator=generator)
    counts = torch.rand(entries, generator=generator, dtype=torch.float64) * 200 + 0.1
    return model, rows, cols, counts


def summed_hand_gradients(model, rows, cols, counts):
    g = model.gradients(rows, cols, counts.log(), glove_weighting(counts))
    dense = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for name, index in (("weight", rows), ("bias", rows), ("context_weight", cols),
                        ("context_bias", cols)):
        dense[name].index_add_(0, index, getattr(g, name))
    return g.loss, dense


def test_hand_written_gradients_equal_autograd_and_finite_differences():
    model, rows, cols, counts = small_model_and_entries()
    loss, hand = summed_hand_gradients(model, rows, cols, counts)
    auto_loss = model(rows, cols, counts)
    auto_loss.backward()
    assert loss.item() == pytest.approx(auto_loss.item(), rel=1e-12)
    for name, p in model.named_parameters():
        torch.testing.assert_close(hand[name], p.grad, rtol=1e-10, atol=1e-12)
    eps = 1e-6
    with torch.no_grad():
        for name, p in model.named_parameters():
            flat = p.view(-1)
            for k in range(0, flat.numel(), 3):
                keep = flat[k].item()
                flat[k] = keep + eps
                up = model(rows, cols, counts).item()
                flat[k] = keep - eps
                down = model(rows, cols, counts).item()
                flat[k] = keep
                assert (up - down) / (2 * eps) == pytest.approx(hand[name].view(-1)[k].item(),
                                                                rel=1e-5, abs=1e-6)


def test_adagrad_sums_a_words_entries_and_scales_by_its_own_accumulator():
    param = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]], dtype=torch.float64)
    squares = torch.tensor([[1.0, 1.0], [1.0, 1.0], [4.0, 1.0]], dtype=torch.float64)
    grads = torch.tensor([[2.0, -4.0], [6.0, 0.0], [10.0, 2.0]], dtype=torch.float64)
    _adagrad(param, squares, torch.tensor([0, 0, 2]), grads, step=0.5)
    # word 0: g = (8, -4), u = (4, -2), G = 1 + u² = (17, 5), moves by -u/√G
    # word 2: g = (10, 2), u = (5, 1), G = (4 + 25, 1 + 1) = (29, 2)
    torch.testing.assert_close(squares, torch.tensor([[17.0, 5.0], [1.0, 1.0], [29.0, 2.0]],
                                                     dtype=torch.float64))
    expected = [[1 - 4 / math.sqrt(17), 1 + 2 / math.sqrt(5)], [2.0, 2.0],
                [3 - 5 / math.sqrt(29), 3 - 1 / math.sqrt(2)]]
    torch.testing.assert_close(param, torch.tensor(expected, dtype=torch.float64))


def planted_corpus(groups=5, size=8, sentences=1500, seed=0):
    """Sentences each about one group of words: 60% of a sentence's words come from its group,
    20% are function words every group uses and 20% are any planted word (noise), so that
    every pair of words co-occurs and only the counts tell the groups apart."""
    rng = np.random.default_rng(seed)
    words = [[f"g{g}w{k}" for k in range(size)] for g in range(groups)]
    planted = [w for group in words for w in group]
    common = ["the", "a", "of", "and"]
    corpus = []
    for _ in range(sentences):
        group = words[rng.integers(groups)]
        sentence = []
        for draw in rng.random(rng.integers(6, 14)):
            pool = group if draw < 0.6 else common if draw < 0.8 else planted
            sentence.append(pool[rng.integers(len(pool))])
        corpus.append(sentence)
    return corpus, words


def test_glove_finds_planted_groups_and_its_loss_falls():
    corpus, groups = planted_corpus()
    config = GloVeConfig(vector_size=16, window=5, epochs=15, min_count=1, batch_size=256,
                         x_max=10.0)
    lines = []
    vectors, stats = train_glove(corpus, config, log=lines.append)
    assert stats["epochs"] == 15 and len(stats["loss"]) == 15 and not stats["stopped_by_time"]
    assert stats["vocab_size"] == 44 and stats["nonzeros"] > 0 and stats["nonzeros_per_s"] > 0
    assert any("epoch 15/15" in line for line in lines)
    losses = stats["loss"]
    assert losses[-1] < 0.3 * losses[0]
    assert all(b <= a * 1.01 for a, b in itertools.pairwise(losses))  # falls (a little noise)

    planted = [w for group in groups for w in group]
    group_of = {w: g for g, group in enumerate(groups) for w in group}
    index = {w: k for k, w in enumerate(vectors.words)}
    table = np.stack([vectors.vectors[index[w]] for w in planted])
    table = table / np.linalg.norm(table, axis=1, keepdims=True)
    cosine = table @ table.T
    np.fill_diagonal(cosine, -np.inf)
    nearest = cosine.argmax(axis=1)
    accuracy = np.mean([group_of[planted[k]] == group_of[planted[n]]
                        for k, n in enumerate(nearest)])
    assert accuracy >= 0.95  # chance: 7 of the 39 other planted words, 0.18
    assert vectors.vectors.dtype == np.float32 and vectors.vectors.shape == (44, 16)


def test_seeded_and_the_vectors_are_word_plus_context():
    matrix = cooccurrence(random_ids(seed=3, sentences=80, vocab_size=10), 10, window=3)
    config = GloVeConfig(vector_size=4, epochs=3, batch_size=16, seed=5)
    first, _ = fit_glove(matrix, config)
    again, _ = fit_glove(matrix, config)
    other, _ = fit_glove(matrix, GloVeConfig(vector_size=4, epochs=3, batch_size=16, seed=6))
    torch.testing.assert_close(first.vectors(), again.vectors(), rtol=0, atol=0)
    assert not torch.allclose(first.vectors(), other.vectors())
    torch.testing.assert_close(first.vectors(), first.weight + first.context_weight)


def test_time_budget_and_bad_settings():
    matrix = cooccurrence(random_ids(), 12, window=3)
    _, stats = fit_glove(matrix, GloVeConfig(vector_size=4, epochs=5), max_time=0.0)
    assert stats["stopped_by_time"] and stats["epochs"] == 0 and stats["loss"] == []
    with pytest.raises(ConfigError, match="epochs must be at least 1, got 0"):
        fit_glove(matrix, GloVeConfig(epochs=0))
    with pytest.raises(ConfigError, match=r"x_max must be above 0, got -1\.0"):
        fit_glove(matrix, GloVeConfig(x_max=-1.0))
    with pytest.raises(ConfigError, match="unknown glove field 'epoch'"):
        GloVeConfig.from_dict({"epoch": 3}, "glove")
    with pytest.raises(DataError, match=r"square \(vocab, vocab\); got shape \(3, 4\)"):
        fit_glove(sp.csr_matrix(np.ones((3, 4))), GloVeConfig())
    with pytest.raises(DataError, match="NaN or infinite counts"):
        fit_glove(sp.csr_matrix(np.array([[0.0, np.inf], [np.inf, 1.0]])), GloVeConfig())
    with pytest.raises(DataError, match="no positive entry"):
        fit_glove(sp.csr_matrix((3, 3)), GloVeConfig())
