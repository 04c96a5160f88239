"""Task contextual-vectors: a target word's vector from each biLM layer, the sense separation
(mean cosine within a sense minus across senses) and the leave-one-out nearest-neighbour sense
accuracy against hand-computed values, layer 0 (static) separating nothing, plots and result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wxb.errors import ConfigError, DataError
from wxb.models.elmo import ElmoBiLM, ElmoConfig, ElmoVocabulary, batch_to_ids
from wxb.tasks.contextual_vectors.train import (
    DataSection,
    nearest_neighbour_accuracy,
    sense_separation,
    target_vectors,
    train_contextual_vectors,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = {"max_characters_per_token": 12, "char_embedding_dim": 8,
        "filters": [[1, 8], [2, 8], [3, 8]], "n_highway": 1, "projection_dim": 8,
        "hidden_size": 12, "dropout": 0.0}
TARGETS = {
    "bank": {"river": ["we sat on the bank of the river .", "the river bank was muddy .",
                       "fish swim near the bank ."],
             "money": ["the bank raised its rates .", "she paid the bank back .",
                       "the central bank said so ."]},
    "play": {"theatre": ["the play opened on Broadway .", "a play by Shakespeare ."],
             "game": ["children play football .", "they play chess at night ."]},
}


@pytest.fixture
def bilm_dir(tmp_path):
    torch.manual_seed(0)
    words = sorted({w for senses in TARGETS.values() for s in senses.values()
                    for sentence in s for w in sentence.split()})
    vocabulary = ElmoVocabulary.from_words(words)
    model = ElmoBiLM(ElmoConfig(vocab_size=len(vocabulary), **TINY), vocabulary)
    return str(model.save_pretrained(tmp_path / "bilm"))


def config(bilm_dir, out, targets=TARGETS):
    return {"model": {"elmo": bilm_dir}, "data": {"targets": targets},
            "training": {"output_dir": str(out)},
            "expected": {"metric": "layer0_separation", "at_most": 0.0}}


def test_separation_and_nearest_neighbours_by_hand():
    # Two senses, two sentences each: a = (1, 0), (1, 1); b = (0, 1), (-1, 0).
    vectors = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    senses = ["a", "a", "b", "b"]
    r = 1 / np.sqrt(2)
    within = (r + 0.0) / 2  # cos(a1, a2) = 1/sqrt2; cos(b1, b2) = 0
    across = (0.0 + -1.0 + r + -r) / 4  # a1b1, a1b2, a2b1, a2b2
    assert sense_separation(vectors, senses) == pytest.approx(within - across, abs=1e-12)
    # Nearest others: a1 -> a2 (r), a2 -> a1 or b1 (both r: half a vote each),
    # b1 -> a2 (r), b2 -> b1 (0 > -r, -1).
    assert nearest_neighbour_accuracy(vectors, senses) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    # The scale of a vector does not matter; equal vectors separate nothing and tie everywhere.
    assert sense_separation(vectors * [[2], [3], [1], [5]], senses) == pytest.approx(
        within - across, abs=1e-12)
    same = np.ones((4, 3))
    assert sense_separation(same, senses) == pytest.approx(0, abs=1e-15)
    assert nearest_neighbour_accuracy(same, senses) == pytest.approx(1 / 3)  # chance: 1 of 3


def test_layer_0_is_the_same_vector_in_every_sentence_and_separates_nothing(bilm_dir):
    bilm = ElmoBiLM.from_pretrained(bilm_dir).eval()
    rows = DataSection.from_dict({"targets": TARGETS}, "data").occurrences()["bank"]
    vectors = target_vectors(bilm, rows)
    assert vectors.shape == (3, 6, 16)
    np.testing.assert_allclose(vectors[0], np.broadcast_to(vectors[0, 0], (6, 16)), atol=1e-6)
    assert not np.allclose(vectors[1], vectors[1, 0], atol=1e-3)  # the LSTMs see the context
    # The vector read is the biLM's at the target's position (0 is <S>).
    words = rows[1][1]  # "the river bank was muddy ."
    alone = bilm.layer_representations(*batch_to_ids([words], 12))
    np.testing.assert_allclose(vectors[2, 1], alone[2][0, words.index("bank") + 1].detach().numpy(),
                               atol=1e-5)


def test_the_task_writes_a_map_per_word_and_layer_and_the_result(bilm_dir, tmp_path):
    lines = []
    result = train_contextual_vectors(config(bilm_dir, tmp_path / "run"), log=lines.append)
    metrics = result["metrics"]
    for word in ("bank", "play"):
        assert metrics[f"{word}_layer0_separation"] == 0.0
        assert metrics[f"{word}_layer1_separation"] != 0.0
        for j in range(3):
            assert 0 <= metrics[f"{word}_layer{j}_nn_accuracy"] <= 1
            png = tmp_path / "run" / f"{word}_layer{j}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert result["plots"][f"{word}_layer{j}"] == str(png)
    assert metrics["bank_layer0_nn_accuracy"] == pytest.approx(2 / 5, abs=1e-6)  # chance
    assert metrics["layer1_separation"] == pytest.approx(
        (metrics["bank_layer1_separation"] + metrics["play_layer1_separation"]) / 2, abs=1e-6)
    assert result["met"] and result["sentences"] == {"bank": 6, "play": 4}
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["task"] == "contextual-vectors" and saved["metrics"] == metrics
    assert any(line.startswith("bank (river 3, money 3): layer 0 separation") for line in lines)


def test_bad_input_is_one_line_naming_it(bilm_dir, tmp_path):
    missing = {"bank": {"river": ["the bank was muddy .", "a Bank of sand ."],
                        "money": ["the bank paid .", "the bank lent ."]}}
    with pytest.raises(DataError, match=r"data.targets.bank.river, sentence 2 \('a Bank of "
                                        r"sand \.'\): no word 'bank'"):
        train_contextual_vectors(config(bilm_dir, tmp_path / "run", missing))
    one = {"bank": {"river": ["the bank was muddy .", "a bank of sand ."]}}
    with pytest.raises(ConfigError, match=r"data.targets.bank must map two or more senses"):
        train_contextual_vectors(config(bilm_dir, tmp_path / "run", one))
    lonely = {"bank": {"river": ["the bank was muddy ."], "money": ["a", "b"]}}
    with pytest.raises(ConfigError, match=r"data.targets.bank.river must be a list of two"):
        train_contextual_vectors(config(bilm_dir, tmp_path / "run", lonely))
    with pytest.raises(ConfigError, match=r"model.elmo: .*nowhere has no config.json"):
        train_contextual_vectors(config(str(tmp_path / "nowhere"), tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"model.elmo is missing"):
        train_contextual_vectors({"data": {"targets": TARGETS}})
