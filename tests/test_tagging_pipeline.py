"""The NER pipeline: a BiLSTM tagger trained on CoNLL files by `train_tagger` (and the
conll-bilstm recipe), scored by entity F1 equal to seqeval's and the course's token F1, with
truncation counted, padding labelled -100, and the saved folder reloaded by wxb.pipeline("tag")."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from seqeval.metrics import f1_score
from sklearn.metrics import precision_recall_fscore_support

import wxb
from wxb.cli import main
from wxb.data.conll import TaggedSentence, read_conll
from wxb.data.tagging import CASES, encode_sentences, tag_set, word_case
from wxb.data.text import PaddingCollator
from wxb.errors import ConfigError, DataError
from wxb.models.rnn import RNNConfig, RNNForTokenClassification
from wxb.tasks.token_classify.train import tag_metrics, train_tagger
from wxb.tokenizers.train import tokenizer_from_settings
from wxb.train.trainer import EvalPrediction

PEOPLE = [["John"], ["Mary"], ["Peter", "Blackburn"], ["Anna", "Schmidt"], ["David"],
          ["Laura", "Jones"]]
PLACES = [["Paris"], ["London"], ["Berlin"], ["New", "York"], ["Tokyo"]]
ORGS = [["Reuters"], ["Siemens"], ["European", "Commission"], ["UNICEF"]]
TEMPLATES = [["PER", "visited", "LOC", "yesterday", "."],
             ["ORG", "said", "PER", "will", "move", "to", "LOC", "."],
             ["the", "company", "ORG", "opened", "an", "office", "in", "LOC", "."],
             ["PER", "works", "for", "ORG", "."]]
FILLERS = {"PER": PEOPLE, "LOC": PLACES, "ORG": ORGS}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def news(n: int, seed: int) -> list[TaggedSentence]:
    """Sentences from the templates with random people, places and organisations."""
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        words, tags = [], []
        for slot in TEMPLATES[i % len(TEMPLATES)]:
            if slot in FILLERS:
                name = rng.choice(FILLERS[slot])
                words += name
                tags += [f"B-{slot}"] + [f"I-{slot}"] * (len(name) - 1)
            else:
                words.append(slot)
                tags.append("O")
        sentences.append(TaggedSentence(words, tags))
    return sentences


def write_conll(path, sentences):
    """word POS chunk tag, as CoNLL-2003 (the middle columns are placeholders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{w} X X {t}\n" for w, t in zip(s.tokens, s.tags,
                                                                    strict=True)) + "\n"
                            for s in sentences), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    """train.txt (with one sentence longer than max_length 12 whose tail is all O, and a
    word with a full stop inside), a validation file equal to it, and a held-out test file."""
    long = TaggedSentence(["Mary", "visited", "the", "U.S.", *["and"] * 15, "."],
                          ["B-PER", "O", "O", "B-LOC"] + ["O"] * 16)
    train = [*news(80, 0), long]
    return {"train": write_conll(tmp_path / "train.txt", train),
            "validation": write_conll(tmp_path / "valid.txt", train),
            "test": write_conll(tmp_path / "test.txt", news(24, 1))}


def tiny_config(files, out, **training):
    return {
        "model": {"type": "rnn", "cell": "lstm", "embedding_size": 16, "hidden_size": 24,
                  "dropout": 0.0, "word_dropout": 0.05, "case_embedding_size": 4},
        "data": {**{k: str(v) for k, v in files.items()}, "format": "conll", "max_length": 12},
        "training": {"output_dir": str(out), "num_train_epochs": 10, "learning_rate": 3e-2,
                     "per_device_train_batch_size": 16, "eval_strategy": "no",
                     "per_device_eval_batch_size": 16,  # batches of different lengths
                     "use_cpu": True, "logging_steps": 10, "disable_tqdm": True,
                     "plot_loss": False, **training},
        "expected": {"metric": "test_entity_f1", "at_least": 0.9},
    }


# ----------------------------------------------------------------------------- the pipeline


def test_the_tagger_learns_its_data_and_its_folder_tags_the_same(files, tmp_path):
    lines = []
    result = train_tagger(tiny_config(files, tmp_path / "run"), log=lines.append)
    metrics = result["metrics"]
    assert metrics["eval_entity_f1"] >= 0.95  # its own training data
    assert metrics["test_entity_f1"] >= 0.9 and result["expected"]["met"]
    assert metrics["eval_token_f1_without_o"] >= 0.95 and metrics["test_accuracy"] >= 0.95
    assert result["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert result["truncated"] == {"train": 1, "validation": 1, "test": 0}
    assert "train: 1 sentences truncated to max_length 12 words" in "\n".join(lines)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["metrics"] == pytest.approx(metrics) and saved["task"] == "token-classify"

    # The folder alone tags the test file as the run scored it.
    tagger = wxb.pipeline("tag", result["model_dir"])
    assert tagger.model.config.id2label == dict(enumerate(result["labels"]))
    test = read_conll(files["test"])
    tags, scores = tagger.tag([s.tokens for s in test])
    assert f1_score([s.tags for s in test], tags) == pytest.approx(
        metrics["test_entity_f1"], abs=1e-12)
    assert all(0 < p <= 1 for row in scores for p in row)
    text = "Peter Blackburn visited  New York yesterday ."
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in tagger(text)] == [
        ("PER", "Peter Blackburn", 0, 15), ("LOC", "New York", 25, 33)]
    assert tagger(["", "John works for Siemens ."])[0] == []


def test_the_metrics_equal_seqeval_and_cut_words_count_as_o():
    rng = np.random.default_rng(0)
    names = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    sentences = [TaggedSentence([f"w{i}" for i in range(n)],
                                [names[j] for j in rng.integers(0, 5, n)])
                 for n in (3, 7, 5, 9)]
    max_length, width = 6, 8  # the last two sentences were cut to 6 words
    kept = [min(len(s.tags), max_length) for s in sentences]
    logits = rng.normal(size=(len(sentences), width, len(names)))
    labels = np.full((len(sentences), width), -100)
    for i, n in enumerate(kept):
        labels[i, :n] = [names.index(t) for t in sentences[i].tags[:n]]
        logits[i, n:] = -100  # padding, as the Trainer pads predictions of shorter batches
    scores = tag_metrics(sentences, names)(EvalPrediction(logits, labels))
    guess = [[names[j] for j in logits[i, :n].argmax(-1)] + ["O"] * (len(s.tags) - n)
             for i, (s, n) in enumerate(zip(sentences, kept, strict=True))]
    gold = [s.tags for s in sentences]
    assert scores["entity_f1"] == pytest.approx(f1_score(gold, guess), abs=1e-12)
    flat_gold = [t for s in gold for t in s]
    flat_guess = [t for s in guess for t in s]
    p, r, f, _ = precision_recall_fscore_support(
        flat_gold, flat_guess, labels=names[1:], average="micro", zero_division=0)
    assert (scores["token_precision_without_o"], scores["token_recall_without_o"],
            scores["token_f1_without_o"]) == pytest.approx((p, r, f), abs=1e-12)
    assert scores["accuracy"] == pytest.approx(np.mean([a == b for a, b in zip(
        flat_gold, flat_guess, strict=True)]))


def test_cut_sentences_are_counted_and_padding_is_labelled_minus_100():
    sentences = [TaggedSentence(words.split(), tags.split()) for words, tags in (
        ("John visited Paris yesterday .", "B-PER O B-LOC O O"),
        ("Siemens said Mary will move to Berlin .", "B-ORG O B-PER O O O B-LOC O"),
        ("the company Reuters opened an office in Tokyo .", "O O B-ORG O O O O B-LOC O"))]
    tags = tag_set(sentences, "news")
    tokenizer = tokenizer_from_settings({"kind": "word"},
                                        [" ".join(s.tokens) for s in sentences[:2]])
    dataset, cut = encode_sentences(sentences, tags, tokenizer, max_length=8, cases=True,
                                    source="news")
    assert cut == 1 and [len(dataset[i]["input_ids"]) for i in range(3)] == [5, 8, 8]
    assert dataset[2]["input_ids"][-1] == tokenizer.unk_token_id  # "Tokyo": not in training
    assert dataset[2]["labels"] == tags.ids(sentences[2].tags[:8], "news")
    assert [CASES[i] for i in dataset[2]["case_ids"][:4]] == ["lower", "lower", "title", "lower"]
    assert [CASES[word_case(w)] for w in ("EU", "U.S.", "McDonald", "1996-08-22", "--", "A")] \
        == ["upper", "upper", "mixed", "digits", "other", "title"]
    batch = PaddingCollator(tokenizer.pad_token_id)([dataset[0], dataset[1]])
    assert batch["labels"][0].tolist()[5:] == [-100] * 3
    assert batch["input_ids"][0].tolist()[5:] == [tokenizer.pad_token_id] * 3
    assert batch["case_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum(1).tolist() == [5, 8]
    # The loss of the padded batch is the mean over the real words of each sentence alone.
    torch.manual_seed(0)
    model = RNNForTokenClassification(RNNConfig(vocab_size=tokenizer.vocab_size,
                                                embedding_size=8, hidden_size=8,
                                                case_embedding_size=3,
                                                num_labels=len(tags.values))).eval()
    with torch.no_grad():
        alone = [model(**PaddingCollator(0)([dataset[i]])).loss * len(dataset[i]["labels"])
                 for i in (0, 1)]
        assert float(model(**batch).loss) == pytest.approx(float(sum(alone)) / 13, rel=1e-5)
    with pytest.raises(ConfigError, match="this model reads case_ids"):
        model(input_ids=batch["input_ids"])
    with pytest.raises(DataError, match=r"news has label 'B-MISC'"):
        encode_sentences([TaggedSentence(["Dutch"], ["B-MISC"])], tags, tokenizer,
                         max_length=8, source="news")


def test_word_dropout_trains_the_unknown_word():
    config = RNNConfig(vocab_size=10, embedding_size=4, hidden_size=4, num_labels=2,
                       word_dropout=0.5)
    model = RNNForTokenClassification(config)
    ids = torch.full((2, 50), 5)
    ids[1, 40:] = config.pad_token_id
    seen = []
    model.embeddings.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    model(input_ids=ids, attention_mask=(ids != 0).long())
    dropped = seen[-1] == config.unk_token_id
    assert 20 < int(dropped.sum()) < 70 and not dropped[1, 40:].any()  # padding stays padding
    model.eval()(input_ids=ids)
    assert torch.equal(seen[-1], ids)
    with pytest.raises(ConfigError, match="word_dropout is a probability"):
        RNNConfig(word_dropout=1.0)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("change, message", [
    ({"data": {"format": "tsv"}}, "unknown data.format 'tsv'"),
    ({"data": {"train": None}}, "data.train is missing"),
    ({"model": {"type": "gpt2"}}, "no token-classification head; tagging works with: rnn"),
    ({"model": {"tokenizer": {"kind": "word", "split_punctuation": True}}},
     "one token per word"),
    ({"data": {"test": None}}, "expected.metric 'test_entity_f1' is not reported"),
    ({"data": {"tag_column": 1}}, r"train.txt has the tag 'X', which is not BIO"),
    ({"data": {"max_length": 0}}, "data.max_length must be at least 1, got 0"),
])
def test_bad_tagging_configs_are_refused(files, tmp_path, change, message):
    config = tiny_config(files, tmp_path / "run")
    for section, values in change.items():
        config[section] = {**config[section], **values}
    with pytest.raises((ConfigError, DataError), match=message):
        train_tagger(config)


def test_the_recipe_runs_and_a_malformed_conll_file_is_one_line(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "conll2003"
    for name, seed in (("train", 0), ("valid", 1), ("test", 2)):
        write_conll(folder / f"{name}.txt", news(16, seed))
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "run", "conll-bilstm", "--data-dir", str(tmp_path / "data"),
              "--max-steps", "2"])
    assert exit_info.value.code in (0, None)
    result = json.loads((tmp_path / "runs" / "conll-bilstm" / "result.json").read_text())
    assert result["task"] == "token-classify" and result["steps"] == 2
    assert {"eval_entity_f1", "test_token_f1_without_o"} <= set(result["metrics"])
    assert result["expected"]["metric"] == "test_entity_f1"
    capsys.readouterr()
    text = (folder / "train.txt").read_text().splitlines()
    text[2] = "visited VBD"
    (folder / "train.txt").write_text("\n".join(text) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["recipe", "run", "conll-bilstm", "--data-dir", str(tmp_path / "data")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"wxb: error: {folder / 'train.txt'}, line 3: 2 fields, expected 4 (token ... tag, "
        "separated by spaces): 'visited VBD'"]


def test_wxb_finetune_trains_a_tagger_from_a_token_classify_config(files, tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.setenv("CI", "true")
    config = tiny_config(files, tmp_path / "run")
    config = {"task": "token-classify", "model": config["model"]}
    (tmp_path / "ner.yaml").write_text(json.dumps(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", str(tmp_path / "ner.yaml"), "--train", str(files["train"]),
              "--validation", str(files["validation"]), "--max-steps", "3", "--output-dir",
              str(tmp_path / "run")])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "validation entity F1" in out and "token F1 without O" in out
    assert wxb.from_pretrained(tmp_path / "run" / "model").case_embeddings is not None
