"""The readable byte-level BPE: same merges as the tokenizers library's BpeTrainer, same ids and
offsets as tokenizers and transformers on the tokenizer.json it writes, and lossless round trips."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import Regex, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as Backend
from transformers import PreTrainedTokenizerFast

from wxb.errors import ConfigError, DataError
from wxb.tokenizers.bpe import (
    BPETokenizer,
    bytes_to_unicode,
    get_stats,
    merge_vocab,
    replace_surrogates,
)
from wxb.tokenizers.corpus import read_corpus

DATA = Path(os.environ.get("WXB_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
EOT = "<|endoftext|>"


# ---------------------------------------------------------------- corpora (real, else generated)


def english() -> tuple[list[str], list[str]]:
    """(training lines, held-out lines): tinyshakespeare, else Python's own help text."""
    path = DATA / "tinyshakespeare" / "input.txt"
    if path.is_file():
        text = read_corpus(path)
    else:
        from pydoc_data.topics import topics

        text = "\n".join(topics.values())
    lines = text[:360_000].splitlines(keepends=True)
    cut = len(lines) * 5 // 6
    return lines[:cut], lines[cut:]


def chinese_english() -> tuple[list[str], list[str]]:
    """(training lines, held-out lines): Tatoeba English and Chinese sentences, else generated."""
    path = DATA / "translation" / "eng-cmn.tsv"
    if path.is_file():
        pairs = [line.split("\t")[:2] for line in read_corpus(path).splitlines()[::4]]
        lines = [side for pair in pairs for side in pair]
    else:
        rng = random.Random(1)
        hanzi = "我你他她们是的了在有不这个人中大上来到说国和地也子时道出要就会年可下"
        words = ["I", "you", "think", "it's", "Tom", "2024", "the", "book", "?", "!"]
        lines = []
        for _ in range(12_000):
            lines.append("".join(rng.choice(hanzi) for _ in range(rng.randint(3, 20))) + "。")
            lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(2, 9))) + ".")
    cut = len(lines) * 5 // 6
    return lines[:cut], lines[cut:]


CORPORA = {"english": english, "chinese_english": chinese_english}


def random_strings(n: int, seed: int = 0) -> list[str]:
    """Strings from mixed Unicode ranges: ASCII, controls, odd whitespace, accents and combining
    marks, Greek/Cyrillic, CJK, Hangul, emoji with ZWJ, other digits, private use, surrogates."""
    ranges = [(0x20, 0x7E)] * 4 + [
        (0x00, 0x1F), (0x7F, 0x9F), (0xA0, 0xFF), (0x300, 0x36F), (0x370, 0x4FF),
        (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0x1F300, 0x1FAFF), (0x2000, 0x206F),
        (0x3000, 0x303F), (0x660, 0x669), (0xE000, 0xE0FF), (0xD800, 0xDFFF),
        (0xFFF0, 0xFFFF), (0x10000, 0x10FFFF)]
    odd = ["\t", "\n", "\r\n", "\x0b", "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "\u200d",
           "\ufe0f", "  ", EOT, "'s", "'ll"]
    rng = random.Random(seed)
    strings = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(0, 40)):
            if rng.random() < 0.2:
                parts.append(rng.choice(odd))
            else:
                low, high = rng.choice(ranges)
                parts.append(chr(rng.randint(low, high)))
        strings.append("".join(parts))
    return strings


# ---------------------------------------------------------------- the tokenizers library side


def library_trained(lines: list[str], vocab_size: int, specials: list[str], *,
                    min_frequency: int = 2, llama_style: bool = False,
                    add_prefix_space: bool = False) -> Backend:
    """A byte-level BPE trained by the tokenizers library (GPT-2 or Llama-3 layout)."""
    backend = Backend(models.BPE(ignore_merges=llama_style))
    if llama_style:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(lines, trainer)
    return backend


def merges_of(backend: Backend) -> list[tuple[str, str]]:
    merges = json.loads(backend.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def assert_same_encodings(ours: BPETokenizer, path: Path, lines: list[str]) -> None:
    """Every line: our ids == tokenizers' == transformers', and our offsets == tokenizers'."""
    backend = Backend.from_file(str(path))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(path))
    mine = ours(lines, return_offsets_mapping=True)
    theirs = fast(lines, return_offsets_mapping=True)
    for i, encoding in enumerate(backend.encode_batch(lines)):
        assert mine["input_ids"][i] == encoding.ids == theirs["input_ids"][i], lines[i]
        assert mine["offset_mapping"][i] == encoding.offsets, lines[i]
        assert [tuple(o) for o in theirs["offset_mapping"][i]] == encoding.offsets, lines[i]


# ---------------------------------------------------------------- the algorithm


def test_byte_alphabet_is_gpt2s():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"
    assert all(c.isprintable() and not c.isspace() for c in table.values())


def test_get_stats_and_merge_vocab_on_the_course_example():
    # Sennrich et al. (2016): {"l o w": 5, "l o w e r": 2, "n e w e s t": 6, "w i d e s t": 3}
    symbols = {c: i for i, c in enumerate("lowernstid")}
    words = [[symbols[c] for c in w] for w in ("low", "lower", "newest", "widest")]
    freqs = [5, 2, 6, 3]
    stats, where = get_stats(words, freqs)
    e, s, t = symbols["e"], symbols["s"], symbols["t"]
    assert stats[e, s] == stats[s, t] == 9 and where[e, s] == {2, 3}
    merge_vocab((e, s), 10, words, freqs, stats, where)  # "es"
    assert words[2] == [symbols["n"], e, symbols["w"], 10, t]
    assert stats[10, t] == 9 and (e, s) not in stats and stats[symbols["w"], e] == 8 - 6


@pytest.mark.parametrize("seed", range(3))
def test_incremental_counts_equal_a_recount(seed):
    """After every merge the kept counts are what get_stats would count from scratch, including
    overlapping pairs ("a a a", "a b a b") and words that hold a pair several times."""
    rng = random.Random(seed)
    words = [[rng.choice([0, 0, 1, 2]) for _ in range(rng.randint(1, 12))] for _ in range(300)]
    freqs = [rng.randint(1, 5) for _ in words]
    stats, where = get_stats(words, freqs)
    for new in range(3, 40):
        if not +stats:
            break
        pair = max(+stats, key=lambda p: (stats[p], p))
        merge_vocab(pair, new, words, freqs, stats, where)
        recount, holders = get_stats(words, freqs)
        assert +stats == recount
        assert all(holders[p] <= where[p] for p in holders)


@pytest.mark.parametrize("corpus", CORPORA)
def test_merges_equal_the_tokenizers_bpe_trainer(corpus):
    train, _ = CORPORA[corpus]()
    specials = {"eos": EOT, "pad": "<pad>"}
    ours = BPETokenizer.train(train, 1500, special_tokens=specials)
    theirs = library_trained(train, 1500, [EOT, "<pad>"])
    assert ours.merges == merges_of(theirs)
    assert ours.get_vocab() == theirs.get_vocab()
    assert ours.token_to_id(EOT) == 0 and ours.token_to_id("<pad>") == 1


def test_min_frequency_stops_training_as_the_library_does():
    lines = ["aaab abab", "ccd", "xyz xyz"] * 3 + ["qr"]
    for min_frequency in (0, 4, 10):
        ours = BPETokenizer.train(lines, 300, min_frequency=min_frequency)
        assert ours.merges == merges_of(library_trained(lines, 300, [EOT],
                                                        min_frequency=min_frequency))
    assert BPETokenizer.train(lines, 300, min_frequency=10).merges == []


# ---------------------------------------------------------------- parity of encodings


@pytest.mark.parametrize("corpus", CORPORA)
def test_encodings_equal_tokenizers_and_transformers(corpus, tmp_path):
    train, held_out = CORPORA[corpus]()
    template = ({"single": [EOT, "$A"], "pair": [EOT, "$A", f"{EOT}:1", "$B:1"]}
                if corpus == "chinese_english" else None)
    ours = BPETokenizer.train(train, 2000, template=template)
    ours.save(tmp_path)
    assert json.loads((tmp_path / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    lines = [*held_out, f"Hello{EOT}world", f"{EOT}{EOT} x {EOT}", "", " ", "  two  spaces  "]
    assert_same_encodings(ours, tmp_path / "tokenizer.json", lines)


def test_add_prefix_space_as_the_library_does(tmp_path):
    train, held_out = english()
    ours = BPETokenizer.train(train[:3000], 800, add_prefix_space=True)
    theirs = library_trained(train[:3000], 800, [EOT], add_prefix_space=True)
    assert ours.merges == merges_of(theirs)
    ours.save(tmp_path)
    assert ours.encode("Hello") == ours.encode(" Hello")
    assert_same_encodings(ours, tmp_path / "tokenizer.json",
                          [*held_out[:500], f"{EOT}Hi", f"a{EOT}b", "\nx"])


@pytest.mark.parametrize("llama_style", [False, True])
def test_reads_files_the_tokenizers_library_trained(llama_style, tmp_path):
    train, held_out = chinese_english()
    specials = [EOT, "<|start_header_id|>", "<|end_header_id|>"]
    backend = library_trained(train[:6000], 1200, specials, llama_style=llama_style)
    if llama_style:  # Llama-3's layout: ByteLevel offsets, then a bos template
        bos = (EOT, backend.token_to_id(EOT))
        backend.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{EOT} $A", pair=f"{EOT} $A {EOT} $B:1",
                                          special_tokens=[bos])])
    else:  # the library's default post-processor: trims offsets but spares a first space
        backend.post_processor = processors.ByteLevel()
    backend.save(str(tmp_path / "tokenizer.json"))
    ours = BPETokenizer.load(tmp_path)  # no tokenizer_config.json: read as a Hugging Face folder
    assert ours.ignore_merges == llama_style and ours.trim_offsets != llama_style
    lines = [*held_out[:1500], *random_strings(100, seed=7), "x  \n\n  y", " ab  ", "  c",
             f"{EOT} d", f" {EOT}  e "]
    assert_same_encodings(ours, tmp_path / "tokenizer.json", [replace_surrogates(s)
                                                              for s in lines])


def test_random_unicode_round_trips_and_matches_the_library(tmp_path):
    train, _ = english()
    ours = BPETokenizer.train(train, 600)
    ours.save(tmp_path)
    backend = Backend.from_file(str(tmp_path / "tokenizer.json"))
    strings = random_strings(400)
    assert any(replace_surrogates(s) != s for s in strings)  # lone surrogates were drawn
    for s in strings:
        ids = ours.encode(s)
        assert ours.decode(ids) == replace_surrogates(s), s
        encoding = backend.encode(replace_surrogates(s))
        assert ids == encoding.ids, s
        assert ours(s, return_offsets_mapping=True)["offset_mapping"] == encoding.offsets
    assert ours.decode(ours.encode("a\ud83d\ude00b")) == "a\ufffd\ufffdb"
    rng = random.Random(0)  # id sequences that cut characters apart decode as the library does
    for _ in range(300):
        ids = [rng.randrange(ours.vocab_size) for _ in range(rng.randint(1, 8))]
        assert ours.decode(ids) == backend.decode(ids, skip_special_tokens=False)


# ---------------------------------------------------------------- special tokens, files


def test_special_tokens_stay_whole_and_can_be_skipped():
    train, _ = english()
    ours = BPETokenizer.train(train[:2000], 500, special_tokens={"eos": EOT},
                              added_tokens=["<|im_start|>", "<|im_end|>"])
    text = f"<|im_start|>user hi<|im_end|>{EOT}<|endoftext"
    ids = ours.encode(text)
    assert ids[0] == ours.token_to_id("<|im_start|>") and ours.eos_token_id in ids
    assert ids.count(ours.eos_token_id) == 1  # the cut-off copy at the end is plain text
    assert ours.decode(ids) == text
    assert ours.decode(ids, skip_special_tokens=True) == "user hi<|endoftext"
    assert ours.decode([ours.vocab_size + 5, *ours.encode("ok")]) == "ok"


def test_save_and_load_keep_everything(tmp_path):
    train, held_out = english()
    ours = BPETokenizer.train(train[:3000], 700, added_tokens=["<|im_start|>"],
                              template={"single": ["$A", EOT], "pair": ["$A", EOT, "$B:1"]},
                              model_max_length=128, padding_side="left")
    again = BPETokenizer.load(ours.save(tmp_path))
    assert again.merges == ours.merges and again.get_vocab() == ours.get_vocab()
    assert (again.special_tokens, again.template, again.model_max_length, again.padding_side) == (
        ours.special_tokens, ours.template, 128, "left")
    assert again.added_tokens == ours.added_tokens
    assert again(held_out[:200])["input_ids"] == ours(held_out[:200])["input_ids"]
    reference = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert [reference.encode(t) for t in held_out[:200]] == ours(held_out[:200])["input_ids"]


def test_reads_gpt2_vocab_json_and_merges_txt(tmp_path):
    train, held_out = english()
    ours = BPETokenizer.train(train[:3000], 600)
    (tmp_path / "vocab.json").write_text(json.dumps(ours.get_vocab()), encoding="utf-8")
    (tmp_path / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in ours.merges), encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "eos_token": EOT, "add_prefix_space": False,
         "model_max_length": 1024}))
    again = BPETokenizer.load(tmp_path)
    assert again.eos_token == EOT and again.model_max_length == 1024
    assert again(held_out[:200])["input_ids"] == ours(held_out[:200])["input_ids"]


def test_llama3_pattern_saves_as_split_then_byte_level(tmp_path):
    train, held_out = chinese_english()
    ours = BPETokenizer.train(train[:4000], 900, pattern=LLAMA3_PATTERN, ignore_merges=True)
    assert ours.merges == merges_of(library_trained(train[:4000], 900, [EOT], llama_style=True))
    ours.save(tmp_path)
    pre = json.loads((tmp_path / "tokenizer.json").read_text())["pre_tokenizer"]
    assert [p["type"] for p in pre["pretokenizers"]] == ["Split", "ByteLevel"]
    assert_same_encodings(ours, tmp_path / "tokenizer.json", [*held_out[:1000], "12345 x"])


# ---------------------------------------------------------------- bad input


def test_bad_training_input():
    with pytest.raises(ConfigError, match="need at least 257"):
        BPETokenizer.train(["some text"], 256)
    with pytest.raises(ConfigError, match="need at least 258"):
        BPETokenizer.train(["some text"], 100, special_tokens={"eos": "</s>", "pad": "<pad>"})
    for empty in ([], [""], ""):
        with pytest.raises(DataError, match="corpus is empty"):
            BPETokenizer.train(empty, 300)
    with pytest.raises(DataError, match="training text 1 is a bytes"):
        BPETokenizer.train(["ok", b"bytes"], 300)
    with pytest.raises(ConfigError, match="add_prefix_space works with GPT-2's pattern only"):
        BPETokenizer.train(["x"], 300, pattern=LLAMA3_PATTERN, add_prefix_space=True)


def test_read_corpus_names_the_bad_byte(tmp_path):
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeffhello 世界\n".encode())
    assert read_corpus(good) == "hello 世界\n"
    bad = tmp_path / "gbk.txt"
    bad.write_bytes(b"abc" + "中文".encode("gbk"))
    with pytest.raises(DataError, match=r"gbk\.txt is not UTF-8: byte 0xd6 at byte offset 3"):
        read_corpus(bad)
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.txt is empty"):
        read_corpus(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_corpus(tmp_path / "missing.txt")


def test_corrupt_or_unsupported_tokenizer_json(tmp_path):
    ours = BPETokenizer.train(["hello hello world"], 270)
    spec = ours.to_json()
    path = tmp_path / "tokenizer.json"

    def load_with(change) -> None:
        data = json.loads(json.dumps(spec))
        change(data)
        path.write_text(json.dumps(data), encoding="utf-8")
        BPETokenizer.from_tokenizer_json(path)

    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match=r"tokenizer\.json is not valid JSON"):
        BPETokenizer.from_tokenizer_json(path)
    wordpiece = Backend(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    wordpiece.save(str(path))
    with pytest.raises(DataError, match="model type 'WordPiece' is not supported"):
        BPETokenizer.from_tokenizer_json(path)
    with pytest.raises(DataError, match=r"tokenizer\.json: merge 0 .* not in the vocabulary"):
        load_with(lambda d: d["model"]["merges"].insert(0, "Ġ ∂"))
    with pytest.raises(DataError, match="merge 'abc' is not two symbols"):
        load_with(lambda d: d["model"]["merges"].append("abc"))
    with pytest.raises(DataError, match="normalizer 'NFC' is not supported"):
        load_with(lambda d: d.update(normalizer={"type": "NFC"}))
    with pytest.raises(DataError, match=r"pre_tokenizer .*Whitespace.* is not supported"):
        load_with(lambda d: d.update(pre_tokenizer={"type": "Whitespace"}))
    with pytest.raises(DataError, match=r"is not a valid tokenizer\.json \(KeyError"):
        load_with(lambda d: d["model"].pop("vocab"))
    with pytest.raises(DataError, match=r"model\.vocab must map each token to an integer id"):
        load_with(lambda d: d["model"]["vocab"].update(x="1"))
    with pytest.raises(DataError, match=r"holds neither tokenizer\.json"):
        BPETokenizer.load(tmp_path / "nothing")
    assert Counter(t["content"] for t in spec["added_tokens"]) == {EOT: 1}
