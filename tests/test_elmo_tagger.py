"""ELMo in the CoNLL tagger: the frozen biLM's layers at the words (no <S>, </S>), a trainable
ScalarMix joined to the word vectors, features computed once before training equal to the
biLM run on the fly, and a saved folder that carries its biLM and tags as the run scored."""

from __future__ import annotations

import json
import random

import pytest
import torch
from seqeval.metrics import f1_score

import wxb
from wxb.data.conll import TaggedSentence, read_conll
from wxb.data.tagging import word_cases, word_ids
from wxb.errors import ConfigError
from wxb.models.elmo import ElmoBiLM, ElmoConfig, ElmoVocabulary, batch_to_ids
from wxb.models.rnn import RNNConfig, RNNForSequenceClassification, RNNForTokenClassification
from wxb.tasks.token_classify.train import ElmoCollator, add_elmo_features, train_tagger

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CHARS = 12
TINY_ELMO = {"max_characters_per_token": CHARS, "char_embedding_dim": 8,
             "filters": [[1, 8], [2, 8], [3, 8]], "n_highway": 1, "projection_dim": 8,
             "hidden_size": 12, "dropout": 0.3}  # dropout: a biLM left in train mode would show
SENTENCES = [["Peter", "visited", "Paris", "."], ["Reuters", "said"],
             ["the", "big", "dog", "ran", "to", "London", "."]]
NAMES = {"PER": ["John", "Mary", "Anna"], "LOC": ["Paris", "Berlin", "Tokyo"],
         "ORG": ["Reuters", "Siemens", "UNICEF"]}
TEMPLATES = [["PER", "visited", "LOC", "."], ["ORG", "said", "PER", "will", "go", "."],
             ["PER", "works", "for", "ORG", "in", "LOC", "."]]


def tiny_bilm(seed: int = 0) -> ElmoBiLM:
    torch.manual_seed(seed)
    words = sorted({w for s in SENTENCES for w in s} | {w for v in NAMES.values() for w in v})
    vocabulary = ElmoVocabulary.from_words(words)
    return ElmoBiLM(ElmoConfig(vocab_size=len(vocabulary), **TINY_ELMO), vocabulary).eval()


def tiny_tagger(bilm: ElmoBiLM, **fields) -> RNNForTokenClassification:
    torch.manual_seed(1)
    config = RNNConfig(vocab_size=30, embedding_size=6, hidden_size=8, num_labels=3,
                       dropout=0.0, elmo_config=bilm.config.to_dict(), **fields)
    tagger = RNNForTokenClassification(config)
    tagger.elmo.load_state_dict(bilm.state_dict())
    return tagger


def word_batch(sentences=SENTENCES):
    seq = max(map(len, sentences))
    ids = torch.zeros(len(sentences), seq, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sentences):
        ids[i, :len(s)] = torch.arange(2, 2 + len(s))
        mask[i, :len(s)] = 1
    return ids, mask


def test_the_features_are_the_bilms_layers_at_the_words_without_the_boundaries():
    bilm = tiny_bilm()
    tagger = tiny_tagger(bilm)
    assert (tagger.config.elmo_dim, tagger.config.elmo_layers) == (16, 3)
    char_ids, _ = batch_to_ids(SENTENCES, CHARS)  # <S> words </S>, padded
    features = tagger.elmo_representations(char_ids)
    reference = torch.stack(bilm.layer_representations(char_ids), dim=1)
    seq = max(map(len, SENTENCES))
    assert features.shape == (len(SENTENCES), 3, seq, 16)
    for i, words in enumerate(SENTENCES):
        n = len(words)
        assert torch.equal(features[i, :, :n], reference[i, :, 1:n + 1])
        assert not features[i, :, n:].any()  # </S> and the padding are gone
    # Layer 0 is the character encoder's token vector, twice: the same word, the same vector.
    assert torch.equal(features[0, 0, 2], features[2, 0, 5]) is False  # Paris vs London
    paris = tagger.elmo_representations(batch_to_ids([["Paris"], ["in", "Paris"]], CHARS)[0])
    assert torch.equal(paris[0, 0, 0], paris[1, 0, 1])
    assert not torch.equal(paris[0, 1, 0], paris[1, 1, 1])  # the LSTM layers see the context


def test_the_mix_gets_gradients_and_the_bilm_none_and_stays_in_eval_mode():
    bilm = tiny_bilm()
    tagger = tiny_tagger(bilm).train()
    assert tagger.training and not tagger.elmo.training
    assert not any(p.requires_grad for p in tagger.elmo.parameters())
    ids, mask = word_batch()
    labels = torch.randint(0, 3, ids.shape).masked_fill(mask == 0, -100)
    char_ids, _ = batch_to_ids(SENTENCES, CHARS)
    out = tagger(ids, mask, labels=labels, char_ids=char_ids)
    out.loss.backward()
    mix = tagger.scalar_mix
    assert mix.scalar_parameters.grad is not None and mix.scalar_parameters.grad.abs().sum() > 0
    assert mix.gamma.grad is not None and mix.gamma.grad.abs() > 0
    assert all(p.grad is None for p in tagger.elmo.parameters())
    assert tagger.embeddings.weight.grad is not None
    trained = tagger.num_parameters(trainable_only=True)
    assert tagger.num_parameters() - trained == bilm.num_parameters()

    # Precomputed features give the logits the biLM gives on the fly.
    tagger.eval()
    features = tagger.elmo_representations(char_ids)
    on_the_fly = tagger(ids, mask, char_ids=char_ids).logits
    assert torch.equal(tagger(ids, mask, elmo_representations=features).logits, on_the_fly)
    with pytest.raises(ConfigError, match="give char_ids"):
        tagger(ids, mask)


def test_layer_norm_is_a_choice_and_the_classifier_takes_no_elmo():
    bilm = tiny_bilm()
    tagger = tiny_tagger(bilm, elmo_layer_norm=True)
    assert tagger.scalar_mix.do_layer_norm
    ids, mask = word_batch()
    char_ids, _ = batch_to_ids(SENTENCES, CHARS)
    assert torch.isfinite(tagger(ids, mask, char_ids=char_ids).logits).all()
    with pytest.raises(ConfigError, match="ELMo features are the tagger's"):
        RNNForSequenceClassification(RNNConfig(elmo_config=bilm.config.to_dict()))
    with pytest.raises(ConfigError, match="projection_dim"):
        RNNConfig(elmo_config={"projection_dim": 0})


# ----------------------------------------------------------------------------- the task


def news(n: int, seed: int) -> list[TaggedSentence]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words, tags = [], []
        for slot in TEMPLATES[i % len(TEMPLATES)]:
            if slot in NAMES:
                words.append(rng.choice(NAMES[slot]))
                tags.append(f"B-{slot}")
            else:
                words.append(slot)
                tags.append("O")
        out.append(TaggedSentence(words, tags))
    return out


def write_conll(path, sentences):
    path.write_text("".join("".join(f"{w} X X {t}\n" for w, t in zip(s.tokens, s.tags,
                                                                    strict=True)) + "\n"
                            for s in sentences), encoding="utf-8")
    return str(path)


@pytest.fixture
def config(tmp_path):
    bilm_dir = tiny_bilm().save_pretrained(tmp_path / "bilm")
    files = {"train": write_conll(tmp_path / "train.txt", news(60, 0)),
             "test": write_conll(tmp_path / "test.txt", news(21, 1))}
    return {"model": {"type": "rnn", "embedding_size": 8, "hidden_size": 16, "dropout": 0.0,
                      "case_embedding_size": 4, "elmo": str(bilm_dir)},
            "data": {**files, "format": "conll", "max_length": 5},  # some sentences are cut
            "training": {"output_dir": str(tmp_path / "run"), "num_train_epochs": 4,
                         "learning_rate": 3e-2, "per_device_train_batch_size": 8,
                         "per_device_eval_batch_size": 8, "use_cpu": True,
                         "disable_tqdm": True, "plot_loss": False, "logging_steps": 10}}


def test_an_elmo_tagger_trains_and_its_folder_tags_as_the_run_scored(config, tmp_path):
    lines = []
    result = train_tagger(config, log=lines.append)
    assert "elmo: the biLM's layers of every word computed" in "\n".join(lines)
    assert result["elmo"]["layers"] == 3 and len(result["elmo"]["mix_weights"]) == 3
    assert result["elmo"]["mix_weights"] != [pytest.approx(1 / 3)] * 3  # the mix learned
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["elmo_config"]["projection_dim"] == 8 and not saved["elmo_layer_norm"]

    # The folder carries the biLM, untouched by training, and tags on its own.
    tagger = wxb.pipeline("token-classify", result["model_dir"])
    original = ElmoBiLM.from_pretrained(config["model"]["elmo"]).state_dict()
    assert all(torch.equal(v, original[k]) for k, v in tagger.model.elmo.state_dict().items())
    test = read_conll(config["data"]["test"])
    tags, _ = tagger.tag([s.tokens for s in test], batch_size=5)
    guess = [t[:5] + ["O"] * (len(t) - 5) for t in tags]  # the run counts cut words as O
    assert f1_score([s.tags for s in test], guess) == pytest.approx(
        result["metrics"]["test_entity_f1"], abs=1e-12)

    # The pipeline's biLM on the fly gives the logits of the features the run computed first.
    model = tagger.model
    sentences = [s.tokens for s in test]
    dataset = type("Rows", (), {"encodings": {}})()
    add_elmo_features(model, dataset, sentences, 100, torch.float32, batch_size=4)
    examples = [{"input_ids": ids, "case_ids": cases, "elmo_representations": f}
                for ids, cases, f in zip(word_ids(tagger.tokenizer, sentences),
                                         word_cases(sentences),
                                         dataset.encodings["elmo_representations"],
                                         strict=True)]
    batch = ElmoCollator(0)(examples)
    char_ids, _ = batch_to_ids(sentences, CHARS)
    with torch.no_grad():
        cached = model(**batch).logits
        live = model(batch["input_ids"], batch["attention_mask"], case_ids=batch["case_ids"],
                     char_ids=char_ids).logits
    assert torch.allclose(cached, live, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"elmo": "MISSING"}, r"model.elmo: .*missing has no config.json; give a biLM folder"),
    ({"elmo": "NOT_ELMO"}, r"model.elmo: .*rnn holds a 'rnn' model, not a biLM"),
    ({"elmo_config": {}}, r"model.elmo_config comes from the biLM folder"),
])
def test_a_bad_elmo_setting_is_one_line(config, tmp_path, change, message):
    not_elmo = RNNForTokenClassification(RNNConfig()).save_pretrained(tmp_path / "rnn")
    paths = {"MISSING": str(tmp_path / "missing"), "NOT_ELMO": str(not_elmo)}
    change = {k: paths.get(v, v) if isinstance(v, str) else v for k, v in change.items()}
    config["model"].update(change)
    with pytest.raises(ConfigError, match=message) as error:
        train_tagger(config)
    assert "\n" not in str(error.value)
