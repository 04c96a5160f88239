"""Character and word tokenizers: vocabulary building, jieba segmentation, OpenCC normalization."""

from __future__ import annotations

import csv
import os
import random
from itertools import islice
from pathlib import Path

import jieba
import opencc
import pytest
import torch

from wxb.errors import ConfigError, DataError
from wxb.tokenizers.base import read_tokenizer_config
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.normalize import NORMALIZERS, Normalizer
from wxb.tokenizers.vocab import Vocab
from wxb.tokenizers.word import WordTokenizer

DATA = Path(os.environ.get("WXB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
# jieba's README example: with HMM on, the unknown word 杭研 is joined; with it off, it is not.
HMM_SENTENCE = "他来到了网易杭研大厦"


def generated_lines(alphabet: str, n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 40))) for _ in range(n)]


def english_lines(n: int = 300) -> list[str]:
    path = DATA / "tinyshakespeare" / "input.txt"
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in islice(f, n)]
    return generated_lines("abcdefghij ,.!?\n", n)


def tang_lines(n: int = 300) -> list[str]:
    """Traditional Chinese poems, one per line."""
    path = DATA / "tang_poetry" / "tang_poems.txt"
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n") for line in islice(f, n)]
    return generated_lines("秦川雄帝宅函谷壯皇居綺殿千尋起離宮百雉餘，。", n)


def review_lines(n: int = 300) -> list[str]:
    """Simplified Chinese reviews (with some Latin letters, digits and punctuation)."""
    path = DATA / "zh_sentiment" / "ChnSentiCorp_htl_all.csv"
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as f:
            return [row["review"] for row in islice(csv.DictReader(f), n) if row["review"]]
    return generated_lines("这个软件的鼠标很好用头发来到了网易大厦 ，。!2M", n)


# ---------------------------------------------------------------- Vocab


def test_vocab_orders_by_frequency_then_first_appearance():
    vocab = Vocab.build([["b", "a", "c"], ["a", "d", "b", "e"], ["a"]])
    # a:3, b:2, then c, d, e once each in the order they first appeared.
    assert list(vocab) == ["[PAD]", "[UNK]", "a", "b", "c", "d", "e"]
    assert (vocab.token_to_id("[PAD]"), vocab.token_to_id("[UNK]")) == (0, 1)
    assert vocab.token_to_id("zzz") is None and vocab.id_to_token(99) is None
    assert list(Vocab.build([["e", "d"], ["c"]])) == ["[PAD]", "[UNK]", "e", "d", "c"]


def test_vocab_min_freq_max_size_and_specials():
    lists = [["x", "y", "x", "z", "[UNK]"], ["y", "x"]]
    assert list(Vocab.build(lists, min_freq=2)) == ["[PAD]", "[UNK]", "x", "y"]
    assert list(Vocab.build(lists, max_size=3)) == ["[PAD]", "[UNK]", "x"]
    custom = Vocab.build(lists, specials=["<unk>", "<s>", "<unk>"])
    assert list(custom) == ["<unk>", "<s>", "x", "y", "z", "[UNK]"]


def test_vocab_file_round_trip_with_line_breaks_and_backslashes(tmp_path):
    tokens = ["[PAD]", "[UNK]", "\n", "\r\n", "\\", "\\n", "a\\b", " ", "\t", "\u2028", "中"]
    path = Vocab(tokens).save(tmp_path / "vocab.txt")
    assert path.read_bytes().decode("utf-8").count("\n") == len(tokens)
    assert list(Vocab.load(path)) == tokens


def test_vocab_reads_bert_style_files(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[PAD]\r\n[UNK]\r\n\\\r\n##a\r\n")
    assert list(Vocab.load(path)) == ["[PAD]", "[UNK]", "\\", "##a"]


def test_vocab_file_errors(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("[PAD]\na\n[PAD]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"twice \(ids 0 and 2\)"):
        Vocab.load(path)
    path.write_text("[PAD]\n\na\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2 is empty"):
        Vocab.load(path)
    with pytest.raises(DataError, match="does not exist"):
        Vocab.load(tmp_path / "missing.txt")


# ---------------------------------------------------------------- character tokenizer


@pytest.mark.parametrize("lines", [english_lines(), tang_lines(), review_lines()],
                         ids=["english", "tang", "reviews"])
def test_char_round_trip_and_offsets(lines):
    tok = CharTokenizer.train(lines)
    assert (tok.pad_token_id, tok.unk_token_id) == (0, 1)
    assert len(tok) == len(set("".join(lines))) + 2
    for line in lines:
        enc = tok(line, return_offsets_mapping=True)
        assert tok.decode(enc["input_ids"]) == line
        assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(line))]
        assert tok.tokenize(line) == list(line)


def test_char_unknown_characters_and_frequency_cut():
    tok = CharTokenizer.train(["aaab", "ab"], min_frequency=2)
    assert list(tok.vocab) == ["[PAD]", "[UNK]", "a", "b"]
    assert tok.encode("abz") == [2, 3, 1]
    assert tok.decode(tok.encode("abz")) == "ab[UNK]"
    assert CharTokenizer.train(["aaab", "ab"], min_frequency=3).encode("ab") == [2, 1]
    with pytest.raises(DataError, match="outside the vocabulary"):
        tok.decode([7])


def test_special_tokens_written_in_text_stay_whole():
    specials = {"pad": "[PAD]", "unk": "[UNK]", "bos": "<s>", "eos": "</s>"}
    tok = CharTokenizer.train(["hello"], special_tokens=specials)
    assert list(tok.vocab)[:4] == ["[PAD]", "[UNK]", "<s>", "</s>"]
    assert tok.tokenize("<s>he</s>") == ["<s>", "h", "e", "</s>"]
    assert tok("<s>he", return_offsets_mapping=True)["offset_mapping"] == [(0, 3), (3, 4), (4, 5)]


# ---------------------------------------------------------------- word tokenizer


def test_whitespace_words_lowercase_and_punctuation():
    lines = english_lines()
    tok = WordTokenizer.train(lines)
    for line in lines:
        assert tok.decode(tok.encode(line)) == " ".join(line.split())
    tok = WordTokenizer.train(["Hello, World!  Hello again."], lowercase=True,
                              split_punctuation=True)
    assert list(tok.vocab) == ["[PAD]", "[UNK]", "hello", ",", "world", "!", "again", "."]
    text = "HELLO world, İstanbul!"
    enc = tok(text, return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["hello", "world", ",", "[UNK]", "!"]
    # Lower-casing İ gives two characters; the offsets still point into the original text.
    assert [text[s:e] for s, e in enc["offset_mapping"]] == ["HELLO", "world", ",", "İstanbul",
                                                             "!"]


@pytest.mark.parametrize("hmm", [True, False])
def test_jieba_segmentation_and_offsets_match_jieba(hmm):
    lines = [*review_lines(), HMM_SENTENCE]
    tok = WordTokenizer.train(lines, segmenter="jieba", hmm=hmm)
    for line in lines:
        enc = tok(line, return_offsets_mapping=True)
        assert tok.tokenize(line) == jieba.lcut(line, HMM=hmm)
        assert enc["offset_mapping"] == [(s, e) for _, s, e in jieba.tokenize(line, HMM=hmm)]
        assert tok.decode(enc["input_ids"]) == line


def test_hmm_setting_changes_segmentation():
    tokens = {hmm: WordTokenizer.train([HMM_SENTENCE], segmenter="jieba", hmm=hmm)
              .tokenize(HMM_SENTENCE) for hmm in (True, False)}
    assert "杭研" in tokens[True] and "杭研" not in tokens[False]


def test_jieba_user_words_stay_private(tmp_path):
    text = "我在学习自然语言处理工具包"
    tok = WordTokenizer.train([text], segmenter="jieba", user_words=["语言处理工具包"])
    assert "语言处理工具包" in tok.tokenize(text)
    assert "语言处理工具包" not in jieba.lcut(text)
    loaded = WordTokenizer.load(tok.save(tmp_path / "tok"))
    assert loaded.tokenize(text) == tok.tokenize(text)


# ---------------------------------------------------------------- normalization


@pytest.mark.parametrize("name", sorted(NORMALIZERS))
def test_normalizers_equal_opencc_and_keep_length(name):
    lines = review_lines() + tang_lines()
    normalize, reference = Normalizer(name), opencc.OpenCC(name)
    for line in lines:
        assert normalize(line) == reference.convert(line)
        assert len(normalize(line)) == len(line)
    # OpenCC itself stops at a NUL; the normalizer converts around it (and lone surrogates).
    assert normalize("鼠标\x00头发\ud800") == (reference.convert("鼠标") + "\x00"
                                             + reference.convert("头发") + "\ud800")


def test_s2tw_tokenizers_read_converted_pieces_at_original_offsets():
    lines = review_lines()
    char = CharTokenizer.train(lines, normalizer="s2tw")
    word = WordTokenizer.train(lines, segmenter="jieba", normalizer="s2tw")
    s2tw = opencc.OpenCC("s2tw")
    for line in lines[:100]:
        converted = s2tw.convert(line)
        assert char.decode(char.encode(line)) == converted
        enc = word(line, return_offsets_mapping=True)
        assert word.decode(enc["input_ids"]) == converted
        # Words are cut on the Simplified text (jieba's dictionary is Simplified).
        assert [line[s:e] for s, e in enc["offset_mapping"]] == jieba.lcut(line)
        assert word.tokenize(line) == [converted[s:e] for s, e in enc["offset_mapping"]]


def test_t2s_segments_the_converted_simplified_text():
    lines = tang_lines(100)
    word = WordTokenizer.train(lines, segmenter="jieba", normalizer="t2s")
    t2s = opencc.OpenCC("t2s")
    for line in lines:
        simplified = t2s.convert(line)
        enc = word(line, return_offsets_mapping=True)
        assert word.tokenize(line) == jieba.lcut(simplified)
        assert enc["offset_mapping"] == [(s, e) for _, s, e in jieba.tokenize(simplified)]


# ---------------------------------------------------------------- batches and files


def test_batch_padding_truncation_mask_and_tensors():
    tok = CharTokenizer.train(["abcdef"])
    batch = tok(["abc", "abcdef", "a"], padding=True, truncation=True, max_length=4,
                return_tensors="pt")
    a, b, c, d, pad = (tok.token_to_id(t) for t in ("a", "b", "c", "d", "[PAD]"))
    assert torch.equal(batch["input_ids"], torch.tensor([[a, b, c, pad], [a, b, c, d],
                                                         [a, pad, pad, pad]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1],
                                                              [1, 0, 0, 0]]))
    left = tok(["ab", "a"], padding=True, padding_side="left")
    assert left["input_ids"] == [[a, b], [pad, a]] and left["attention_mask"] == [[1, 1], [0, 1]]


def test_templates_wrap_sequences_in_special_tokens():
    specials = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]"}
    template = {"single": ["[CLS]", "$A", "[SEP]"], "pair": ["[CLS]", "$A", "[SEP]", "$B:1",
                                                             "[SEP]:1"]}
    tok = WordTokenizer.train(["a b c"], special_tokens=specials, template=template)
    enc = tok("a b", "c", return_token_type_ids=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["[CLS]", "a", "b", "[SEP]", "c",
                                                           "[SEP]"]
    assert enc["token_type_ids"] == [0, 0, 0, 0, 1, 1]
    assert tok.decode(enc["input_ids"], skip_special_tokens=True) == "a b c"


@pytest.mark.parametrize("make", [
    lambda lines: CharTokenizer.train(lines, normalizer="s2tw", padding_side="left"),
    lambda lines: WordTokenizer.train(lines, segmenter="jieba", hmm=False, lowercase=True,
                                      max_size=500),
    lambda lines: WordTokenizer.train(lines, split_punctuation=True, min_frequency=2),
], ids=["char-s2tw", "word-jieba", "word-whitespace"])
def test_save_load_round_trip(tmp_path, make):
    lines = review_lines() + english_lines(100) + ["line\nbreaks\r\n and \\n"]
    tok = make(lines)
    folder = tok.save(tmp_path / "tok")
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer_config.json", "vocab.txt"]
    assert read_tokenizer_config(folder)["wxb_tokenizer"] == tok.kind
    loaded = type(tok).load(folder)
    assert loaded.options() == tok.options() and loaded.get_vocab() == tok.get_vocab()
    batch = lines[:50]
    assert loaded(batch, padding=True) == tok(batch, padding=True)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("texts", [[], [""], "", ["   ", "\n"]])
def test_empty_corpus(texts):
    with pytest.raises(DataError, match="corpus is empty"):
        WordTokenizer.train(texts)
    if texts != ["   ", "\n"]:
        with pytest.raises(DataError, match="corpus is empty"):
            CharTokenizer.train(texts)


def test_texts_must_be_strings():
    with pytest.raises(DataError, match="train takes texts as str, got bytes"):
        CharTokenizer.train([b"abc"])


def test_max_size_must_hold_the_special_tokens():
    with pytest.raises(ConfigError, match="must be at least 2"):
        CharTokenizer.train(["abc"], max_size=1)
    specials = {"pad": "<pad>", "unk": "<unk>", "bos": "<s>"}
    with pytest.raises(ConfigError, match="must be at least 3"):
        WordTokenizer.train(["a b"], max_size=2, special_tokens=specials)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'whitespace'.*'jieba'"):
        WordTokenizer.train(["a"], segmenter="spacy")
    with pytest.raises(ConfigError, match=r"'s2t'.*'s2tw'.*'t2s'.*'tw2s'"):
        CharTokenizer.train(["a"], normalizer="s2twp")
    with pytest.raises(ConfigError, match="needs an unk token"):
        CharTokenizer.train(["a"], special_tokens={"pad": "[PAD]"})
    with pytest.raises(ConfigError, match="only apply to segmenter='jieba'"):
        WordTokenizer.train(["a"], user_words=["ab"])
