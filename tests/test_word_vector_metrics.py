"""Analogy accuracy and model agreement (wxb.metrics.word_vectors) on vectors built so the
answers are known, and against gensim's evaluate_word_analogies on the same vectors."""

from types import SimpleNamespace

import numpy as np
import pytest

from wxb.metrics.word_vectors import (
    analogy_accuracy,
    analogy_questions,
    plural_pairs,
    relation_pairs,
    similarity_correlation,
)


def vectors_of(words, matrix):
    return SimpleNamespace(words=list(words), index={w: i for i, w in enumerate(words)},
                           vectors=np.asarray(matrix, dtype=np.float32))


def planted():
    """Countries and capitals as points with one shared capital offset, plus noise words."""
    rng = np.random.default_rng(0)
    pairs = relation_pairs("capital-country")[:8]
    offset = rng.normal(size=16)
    words, rows = [], []
    for capital, country in pairs:
        base = rng.normal(size=16) * 3
        words += [capital, country]
        rows += [base + offset, base]
    words += [f"noise{i}" for i in range(20)]
    rows += list(rng.normal(size=(20, 16)) * 3)
    return vectors_of(words, rows)


def test_planted_analogies_are_all_found_and_noise_breaks_them():
    vectors = planted()
    questions = analogy_questions(vectors.words)
    assert set(questions) == {"capital-country"}
    assert len(questions["capital-country"]) == 8 * 7
    score = analogy_accuracy(vectors, questions)
    assert score["accuracy"] == 1.0 and score["questions"] == 56 and score["skipped"] == 0
    shuffled = vectors_of(vectors.words, np.random.default_rng(1).permutation(vectors.vectors))
    assert analogy_accuracy(shuffled, questions)["accuracy"] < 0.2


def test_restrict_vocab_skips_questions_beyond_the_cut():
    vectors = planted()
    questions = analogy_questions(vectors.words)
    score = analogy_accuracy(vectors, questions, restrict_vocab=8)  # the first 4 pairs
    assert score["questions"] == 4 * 3 and score["skipped"] == 56 - 12


def test_equal_to_gensims_evaluate_word_analogies(tmp_path):
    gensim = pytest.importorskip("gensim")
    rng = np.random.default_rng(2)
    words = [w for pair in relation_pairs("gender") + relation_pairs("comparative")
             for w in pair]
    vectors = vectors_of(words, rng.normal(size=(len(words), 8)))
    vectors.vectors[: len(words) // 2] += 0.3  # some structure, some errors
    questions = analogy_questions(words)
    ours = analogy_accuracy(vectors, questions, restrict_vocab=None)
    path = tmp_path / "questions.txt"
    path.write_text("".join(f": {name}\n" + "".join(" ".join(q) + "\n" for q in rows)
                            for name, rows in questions.items()))
    keyed = gensim.models.KeyedVectors(8)
    keyed.add_vectors(words, vectors.vectors)
    theirs, sections = keyed.evaluate_word_analogies(str(path), restrict_vocab=len(words),
                                                     case_insensitive=False)
    assert ours["accuracy"] == pytest.approx(theirs)
    for section in sections[:-1]:
        asked = len(section["correct"]) + len(section["incorrect"])
        assert ours["per_relation"][section["section"]] == pytest.approx(
            len(section["correct"]) / asked)


def test_plural_pairs_come_from_the_vocabulary():
    words = ["the", "movie", "film", "movies", "films", "is", "bus", "buses", "news"]
    assert plural_pairs(words) == [("movie", "movies"), ("film", "films")]


def test_similarity_correlation_is_one_for_a_rotation_and_low_for_noise():
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(30)]
    matrix = rng.normal(size=(30, 10))
    rotation, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    a, b = vectors_of(words, matrix), vectors_of(words, matrix @ rotation)
    assert similarity_correlation(a, b, words) == pytest.approx(1.0, abs=1e-6)
    noise = vectors_of(words, rng.normal(size=(30, 10)))
    assert abs(similarity_correlation(a, noise, words)) < 0.2
