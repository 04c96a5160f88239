"""Pretraining from a text file: token files, windows, the split, and tiny end-to-end runs of
GPT-2 and LLaMA whose output folder loads and generates."""

import json

import numpy as np
import pytest
import torch

import wxb
from wxb.data import (
    TokenWindows,
    encode_to_file,
    read_tokens,
    split_tokens,
    token_dtype,
    write_tokens,
)
from wxb.errors import ConfigError, DataError
from wxb.generation import generate
from wxb.tasks.causal_lm.train import pretrain
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.chat import CHATML

LINES = ["the cat sat on the mat.", "a dog ran to the log.", "the sun is up; the day is on.",
         "to be or not to be."]


@pytest.fixture(autouse=True)
def quiet_progress(monkeypatch):
    monkeypatch.setenv("CI", "true")


@pytest.fixture
def corpus(tmp_path):
    """About 6,000 characters of a few repeated sentences: easy to learn in a few dozen steps."""
    rng = np.random.default_rng(0)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(LINES[i] for i in rng.integers(0, len(LINES), 250)) + "\n",
                    encoding="utf-8")
    return path


def tiny_config(corpus, output_dir, model_type="gpt2", **training):
    model = ({"type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32} if model_type == "gpt2"
             else {"type": "llama", "num_hidden_layers": 2, "num_attention_heads": 2,
                   "num_key_value_heads": 1, "hidden_size": 32, "intermediate_size": 64})
    return {
        "data": {"path": str(corpus), "block_size": 32, "stride": 4},
        "model": model,
        "training": {"output_dir": str(output_dir), "max_steps": 40, "eval_steps": 20,
                     "logging_steps": 5, "per_device_train_batch_size": 16,
                     "learning_rate": 1e-2, "warmup_steps": 2, **training},
        "samples": {"prompts": ["the "], "max_new_tokens": 12},
    }


# ----------------------------------------------------------------------------- token files


def test_token_file_round_trip(tmp_path, corpus):
    text = corpus.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    path = encode_to_file([text], tok, tmp_path / "tokens.bin")
    tokens = read_tokens(path)
    assert isinstance(tokens, np.memmap)
    assert tokens.dtype == np.uint16
    assert tokens.tolist() == tok.encode(text, add_special_tokens=False)
    sidecar = json.loads((tmp_path / "tokens.json").read_text())
    assert sidecar == {"dtype": "uint16", "count": len(text), "vocab_size": tok.vocab_size,
                       "tokenizer": {"kind": "char", "vocab_size": tok.vocab_size}}


def test_documents_are_separated_by_eos_when_the_tokenizer_has_one(tmp_path):
    tok = CharTokenizer.train("ab", special_tokens={"unk": "[UNK]", "eos": "[EOS]"})
    tokens = read_tokens(encode_to_file(["ab", "ba"], tok, tmp_path / "t.bin"))
    eos, a, b = tok.eos_token_id, tok.token_to_id("a"), tok.token_to_id("b")
    assert tokens.tolist() == [a, b, eos, b, a]


def test_dtype_follows_the_vocabulary_size(tmp_path):
    assert token_dtype(65_536) == np.uint16
    assert token_dtype(65_537) == np.uint32
    ids = [0, 70_000, 65_536]
    tokens = read_tokens(write_tokens(ids, tmp_path / "big.bin", vocab_size=100_000))
    assert tokens.dtype == np.uint32
    assert tokens.tolist() == ids


def test_bad_token_files_are_refused(tmp_path):
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        write_tokens([3, 10], tmp_path / "t.bin", vocab_size=10)
    path = write_tokens(list(range(10)), tmp_path / "t.bin", vocab_size=10)
    path.write_bytes(path.read_bytes()[:-2])  # a crash mid-write of an older writer
    with pytest.raises(DataError, match="incomplete"):
        read_tokens(path)
    with pytest.raises(DataError, match="missing"):
        read_tokens(tmp_path / "none.bin")


# ----------------------------------------------------------------------------- windows, split


def test_windows_are_deterministic_and_labels_equal_inputs():
    tokens = np.arange(100, dtype=np.uint16)
    windows = TokenWindows(tokens, block_size=10, stride=3)
    assert len(windows) == (100 - 10) // 3 + 1
    for i in (0, 7, len(windows) - 1):
        item = windows[i]
        assert item["input_ids"].dtype == torch.int64
        assert item["input_ids"].tolist() == list(range(3 * i, 3 * i + 10))
        assert torch.equal(item["labels"], item["input_ids"])  # the model shifts them
    assert windows[5]["input_ids"].tolist() == windows[5]["input_ids"].tolist()
    with pytest.raises(IndexError):
        windows[len(windows)]
    tiles = TokenWindows(tokens, block_size=10)  # default stride: no overlap
    assert len(tiles) == 10
    assert tiles[9]["input_ids"].tolist() == list(range(90, 100))


def test_validation_split_is_the_tail_and_does_not_overlap():
    tokens = np.arange(1000)
    train, val = split_tokens(tokens, 0.1)
    assert (len(train), len(val)) == (900, 100)
    assert train.max() < val.min()
    assert np.array_equal(np.concatenate([train, val]), tokens)
    with pytest.raises(DataError, match="validation_fraction"):
        split_tokens(tokens, 1.5)


def test_a_corpus_smaller_than_one_window_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"5 tokens.*block_size 8"):
        TokenWindows(np.arange(5), block_size=8)
    small = tmp_path / "small.txt"
    small.write_text("just a short line of text\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"training split has \d+ tokens.*block_size 32"):
        pretrain(tiny_config(small, tmp_path / "run"))


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_pretrain_learns_and_its_folder_loads_and_generates(tmp_path, corpus, model_type):
    run = tmp_path / "run"
    lines = []
    result = pretrain(tiny_config(corpus, run, model_type), log=lines.append)
    assert any("tokenizer: char" in line for line in lines)

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train_losses = [e["loss"] for e in log if "loss" in e]
    eval_losses = [e["eval_loss"] for e in log if "eval_loss" in e]
    assert train_losses[-1] < 0.5 * train_losses[0]
    assert eval_losses[-1] < eval_losses[0]
    assert result["metrics"]["eval_loss"] <= min(eval_losses) + 1e-6
    assert result["metrics"]["perplexity"] == pytest.approx(np.exp(result["metrics"]["eval_loss"]))
    assert result["steps"] == 40
    assert result["tokens_per_second"] > 0
    assert result["num_parameters"] > 0
    assert not result["stopped_by_time_budget"]
    assert (run / "loss_curve.png").is_file()
    assert json.loads((run / "result.json").read_text())["metrics"] == result["metrics"]
    assert {s["strategy"] for s in result["samples"]} == {"greedy", "top_k", "top_p"}
    assert result["config"]["model"]["vocab_size"] == result["tokens"]["vocab_size"]

    model, tok = wxb.from_pretrained(run / "model"), wxb.load_tokenizer(run / "model")
    assert type(model).__name__ == {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[
        model_type]
    prompt = tok.encode("the ", add_special_tokens=False)
    out = generate(model.eval(), torch.tensor([prompt]), max_new_tokens=20)
    text = tok.decode(out[0].tolist())
    assert text.startswith("the ") and len(text) == 24
    # The greedy sample in result.json is what the saved model generates.
    greedy = next(s for s in result["samples"] if s["strategy"] == "greedy")
    assert text.startswith("the " + greedy["continuation"][:12])


def test_pretrain_reads_table_rows_and_keeps_chat_markers_whole(tmp_path, corpus):
    table = tmp_path / "reviews.csv"
    table.write_text("id,review\n" + "".join(f"{i},{LINES[i % len(LINES)]}\n"
                                              for i in range(60)), encoding="utf-8")
    run = tmp_path / "run"
    config = tiny_config(corpus, run, max_steps=2, eval_steps=2)
    config["data"]["documents"] = [{"path": str(table), "column": "review"}]
    config["tokenizer"] = {"added_tokens": ["<|im_start|>", "<|im_end|>"],
                           "chat_template": "chatml"}
    result = pretrain(config)
    text_chars = len(corpus.read_text(encoding="utf-8"))
    rows = "".join(LINES[i % len(LINES)] + "\n" for i in range(60))
    assert sum(result["tokens"][k] for k in ("train", "validation")) == text_chars + len(rows)
    tok = wxb.load_tokenizer(run / "model")
    assert tok.chat_template == CHATML
    ids = tok.encode("<|im_start|>the<|im_end|>", add_special_tokens=False)
    assert len(ids) == 5 and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "the"
    config["data"]["documents"] = [{"path": str(table)}]
    with pytest.raises(ConfigError, match=r"data\.documents must be a list of tables"):
        pretrain(config)


def test_time_budget_stops_training(tmp_path, corpus):
    config = {**tiny_config(corpus, tmp_path / "run"), "max_time_seconds": 0}
    result = pretrain(config)
    assert result["stopped_by_time_budget"]
    assert result["steps"] == 1
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_resume_continues_with_the_saved_tokenizer(tmp_path, corpus):
    run = tmp_path / "run"
    pretrain(tiny_config(corpus, run, max_steps=10, eval_steps=5))
    result = pretrain(tiny_config(corpus, run, max_steps=20, eval_steps=5), resume=True)
    assert result["steps"] == 20
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 20


@pytest.mark.parametrize("change, message", [
    ({"model": {"type": "cnn"}}, "not a causal language model"),
    ({"data": {"block_size": 32}}, "data.path is required"),
    ({"tokenizer": {"kind": "wordpiece"}}, "tokenizer.kind"),
    ({"samples": {"max_new_tokens": 40}}, "exceeds the model's context of 32"),
    ({"samples": {"stop_token": "\n\n"}}, "stop_token"),
    ({"extra": 1}, "unknown config section 'extra'"),
])
def test_bad_configs_fail_before_training(tmp_path, corpus, change, message):
    config = {**tiny_config(corpus, tmp_path / "run"), **change}
    with pytest.raises(ConfigError, match=message):
        pretrain(config)
    assert not (tmp_path / "run" / "log.jsonl").exists()
