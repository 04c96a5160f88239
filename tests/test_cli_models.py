"""`wxb convert` and `wxb params` on real Hugging Face folders."""

from __future__ import annotations

import pytest
import torch
import transformers
from entry import wxb_cli
from safetensors.torch import load_file

import wxb
from wxb.models.params import parameter_breakdown


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("llama")
    config = transformers.LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                                      intermediate_size=64, num_hidden_layers=2, vocab_size=50,
                                      tie_word_embeddings=False)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    (folder / "tokenizer_config.json").write_text('{"bos_token": "<s>"}')
    return folder


def test_convert_casts_and_keeps_tokenizer_files(llama_folder, tmp_path):
    done = wxb_cli("convert", str(llama_folder), str(tmp_path / "out"), "--dtype", "bfloat16")
    assert done.returncode == 0, done.stderr
    tensors = load_file(tmp_path / "out" / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    assert (tmp_path / "out" / "tokenizer_config.json").read_text() == '{"bos_token": "<s>"}'
    reference = transformers.AutoModelForCausalLM.from_pretrained(llama_folder)
    converted = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    for name, p in reference.state_dict().items():
        assert torch.equal(converted.state_dict()[name].float(), p.bfloat16().float())


def test_params_breakdown(llama_folder):
    model = wxb.from_pretrained(llama_folder)
    rows = {r.component: r.parameters for r in parameter_breakdown(model)}
    # embeddings 50x32; attention per layer q,o 32x32 + k,v 32x16; SwiGLU 3 x 32x64;
    # norms 2 per layer + final, 32 each; untied head 32x50.
    assert rows == {"embeddings": 1600, "attention": 2 * (2 * 1024 + 2 * 512),
                    "feed-forward": 2 * 3 * 2048, "norm": 5 * 32, "head": 1600}
    assert sum(rows.values()) == model.num_parameters()
    done = wxb_cli("params", str(llama_folder))
    assert done.returncode == 0, done.stderr
    assert "LlamaForCausalLM" in done.stdout and "feed-forward" in done.stdout
    assert f"{model.num_parameters():,}" in done.stdout


def test_bad_input_one_line(tmp_path, llama_folder):
    for args in (["params", str(tmp_path / "missing")],
                 ["convert", str(llama_folder), str(tmp_path / "o"), "--dtype", "half"]):
        done = wxb_cli(*args)
        assert done.returncode == 2
        assert done.stderr.startswith("wxb: error: ") and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
