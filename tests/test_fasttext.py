"""fastText (wxb.models.fasttext): n-grams and hashes against gensim's reimplementation of
fastText, the composed vectors (seen and unseen words), save/load, the bag gradients against
autograd, and training on a corpus with planted groups."""

import numpy as np
import pytest
import torch
from test_word2vec import ENTITIES, planted_corpus

from wxb.errors import CheckpointError, ConfigError
from wxb.models.fasttext import (
    FastText,
    FastTextConfig,
    FastTextVectors,
    char_ngrams,
    ft_hash,
    ngram_buckets,
)
from wxb.models.word2vec import negative_sampling_loss
from wxb.tasks.word_vectors.skipgram import train_fasttext

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = ["apple", "café", "naïve", "Ärger", "北京大学", "日本", "a", "xy", "😀ok"]


def test_ngrams_of_apple():
    """The issue's list, in fastText's own order (by start position, then length: gensim's
    ``compute_ngrams_bytes`` and fastText's computeSubwords); "<apple>" is the word's row."""
    expected = ("<ap app ppl ple le> <app appl pple ple> <appl apple pple> <apple apple>")
    grams = char_ngrams("apple", 3, 6)
    assert sorted(grams) == sorted(expected.split()) and len(grams) == 14
    assert grams[:5] == ["<ap", "<app", "<appl", "<apple", "app"]
    assert "<apple>" not in grams
    assert char_ngrams("a", 3, 6) == ["<a>"]  # short words: the whole "<a>" is an n-gram too


def test_ngrams_and_hashes_equal_gensim():
    from gensim.models.fasttext import compute_ngrams_bytes, ft_hash_bytes, ft_ngram_hashes

    for word in WORDS:
        grams = char_ngrams(word, 3, 6)
        assert [g.encode() for g in grams] == compute_ngrams_bytes(word, 3, 6), word
        assert [ft_hash(g.encode()) for g in grams] == [ft_hash_bytes(g.encode())
                                                        for g in grams], word
        assert ngram_buckets(word, 3, 6, 2_000_000) == ft_ngram_hashes(word, 3, 6, 2_000_000)
    assert char_ngrams("ab", 1, 3) == [g.decode() for g in compute_ngrams_bytes("ab", 1, 3)]


def test_hash_sign_extends_bytes():
    """FNV-1a by hand; bytes >= 0x80 enter as int8 (0xFFFFFFxx), not as 0..255."""
    def fnv1a(data, signed):
        h = 2166136261
        for b in data:
            h = ((h ^ ((b - 256) & 0xFFFFFFFF if signed and b >= 128 else b)) * 16777619) \
                & 0xFFFFFFFF
        return h

    assert ft_hash(b"") == 2166136261
    assert ft_hash(b"a") == fnv1a(b"a", False) == 0xE40C292C  # FNV-1a's published value
    accented = "é".encode()
    assert ft_hash(accented) == fnv1a(accented, True) != fnv1a(accented, False)


@pytest.fixture(scope="module")
def trained():
    corpus = planted_corpus(3000)
    config = FastTextConfig(vector_size=24, bucket=5000, epochs=5, batch_words=100)
    return train_fasttext(corpus, config)


def test_vectors_compose_rows(trained, tmp_path):
    vectors, stats = trained
    assert stats["epochs"] == 5 and stats["loss"] < 3.0
    word = "topic3a"
    rows = [vectors.word_rows[vectors.index[word]]] + [
        vectors.ngram_rows[b] for b in ngram_buckets(word, 3, 6, vectors.bucket)]
    np.testing.assert_allclose(vectors[word], np.mean(rows, axis=0), rtol=1e-6)
    unseen = "topic3zz"
    assert unseen not in vectors
    np.testing.assert_allclose(vectors.get(unseen), np.mean(
        [vectors.ngram_rows[b] for b in ngram_buckets(unseen, 3, 6, vectors.bucket)], axis=0),
        rtol=1e-6)
    with pytest.raises(KeyError):
        vectors.get("")
    words = vectors.to_word_vectors()
    assert words.words == vectors.words
    np.testing.assert_allclose(words[word], vectors[word], rtol=1e-6)
    folder = vectors.save(tmp_path / "ft")
    again = FastTextVectors.load(folder)
    assert again.words == vectors.words and (again.min_n, again.max_n) == (3, 6)
    np.testing.assert_array_equal(again.get(unseen), vectors.get(unseen))
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "vectors.safetensors"]
    with pytest.raises(CheckpointError, match="FastTextVectors"):
        FastTextVectors.load(tmp_path)


def test_planted_groups_and_unseen_words(trained):
    """Topic words find their own group; an unseen spelling ``topic{e}z`` lands nearer its
    group than the other groups (through the n-grams it shares, "pic3", "ic3z"...)."""
    vectors, _ = trained
    words = vectors.to_word_vectors()
    hits = sum(w.startswith(f"topic{e}") for e in range(ENTITIES) for c in "abcdef"
               for w, _ in words.most_similar(f"topic{e}{c}", topn=3))
    assert hits / (ENTITIES * 6 * 3) >= 0.8

    def cos(a, b):
        return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    right = 0
    for e in range(ENTITIES):
        unseen = vectors[f"topic{e}z"]
        own = np.mean([cos(unseen, vectors[f"topic{e}{c}"]) for c in "abcdef"])
        others = max(np.mean([cos(unseen, vectors[f"topic{o}{c}"]) for c in "abcdef"])
                     for o in range(ENTITIES) if o != e)
        right += own > others
    assert right >= ENTITIES - 1


def test_bag_gradients_match_autograd():
    """Bags of [word] + n-grams; pairs sharing a center share its bag (``bag_of``); each row
    moves by -lr x ∂loss/∂h of its bags (fastText's rule)."""
    torch.manual_seed(0)
    words = ["apple", "apples", "pear"]
    model = FastText(FastTextConfig(vector_size=5, bucket=11, negative=2), words)
    with torch.no_grad():
        model.output_vectors.normal_()
    rows, offsets = model.bags(torch.tensor([0, 2]))
    assert rows[:1].tolist() == [0] and rows[offsets[1]].item() == 2
    assert rows[1:offsets[1]].tolist() == [3 + b for b in ngram_buckets("apple", 3, 6, 11)]
    bag_of = torch.tensor([0, 0, 1, 0])
    targets = torch.tensor([[1, 2, 0], [2, 1, 1], [0, 1, 2], [1, 0, 0]])
    valid = targets != targets[:, :1]
    valid[:, 0] = True
    hidden = model.hidden(rows, offsets).detach().requires_grad_()
    before_in = model.input_vectors.detach().clone()
    before_out = model.output_vectors.detach().clone()
    negative_sampling_loss(hidden[bag_of], before_out, targets, valid).sum().backward()
    loss = model(rows, offsets, targets, bag_of=bag_of, valid=valid)
    loss.backward()
    model.sgd_step(rows, offsets, targets, 0.5, bag_of=bag_of, valid=valid)
    sizes = torch.diff(offsets, append=torch.tensor([len(rows)]))
    expected = torch.zeros_like(before_in).index_add_(0, rows,
                                                      hidden.grad.repeat_interleave(sizes, 0))
    torch.testing.assert_close(model.input_vectors.detach() - before_in, -0.5 * expected)
    torch.testing.assert_close(model.output_vectors.detach() - before_out,
                               -0.5 * model.output_vectors.grad)


def test_bad_config():
    with pytest.raises(ConfigError, match="skip-gram"):
        FastTextConfig(sg=0)
    with pytest.raises(ConfigError, match="min_n"):
        FastTextConfig(min_n=4, max_n=3)
