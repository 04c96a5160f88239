"""Translation end to end on a small made-up language: sentence pairs, the leak-free split,
training Seq2Seq and the Transformer, BLEU, heatmaps, the saved folder, `wxb translate`."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import sacrebleu
import torch

from wxb.cli import main
from wxb.data.pairs import Seq2SeqCollator, encode_pairs, sentence_pairs, split_by_source
from wxb.data.text import read_rows
from wxb.errors import ConfigError, DataError
from wxb.metrics import corpus_bleu
from wxb.tasks import pipeline
from wxb.tasks.translation.train import train_translation
from wxb.tokenizers.char import CharTokenizer
from wxb.train.arguments import TrainingArguments
from wxb.train.trainer import Trainer

# A toy language: each letter has a "translation" (its capital), written in reverse order.
LETTERS = "abcdefgh"


def _write_pairs(path, n: int = 600, *, extra_rows: list[dict] = ()) -> None:
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["src", "tgt"])
        writer.writeheader()
        for _ in range(n):
            word = "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 6)))
            writer.writerow({"src": word, "tgt": " ".join(word.upper()[::-1])})
        writer.writerows(extra_rows)


def _config(tmp_path, model: dict, **data) -> dict:
    return {
        "name": "toy",
        "model": {**model, "source_tokenizer": {"kind": "char"},
                  "target_tokenizer": {"kind": "word"}},
        "data": {"path": str(tmp_path / "pairs.csv"), "source_column": "src",
                 "target_column": "tgt", "test_size": 0.1, "validation_size": 0.05, **data},
        "generation": {"num_beams": 2, "max_new_tokens": 10},
        "training": {"output_dir": str(tmp_path / "run"), "num_train_epochs": 12,
                     "per_device_train_batch_size": 16, "learning_rate": 3e-3,
                     "logging_steps": 50, "eval_strategy": "no", "seed": 0,
                     "group_by_length": True},
        "expected": {"metric": "test_bleu", "at_least": 60},
    }


MODELS = {
    "seq2seq": {"type": "seq2seq", "cell": "gru", "attention": "bahdanau",
                "embedding_size": 32, "hidden_size": 64, "dropout": 0.0},
    "transformer": {"type": "transformer", "d_model": 64, "encoder_layers": 2,
                    "decoder_layers": 2, "encoder_attention_heads": 4,
                    "decoder_attention_heads": 4, "encoder_ffn_dim": 128,
                    "decoder_ffn_dim": 128, "dropout": 0.0, "label_smoothing": 0.1},
}


@pytest.mark.parametrize("kind", ["seq2seq", "transformer"])
def test_a_model_learns_the_toy_language_and_its_folder_translates(kind, tmp_path, capsys):
    _write_pairs(tmp_path / "pairs.csv", extra_rows=[{"src": " ", "tgt": "X"},
                                                     {"src": "ab", "tgt": ""}])
    lines: list[str] = []
    result = train_translation(_config(tmp_path, MODELS[kind]), log=lines.append)
    assert result["skipped_empty_pairs"] == 2
    assert any("2 rows with an empty side skipped" in line for line in lines)
    metrics = result["metrics"]
    assert metrics["test_bleu"] >= 60 and metrics["eval_bleu"] >= 60, metrics
    # Each source of the toy language has one translation: both scores agree.
    assert metrics["test_bleu_all_references"] == pytest.approx(metrics["test_bleu"])
    assert result["expected"]["met"] is True
    assert json.loads((tmp_path / "run" / "result.json").read_text())["metrics"] == metrics
    for path in result["attention_heatmaps"]:
        assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The saved folder translates as the run did.
    translator = pipeline("translate", result["model_dir"], num_beams=2, max_new_tokens=10)
    sample = result["samples"]["test"][0]
    assert translator(sample["source"]) == [{"translation_text": sample["translation"]}]
    assert translator("abc")[0]["translation_text"] == "C B A"
    # And so does the command line, with the heatmap.
    png = tmp_path / "att.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["translate", "--model", result["model_dir"], "--num-beams", "2", "abc", "hgf",
              "--attention", str(png)])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["C B A", "F G H"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_bleu_is_sacrebleus_with_chinese_tokenization():
    hyps, refs = ["我很好。", "他在這裡嗎？"], ["我很好。", "他在這裡。"]
    got = corpus_bleu(hyps, refs, language="zh")
    assert got["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs],
                                                              tokenize="zh").score)
    # 13a would see each sentence as one word: a different, meaningless score.
    assert got["bleu"] != pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    with pytest.raises(DataError, match="one reference"):
        corpus_bleu(["a"], ["a", "b"])
    # Several references, as many as each sentence has.
    hyps = ["the cat sat on the mat", "no way"]
    refs = [["a cat sat on the mat", "the cat sat on a mat"], ["out of the question"]]
    want = sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs], [refs[0][1], None]])
    assert corpus_bleu(hyps, refs)["bleu"] == pytest.approx(want.score)
    assert corpus_bleu(hyps, refs)["bleu"] > corpus_bleu(hyps, [r[0] for r in refs])["bleu"]


def test_pairs_are_read_checked_and_split_without_leaks(tmp_path):
    path = tmp_path / "pairs.csv"
    _write_pairs(path, n=300, extra_rows=[{"src": "ab", "tgt": "   "}])
    rows = read_rows(path)
    with pytest.raises(DataError, match=r"no column 'chinese'.*src, tgt"):
        sentence_pairs(rows, path, "chinese", "tgt")
    pairs = sentence_pairs(rows, path, "src", "tgt")
    assert pairs.skipped_empty == 1 and len(pairs.pairs) == 300
    splits = split_by_source(pairs.pairs, test_size=0.1, validation_size=0.1, seed=0)
    sources = {name: {s for s, _ in part} for name, part in splits.items()}
    assert not sources["test"] & sources["train"] and not sources["validation"] & sources["train"]
    assert sum(len(p) for p in splits.values()) == 300
    distinct = len({s for s, _ in pairs.pairs})
    assert len(sources["test"]) == round(0.1 * distinct)
    assert split_by_source(pairs.pairs, test_size=0.1, validation_size=0.1, seed=0) == splits


def test_long_pairs_are_cut_and_counted_and_batches_padded():
    source = CharTokenizer.train(["abcdef"])
    target = CharTokenizer.train(["ABCDEF"], special_tokens={"pad": "[PAD]", "unk": "[UNK]",
                                                             "eos": "[EOS]"})
    encoded = encode_pairs([("abcdef", "ABC"), ("ab", "ABCDEF")], source, target,
                           max_source_length=4, max_target_length=4)
    assert encoded.truncated == {"source": 1, "target": 1}
    assert encoded.input_ids[0] == source.encode("abcd")
    assert encoded.labels[1] == [*target.encode("ABC"), target.eos_token_id]
    batch = Seq2SeqCollator(source.pad_token_id)([encoded[0], encoded[1]])
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist()[0] == [*target.encode("ABC"), target.eos_token_id]
    assert batch["input_ids"][1, 2:].tolist() == [source.pad_token_id] * 2


def test_translation_config_errors_name_the_field(tmp_path):
    _write_pairs(tmp_path / "pairs.csv", n=50)
    config = _config(tmp_path, MODELS["seq2seq"])
    config["model"]["target_tokenizer"] = {"kind": "wordpiece"}
    with pytest.raises(ConfigError, match=r"model\.target_tokenizer .*char, word, bpe"):
        train_translation(config)
    config = _config(tmp_path, {**MODELS["transformer"],
                                "share_encoder_decoder_embeddings": True})
    with pytest.raises(ConfigError, match="one vocabulary"):
        train_translation(config)
    config = _config(tmp_path, MODELS["transformer"])
    config["teacher_forcing"] = {"schedule": "linear"}
    with pytest.raises(ConfigError, match="teacher_forcing applies to the recurrent"):
        train_translation(config)
    config = _config(tmp_path, MODELS["seq2seq"], target_column="english")
    with pytest.raises(DataError, match="no column 'english'"):
        train_translation(config)


def test_group_by_length_batches_similar_lengths_and_covers_every_example():
    class Lengths(torch.utils.data.Dataset):
        def __len__(self):
            return 1000

        def __getitem__(self, i):
            return {"input_ids": [0] * (1 + (i * 7919) % 97)}

    args = TrainingArguments(output_dir="unused", per_device_train_batch_size=10,
                             group_by_length=True)
    trainer = Trainer(torch.nn.Linear(1, 1), args, train_dataset=Lengths())
    batches = trainer._epoch_batches(0)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    lengths = trainer._lengths
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)
    assert spread / len(batches) < 5  # random batches of 10 would spread over ~80
    assert batches != trainer._epoch_batches(1)  # still shuffled each epoch
