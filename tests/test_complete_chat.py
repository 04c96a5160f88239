"""Completion and chat pipelines, and `wxb generate` / `wxb chat`, over a model folder."""

from __future__ import annotations

import pytest
import torch
from entry import run_wxb, wxb_cli

from wxb.errors import ConfigError
from wxb.generation import generate
from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
from wxb.models.mlp import MLPConfig, MLPForClassification
from wxb.tasks.causal_lm.pipeline import Chat, complete, load_causal_lm, stream_completion
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.chat import CHATML

TEXT = "to be or not to be, that is the question. whether tis nobler in the mind to suffer"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm")
    tok = CharTokenizer.train([TEXT])
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tok.vocab_size, n_embd=32, n_head=2, n_layer=2,
                        n_positions=96, bos_token_id=None, eos_token_id=None)
    GPT2LMHeadModel(config).save_pretrained(path)
    tok.save(path)
    return path


def test_complete_equals_generate_and_stream(folder):
    model, tok = load_causal_lm(folder)
    text = complete(model, tok, "to be", max_new_tokens=15, do_sample=False)
    ids = torch.tensor([tok.encode("to be")])
    expected = generate(model, ids, max_new_tokens=15, do_sample=False)[0, ids.shape[1]:]
    assert text == tok.decode(expected.tolist())
    assert len(text) == 15
    streamed = "".join(stream_completion(model, tok, "to be", max_new_tokens=15,
                                         do_sample=False))
    assert streamed == text
    sampled = complete(model, tok, "to be", max_new_tokens=15, do_sample=True, seed=3)
    assert sampled == complete(model, tok, "to be", max_new_tokens=15, do_sample=True, seed=3)


def test_chat_keeps_history_and_resets(folder):
    model, tok = load_causal_lm(folder)
    chat = Chat(model, tok, system="be brief", max_new_tokens=5, do_sample=False)
    first = "".join(chat.reply("hello"))
    "".join(chat.reply("again"))
    assert [m["role"] for m in chat.messages] == ["system", "user", "assistant", "user",
                                                  "assistant"]
    assert chat.messages[2]["content"] == first.strip()
    chat.reset()
    assert chat.messages == [{"role": "system", "content": "be brief"}]


def test_chat_uses_the_tokenizers_template(folder):
    model, tok = load_causal_lm(folder)
    tok.chat_template = CHATML
    chat = Chat(model, tok, max_new_tokens=3, do_sample=False)
    prompt = tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                     add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<|im_start|>user\nhi")
    reply = "".join(chat.reply("hi"))
    assert reply == complete(model, tok, prompt, max_new_tokens=3, do_sample=False)


def test_cli_generate_and_chat(folder):
    done = wxb_cli("generate", "--model", str(folder), "--prompt", "to be", "--greedy",
                   "--max-new-tokens", "15")
    assert done.returncode == 0, done.stderr
    model, tok = load_causal_lm(folder)
    assert done.stdout == "to be" + complete(model, tok, "to be", max_new_tokens=15,
                                             do_sample=False) + "\n"
    talk = wxb_cli("chat", "--model", str(folder), "--max-new-tokens", "4", "--greedy",
                   stdin="hello\n/reset\nhello\n/exit\n")
    assert talk.returncode == 0, talk.stderr
    assert talk.stdout.count("model> ") == 2 and "(conversation forgotten)" in talk.stdout
    replies = [line.split("model> ")[1] for line in talk.stdout.splitlines()
               if "model> " in line]
    assert replies[0] == replies[1]  # after /reset the same question gets the same answer


def test_bad_input(folder, tmp_path, capsys):
    MLPForClassification(MLPConfig()).save_pretrained(tmp_path / "mlp")
    with pytest.raises(ConfigError, match="holds a MLPForClassification, not a causal"):
        load_causal_lm(tmp_path / "mlp")
    done = wxb_cli("generate", "--model", str(folder), "--prompt", "x", "--max-new-tokens", "500")
    results = [(done.returncode, done.stdout, done.stderr)]  # the real entry point once
    for args in (["--top-p", "1.5"], ["--max-new-tokens", "0"]):
        results.append(run_wxb(capsys, "generate", "--model", folder, "--prompt", "x", *args))
    for code, out, err in results:
        assert code == 2, out
        assert "Traceback" not in err
        assert err.startswith("wxb: error: ") and out == ""
        assert len(err.strip().splitlines()) == 1
