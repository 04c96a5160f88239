"""Recurrent text models: padding never changes a sentence's result, both implementations
agree, checkpoints round-trip, and a classifier trained from scratch through `finetune`
learns a sentiment task."""

from __future__ import annotations

import random

import pytest
import torch

import wxb
from wxb.errors import ConfigError
from wxb.models.rnn import RNNConfig, RNNForSequenceClassification, RNNForTokenClassification
from wxb.tasks.text_classify.train import finetune

SMALL = dict(vocab_size=30, embedding_size=8, hidden_size=6, num_hidden_layers=2, dropout=0.0,
             num_labels=3)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("pooling", ["last", "max", "mean"])
def test_a_padded_sentence_scores_as_it_does_alone(cell, pooling):
    torch.manual_seed(0)
    model = RNNForSequenceClassification(RNNConfig(**SMALL, cell=cell, pooling=pooling)).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9], [4, 3, 2, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    batched = model(input_ids=ids, attention_mask=mask).logits
    alone = model(input_ids=ids[1:, :3]).logits
    torch.testing.assert_close(batched[1:], alone, atol=1e-6, rtol=1e-6)
    fused = RNNForSequenceClassification(RNNConfig(**SMALL, cell=cell, pooling=pooling,
                                                   impl="torch")).eval()
    fused.load_state_dict(model.state_dict())
    torch.testing.assert_close(fused(input_ids=ids, attention_mask=mask).logits, batched,
                               atol=1e-5, rtol=1e-5)


def test_checkpoints_round_trip_with_their_labels(tmp_path):
    torch.manual_seed(0)
    config = RNNConfig(**SMALL, id2label={0: "neg", 1: "neu", 2: "pos"})
    model = RNNForSequenceClassification(config).eval()
    loaded = wxb.from_pretrained(model.save_pretrained(tmp_path)).eval()
    assert type(loaded) is RNNForSequenceClassification
    assert loaded.config == config and loaded.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    with pytest.raises(ConfigError, match="label 3 is outside num_labels 3"):
        model(input_ids=ids, labels=torch.tensor([3]))
    with pytest.raises(ConfigError, match="unknown cell 'lstn'"):
        RNNConfig(cell="lstn")


def test_the_tagger_scores_every_token_and_ignores_minus_100():
    torch.manual_seed(0)
    tagger = RNNForTokenClassification(RNNConfig(**SMALL))
    ids = torch.tensor([[5, 6, 7], [4, 3, 0]])
    labels = torch.tensor([[0, 1, 2], [2, 1, -100]])
    out = tagger(input_ids=ids, attention_mask=(ids != 0).long(), labels=labels)
    assert out.logits.shape == (2, 3, 3)
    expected = torch.nn.functional.cross_entropy(out.logits[labels != -100],
                                                 labels[labels != -100])
    torch.testing.assert_close(out.loss, expected)


def test_pretrained_vectors_fill_the_known_words():
    model = RNNForSequenceClassification(RNNConfig(**SMALL))
    found = model.load_vectors({"good": torch.ones(8), "unseen": torch.zeros(8)},
                               {"[PAD]": 0, "good": 4})
    assert found == 1 and torch.equal(model.embeddings.weight[4], torch.ones(8))
    with pytest.raises(ConfigError, match="has 3 dimensions; embedding_size is 8"):
        model.load_vectors({"good": torch.ones(3)}, {"good": 4})


def test_an_lstm_classifier_learns_from_scratch_with_a_word_tokenizer(tmp_path):
    rng = random.Random(0)
    good, bad = ["great", "superb", "lovely"], ["awful", "dull", "boring"]
    rows = ["sentence\tlabel"]
    for i in range(240):
        words = rng.sample(["the", "film", "was", "a", "plot", "really"], 4)
        words.insert(rng.randrange(5), rng.choice(good if i % 2 else bad))
        rows.append(f"{' '.join(words)}\t{i % 2}")
    (tmp_path / "all.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = finetune({
        "model": {"type": "rnn", "cell": "lstm", "embedding_size": 16, "hidden_size": 16,
                  "tokenizer": {"kind": "word", "lowercase": True, "split_punctuation": True}},
        "data": {"path": str(tmp_path / "all.tsv"), "text_column": "sentence",
                 "max_length": 16},
        "training": {"output_dir": str(tmp_path / "run"), "num_train_epochs": 15,
                     "learning_rate": 1e-2, "use_cpu": True, "disable_tqdm": True},
    })
    assert result["metrics"]["test_accuracy"] >= 0.95
    answers = wxb.pipeline("classify", result["model_dir"])(["the plot was superb",
                                                             "the plot was dull"])
    assert [a["label"] for a in answers] == ["1", "0"]


@pytest.mark.parametrize("cell, gates", [("rnn", 1), ("gru", 3), ("lstm", 4)])
def test_parameter_breakdown_follows_the_formulas(cell, gates):
    from wxb.models.params import parameter_breakdown

    config = RNNConfig(cell=cell, num_hidden_layers=2, bidirectional=True)
    model = RNNForSequenceClassification(config)
    rows = {r.component: r.parameters for r in parameter_breakdown(model)}
    v, e, h = config.vocab_size, config.embedding_size, config.hidden_size
    assert rows == {"embeddings": v * e, "rnn layer 1": 2 * gates * (h * (e + h) + 2 * h),
                    "rnn layers 2+": 2 * gates * (h * (2 * h + h) + 2 * h),
                    "head": 2 * h * 2 + 2}
    assert sum(rows.values()) == model.num_parameters()


def test_word_vectors_read_in_both_text_formats_into_the_embeddings(tmp_path):
    from wxb.data.vectors import read_word_vectors
    from wxb.errors import DataError

    (tmp_path / "glove.txt").write_text("good 0.5 1 -2\nbad 1 1 1\nfilm 0 0 0\n",
                                        encoding="utf-8")
    (tmp_path / "w2v.txt").write_text("3 3\ngood 0.5 1 -2\nbad 1 1 1\nfilm 0 0 0\n",
                                      encoding="utf-8")
    for name in ("glove.txt", "w2v.txt"):
        vectors = read_word_vectors(tmp_path / name, {"good", "film"})
        assert set(vectors) == {"good", "film"}
        assert vectors["good"].tolist() == [0.5, 1.0, -2.0]
    model = RNNForSequenceClassification(RNNConfig(**{**SMALL, "embedding_size": 3}))
    assert model.load_vectors(vectors, {"[PAD]": 0, "good": 5, "plot": 6}) == 1
    assert model.embeddings.weight[5].tolist() == [0.5, 1.0, -2.0]
    (tmp_path / "bad.txt").write_text("good 1 2 3\nbad 1 2\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.txt, line 2: 2 numbers after the word, "
                                        r"expected 3"):
        read_word_vectors(tmp_path / "bad.txt")
