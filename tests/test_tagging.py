"""CoNLL files and NER metrics: entity F1 equal to seqeval's, the course's token F1 equal to
scikit-learn's micro-F1 without O, malformed lines named."""

from __future__ import annotations

import random

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from sklearn.metrics import precision_recall_fscore_support

from wxb.data.conll import read_conll
from wxb.errors import DataError
from wxb.metrics import entities, entity_scores, token_scores_without_o

TAGS = ["O", "O", "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "I-MISC"]


def random_tags(rng: random.Random, n: int) -> list[list[str]]:
    return [[rng.choice(TAGS) for _ in range(rng.randint(1, 12))] for _ in range(n)]


def test_entities_follow_conlleval():
    tags = ["B-PER", "I-PER", "O", "I-ORG", "I-ORG", "B-ORG", "I-LOC", "B-LOC", "B-LOC"]
    assert entities(tags) == {("PER", 0, 1), ("ORG", 3, 4), ("ORG", 5, 5), ("LOC", 6, 6),
                              ("LOC", 7, 7), ("LOC", 8, 8)}
    with pytest.raises(DataError, match="tag 'PER' is not BIO"):
        entities(["PER"])


def test_entity_scores_equal_seqeval_on_random_tags():
    rng = random.Random(0)
    for _ in range(20):
        gold = random_tags(rng, 30)
        guess = [[t if rng.random() < 0.7 else rng.choice(TAGS) for t in s] for s in gold]
        ours = entity_scores(gold, guess)
        assert ours["precision"] == pytest.approx(precision_score(gold, guess), abs=1e-12)
        assert ours["recall"] == pytest.approx(recall_score(gold, guess), abs=1e-12)
        assert ours["f1"] == pytest.approx(f1_score(gold, guess), abs=1e-12)


def test_token_scores_equal_scikit_learn_micro_without_o():
    rng = random.Random(1)
    gold = random_tags(rng, 50)
    guess = [[t if rng.random() < 0.6 else rng.choice(TAGS) for t in s] for s in gold]
    flat_gold = [t for s in gold for t in s]
    flat_guess = [t for s in guess for t in s]
    labels = sorted(set(flat_gold + flat_guess) - {"O"})
    p, r, f, _ = precision_recall_fscore_support(flat_gold, flat_guess, labels=labels,
                                                 average="micro", zero_division=0)
    assert token_scores_without_o(gold, guess) == pytest.approx(
        {"precision": p, "recall": r, "f1": f}, abs=1e-12)
    with pytest.raises(DataError, match="same sentences and lengths"):
        token_scores_without_o(gold, guess[:-1])


def test_conll_files_read_sentences_and_name_a_malformed_line(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
                    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n\n", encoding="utf-8")
    sentences = read_conll(path)
    assert [(s.tokens, s.tags) for s in sentences] == [
        (["EU", "rejects"], ["B-ORG", "O"]), (["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    assert read_conll(path, tag_column=1)[0].tags == ["NNP", "VBZ"]
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ O\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.txt, line 2: 3 fields, expected 4"):
        read_conll(path)
    with pytest.raises(DataError, match="does not exist"):
        read_conll(tmp_path / "missing.txt")
