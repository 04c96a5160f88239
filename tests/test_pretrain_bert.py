"""BERT pretraining from documents (MLM + NSP), and the pretrain-then-finetune comparison."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import transformers

import wxb
from wxb.data.mlm import IGNORE, MLMCollator, chinese_word_ids, mask_once
from wxb.errors import ConfigError, DataError
from wxb.tasks.bert_pretrain.then_finetune import pretrain_then_finetune
from wxb.tasks.bert_pretrain.train import pretrain_bert, read_documents, split_sentences
from wxb.tokenizers.train import train_on_lines

transformers.logging.set_verbosity_error()

SUBJECTS = ["我们", "老师", "朋友", "这家店", "外卖", "酒店"]
VERBS = ["喜欢", "觉得", "推荐", "讨厌"]
OBJECTS = ["北京的天气", "这里的服务", "红烧肉", "房间的环境", "送餐速度"]


def documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(f"{rng.choice(SUBJECTS)}{rng.choice(VERBS)}{rng.choice(OBJECTS)}"
                    f"{rng.choice('。！？')}" for _ in range(rng.randint(2, 4)))
            for _ in range(n)]


def write_csv(path, column: str, texts: list[str], labels: list[int] | None = None):
    header = column if labels is None else f"label,{column}"
    rows = texts if labels is None else [f"{y},{t}" for y, t in zip(labels, texts, strict=True)]
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_sentences_end_at_stops_and_line_breaks():
    assert split_sentences("今天很好。你呢？Fine! 好\n\n再见") == [
        "今天很好。", "你呢？", "Fine!", "好", "再见"]


def test_documents_come_from_named_columns_of_any_table(tmp_path):
    write_csv(tmp_path / "a.csv", "review", ["好吃。还会再来！", "一般"])
    (tmp_path / "b.tsv").write_text("标题\t正文一。正文二。\n", encoding="utf-8")
    docs = read_documents([{"path": str(tmp_path / "a.csv"), "column": "review"},
                           {"path": str(tmp_path / "b.tsv"), "columns": ["title", "text"],
                            "column": "text"}])
    assert docs == [["好吃。", "还会再来！"], ["一般"], ["正文一。", "正文二。"]]
    with pytest.raises(DataError, match="no column 'text'; its columns are: review"):
        read_documents([{"path": str(tmp_path / "a.csv"), "column": "text"}])


@pytest.fixture(scope="module")
def tokenizer():
    return train_on_lines("wordpiece", documents(50, 0), vocab_size=200, min_frequency=1)


def test_word_ids_of_pairs_number_the_second_texts_words_after_the_firsts(tokenizer):
    import jieba

    encoding = chinese_word_ids("老师喜欢红烧肉。", tokenizer, "朋友推荐外卖。")
    words_a = len(list(jieba.tokenize("老师喜欢红烧肉。")))
    ids, types = encoding["word_ids"], encoding["token_type_ids"]
    assert ids[0] is None and ids[-1] is None  # [CLS], the last [SEP]
    first = [w for w, t in zip(ids, types, strict=True) if w is not None and t == 0]
    second = [w for w, t in zip(ids, types, strict=True) if w is not None and t == 1]
    assert first[0] == 0 and max(first) == words_a - 1 and min(second) == words_a
    assert first == sorted(first) and second == sorted(second)
    batch = chinese_word_ids(["老师喜欢红烧肉。"], tokenizer, ["朋友推荐外卖。"])
    assert batch["word_ids"] == [ids]


def test_masked_once_examples_pass_through_the_collator_unchanged(tokenizer):
    examples = [{"input_ids": tokenizer.encode(t), "next_sentence_label": i % 2}
                for i, t in enumerate(documents(40, 1))]
    collator = MLMCollator(tokenizer, seed=3)
    masked = mask_once(examples, collator, batch_size=16)
    assert [len(m["input_ids"]) for m in masked] == [len(e["input_ids"]) for e in examples]
    assert sum(label != IGNORE for m in masked for label in m["labels"]) > 0
    again = mask_once(examples, MLMCollator(tokenizer, seed=3), batch_size=16)
    assert again == masked  # the same seed masks the same positions
    batch = collator(masked[:4])
    width = batch["input_ids"].shape[1]
    for row, m in enumerate(masked[:4]):
        n = len(m["input_ids"])
        assert batch["input_ids"][row, :n].tolist() == m["input_ids"]
        assert batch["labels"][row, :n].tolist() == m["labels"]
        assert batch["labels"][row, n:].tolist() == [IGNORE] * (width - n)


def pretrain_config(folder, out, **training):
    write_csv(folder / "corpus.csv", "text", documents(120, 2))
    return {
        "data": {"documents": [{"path": str(folder / "corpus.csv"), "column": "text"}],
                 "max_length": 48, "validation_fraction": 0.1},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "model": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "intermediate_size": 64},
        "training": {"output_dir": str(out), "max_steps": 80, "eval_steps": 40,
                     "learning_rate": 3e-3, "use_cpu": True, "disable_tqdm": True,
                     "logging_steps": 5, **training},
    }


def test_pretraining_learns_and_saves_a_checkpoint_transformers_loads(tmp_path):
    result = pretrain_bert(pretrain_config(tmp_path, tmp_path / "run"))
    metrics = result["metrics"]
    # 6 subjects, 4 verbs, 5 objects: a model that learns the slots soon beats chance (1 in
    # the vocabulary's ~200) by far.
    assert metrics["mlm_accuracy"] > 0.1
    assert metrics["eval_loss"] < math.log(result["tokenizer_size"]) - 0.3
    assert 0 <= metrics["nsp_accuracy"] <= 1
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text()
           .splitlines()]
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses[-1] < losses[0] - 1.0
    assert result["pairs"]["train"] > 100
    ours = wxb.from_pretrained(result["model_dir"]).eval()
    assert type(ours).__name__ == "BertForPreTraining" and not ours.sparse_prediction
    ref = transformers.BertForPreTraining.from_pretrained(result["model_dir"]).eval()
    ids = torch.tensor([wxb.load_tokenizer(result["model_dir"]).encode("老师喜欢红烧肉。")])
    torch.testing.assert_close(ours(input_ids=ids).logits, ref(input_ids=ids).prediction_logits,
                               atol=1e-5, rtol=1e-5)


def test_bad_pretraining_configs_are_refused(tmp_path):
    config = pretrain_config(tmp_path, tmp_path / "run")
    config["data"]["documents"] = [{"path": "x.csv"}]
    with pytest.raises(ConfigError, match="needs path and column"):
        pretrain_bert(config)
    config = pretrain_config(tmp_path, tmp_path / "run")
    config["masking"] = {"mlm_probability": 0.15, "span": 3}
    with pytest.raises(ConfigError, match="unknown masking field 'span'"):
        pretrain_bert(config)


def test_pretrain_then_finetune_reports_both_runs_and_the_gain(tmp_path):
    rng = random.Random(5)
    texts, labels = [], []
    for i in range(160):
        verb = VERBS[i % 2]  # 喜欢 (likes) = positive, 觉得 (finds) = negative
        texts.append(f"{rng.choice(SUBJECTS)}{verb}{rng.choice(OBJECTS)}。")
        labels.append(1 - i % 2)
    write_csv(tmp_path / "reviews.csv", "review", texts, labels)
    config = {
        "pretrain": pretrain_config(tmp_path, "ignored", max_steps=10),
        "finetune": {"data": {"path": str(tmp_path / "reviews.csv"), "text_column": "review",
                              "max_length": 32},
                     "training": {"max_steps": 10, "use_cpu": True, "disable_tqdm": True,
                                  "learning_rate": 1e-3}},
        "expected": {"metric": "accuracy_gain", "at_least": -1.0},
    }
    config["train_sizes"] = [40, None]
    config["training"] = {"output_dir": str(tmp_path / "out")}
    lines: list[str] = []
    result = pretrain_then_finetune(config, log=lines.append)
    metrics = result["metrics"]
    for suffix in ("", "_40"):
        assert metrics[f"accuracy_gain{suffix}"] == pytest.approx(
            metrics[f"pretrained_test_accuracy{suffix}"] - metrics[f"random_test_accuracy{suffix}"])
    assert result["expected"]["met"] is True
    assert result["finetuning"]["random_40"]["examples"]["train"] == 40
    assert result["finetuning"]["random"]["examples"]["train"] == 128
    for folder in ("pretrain", "finetune-pretrained", "finetune-random", "finetune-random-40"):
        assert (tmp_path / "out" / folder / "result.json").is_file()
    pretrained = wxb.from_pretrained(tmp_path / "out" / "finetune-pretrained" / "model")
    random_init = wxb.from_pretrained(tmp_path / "out" / "finetune-random" / "model")
    assert pretrained.config.vocab_size == random_init.config.vocab_size
    # Run again: the finished pretraining is reused, unless its config changed.
    lines.clear()
    config["train_sizes"] = [40]
    config.pop("expected")
    again = pretrain_then_finetune(config, log=lines.append)
    assert any("reusing the finished run" in line for line in lines)
    assert again["metrics"]["mlm_accuracy"] == metrics["mlm_accuracy"]
    lines.clear()
    config["pretrain"]["training"]["max_steps"] = 11
    pretrain_then_finetune(config, log=lines.append)
    assert "== pretraining" in lines
    config["finetune"]["model"] = {"pretrained": "x"}
    with pytest.raises(ConfigError, match="leave model out"):
        pretrain_then_finetune({**config, "training": {"output_dir": str(tmp_path / "again")}})
