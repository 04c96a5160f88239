"""T5's tokenizer (SentencePiece Unigram + <extra_id_*> sentinels) equals transformers'.

Nothing is downloaded: a small SentencePiece Unigram model is trained here, with T5's ids
(<pad> 0, </s> 1, <unk> 2, no <s>), on generated English and Chinese, and laid out as the
original T5 folders are (spiece.model + tokenizer_config.json). The references are
transformers' T5Tokenizer and T5TokenizerFast, and SentencePiece itself run the way the
original (slow, sentencepiece-backed) T5Tokenizer ran it: each stretch of text between
special tokens encoded on its own, then </s>.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import sentencepiece as spm
import transformers

import wxb
from wxb.errors import ConfigError, DataError
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.hf import HFTokenizer
from wxb.tokenizers.sentencepiece import T5Tokenizer, sentinel_ids
from wxb.tokenizers.train import tokenizer_from_settings

EXTRA_IDS = 100
SPECIALS = ("<pad>", "</s>", "<unk>")
ENGLISH = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
           "translate", "English", "to", "German", "summarize", "this", "article", "about",
           "machine", "learning", "and", "natural", "language", "processing", "café", "naïve",
           "résumé", "Zoë", "déjà", "vu", "numbers", "12", "345", "6789", "2024", "3.14",
           "Hello", "World"]
CHINESE = "我爱北京天安门天安门上太阳升今天天气很好机器学习自然语言处理模型翻译中文"
TEXTS = [
    "translate English to German: The quick brown fox.",
    "  leading, trailing   and   repeated   spaces  ",
    "tabs\tand\nnewlines\r\nin one line\n\n",
    "naïve café résumé — Zoë, déjà vu!",
    "digits 0123456789, 3.14159 and full-width １２３４",
    "我爱北京天安门。今天天气很好",
    "mixed 中文 English 混合 text",
    "The <extra_id_3> jumps over <extra_id_0>.",
    "glued<extra_id_3>to words</s>and an eos",
    "unknown glyphs 😀😀 and ﬁ ligature ™ ½",
    "",
    " ",
    "Hello World " * 30,
]


def corpus(n: int = 1500) -> list[str]:
    """Generated lines of English words with Chinese runs mixed in."""
    rng = random.Random(0)
    lines = []
    for _ in range(n):
        words = [rng.choice(ENGLISH) for _ in range(rng.randint(3, 14))]
        if rng.random() < 0.4:
            chinese = "".join(rng.choice(CHINESE) for _ in range(rng.randint(2, 10)))
            words.insert(rng.randint(0, len(words)), chinese)
        lines.append(" ".join(words) + rng.choice(["", ".", "!", "?"]))
    return lines


@pytest.fixture(scope="module")
def spiece_folder(tmp_path_factory) -> Path:
    """A T5 folder as on the hub before tokenizer.json: spiece.model + tokenizer_config.json."""
    folder = tmp_path_factory.mktemp("t5")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_prefix=str(folder / "spiece"),
        vocab_size=400, model_type="unigram", character_coverage=1.0,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    (folder / "spiece.vocab").unlink()
    config = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
              "extra_ids": EXTRA_IDS, "model_max_length": 512,
              "additional_special_tokens": [f"<extra_id_{i}>" for i in range(EXTRA_IDS)]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def references(spiece_folder) -> dict:
    """transformers' two T5 classes (one class under two names since transformers 5)."""
    return {name: getattr(transformers, name).from_pretrained(str(spiece_folder))
            for name in ("T5Tokenizer", "T5TokenizerFast")}


def sentencepiece_ids(folder: Path, text: str) -> list[int]:
    """The original T5 tokenization: SentencePiece on each stretch between special tokens;
    sentinels numbered down from the end; </s> last."""
    sp = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
    ids = []
    for part in re.split(r"(<extra_id_\d+>|</s>|<pad>|<unk>)", text):
        if match := re.fullmatch(r"<extra_id_(\d+)>", part):
            ids.append(sp.get_piece_size() + EXTRA_IDS - 1 - int(match[1]))
        elif part in SPECIALS:
            ids.append(sp.piece_to_id(part))
        elif part:
            ids += sp.encode(part)
    return [*ids, sp.eos_id()]


class PythonPath(T5Tokenizer):
    """The same tokenizer through the base class's Python batch path instead of Rust's."""

    _encode_batch = Tokenizer._encode_batch


def rows(encoding) -> dict:
    """A BatchEncoding from either library as plain lists of ints and (start, end) tuples."""
    return {k: [[tuple(x) if isinstance(x, (list, tuple)) else x for x in row] for row in v]
            for k, v in encoding.items()}


def test_spiece_folder_loads_with_sentinels_counting_down(spiece_folder):
    tok = wxb.load_tokenizer(spiece_folder)
    assert type(tok) is T5Tokenizer
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.vocab_size == 400 + EXTRA_IDS and tok.model_max_length == 512
    assert tok.extra_ids == EXTRA_IDS
    assert tok.get_sentinel_tokens()[:2] == ["<extra_id_0>", "<extra_id_1>"]
    assert tok.get_sentinel_token_ids() == sentinel_ids(tok) == list(range(499, 399, -1))
    assert set(tok.get_sentinel_token_ids()) <= set(tok.all_special_ids)
    assert tok.encode("<extra_id_0><extra_id_99>", add_special_tokens=False) == [499, 400]


@pytest.mark.parametrize("python_path", [False, True])
def test_ids_and_offsets_equal_transformers_and_sentencepiece(spiece_folder, references,
                                                              python_path):
    tok = (PythonPath.from_sentencepiece(spiece_folder / "spiece.model", extra_ids=EXTRA_IDS)
           if python_path else wxb.load_tokenizer(spiece_folder))
    ours = tok(TEXTS, return_offsets_mapping=True)
    for ref in references.values():
        assert rows(ours) == rows(ref(TEXTS, return_offsets_mapping=True))
    for text, ids in zip(TEXTS, ours["input_ids"], strict=True):
        assert ids == sentencepiece_ids(spiece_folder, text), text
        assert tok.encode(text) == ids
    assert ours["input_ids"][TEXTS.index("")] == [1]  # an empty text is just </s>


@pytest.mark.parametrize("settings", [
    dict(padding=True),
    dict(padding="max_length", truncation=True, max_length=12),
    dict(truncation=True, max_length=7, padding=True, padding_side="left"),
    dict(truncation="only_second", max_length=16, padding=True),
    dict(truncation=True, padding=True, pad_to_multiple_of=8, return_special_tokens_mask=True),
])
@pytest.mark.parametrize("python_path", [False, True])
def test_pairs_padding_and_truncation_equal_transformers(spiece_folder, references, settings,
                                                         python_path):
    tok = (PythonPath.from_sentencepiece(spiece_folder / "spiece.model", extra_ids=EXTRA_IDS,
                                         model_max_length=512)
           if python_path else wxb.load_tokenizer(spiece_folder))
    firsts, seconds = TEXTS[::2][:6], TEXTS[1::2][:6]
    if settings.get("truncation") == "only_second":
        firsts = [f[:10] for f in firsts]  # only_second fails in both when A alone is too long
    ours = tok(firsts, seconds, return_offsets_mapping=True, **settings)
    assert all(row.count(1) >= 2 for row in ours["input_ids"])  # $A </s> $B </s>
    for ref in references.values():
        assert rows(ours) == rows(ref(firsts, seconds, return_offsets_mapping=True, **settings))
    if settings.get("max_length"):
        assert {len(r) for r in ours["input_ids"]} <= set(range(settings["max_length"] + 1))


def test_decode_equals_transformers_and_skips_sentinels(spiece_folder, references):
    tok = wxb.load_tokenizer(spiece_folder)
    for ids in tok(TEXTS)["input_ids"]:
        for ref in references.values():
            assert tok.decode(ids) == ref.decode(ids)
            assert tok.decode(ids, skip_special_tokens=True) == ref.decode(
                ids, skip_special_tokens=True)
    # Each stretch after a special token starts a new word (its own ▁), as in transformers.
    ids = tok.encode("the fox <extra_id_3> jumps over <extra_id_0>.")
    assert tok.decode(ids) == "the fox<extra_id_3> jumps over<extra_id_0> .</s>"
    assert tok.decode(ids, skip_special_tokens=True) == "the fox jumps over ."
    assert tok.batch_decode([ids], skip_special_tokens=True) == ["the fox jumps over ."]


def test_saved_folder_loads_in_transformers_as_t5(spiece_folder, references, tmp_path):
    tok = wxb.load_tokenizer(spiece_folder)
    tok.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "T5Tokenizer" and config["extra_ids"] == EXTRA_IDS
    theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(theirs) is transformers.T5Tokenizer
    # (transformers 5's own get_sentinel_token_ids reads an attribute it no longer has)
    assert theirs.convert_tokens_to_ids(tok.get_sentinel_tokens()) == tok.get_sentinel_token_ids()
    assert theirs.all_special_ids == references["T5Tokenizer"].all_special_ids
    again = wxb.load_tokenizer(tmp_path)
    assert type(again) is T5Tokenizer and again.extra_ids == EXTRA_IDS
    pairs = dict(text_pair=TEXTS[::-1], padding=True, truncation=True, max_length=20)
    expected = tok(TEXTS, **pairs)["input_ids"]
    assert theirs(TEXTS, **pairs)["input_ids"] == expected == again(TEXTS, **pairs)["input_ids"]
    for ids in expected:
        assert again.decode(ids, skip_special_tokens=True) == theirs.decode(
            ids, skip_special_tokens=True)


def test_tokenizer_json_saved_by_transformers_loads_in_wxb(references, tmp_path):
    ref = references["T5TokenizerFast"]
    ref.save_pretrained(str(tmp_path))
    tok = wxb.load_tokenizer(tmp_path)  # tokenizer.json + tokenizer_class: T5Tokenizer
    assert type(tok) is T5Tokenizer and tok.extra_ids == EXTRA_IDS
    plain = HFTokenizer.from_file(tmp_path / "tokenizer.json")  # the generic path
    settings = dict(padding=True, return_offsets_mapping=True)
    assert rows(tok(TEXTS, **settings)) == rows(ref(TEXTS, **settings))
    assert plain(TEXTS)["input_ids"] == ref(TEXTS)["input_ids"]
    assert sentinel_ids(plain) == tok.get_sentinel_token_ids() == list(range(499, 399, -1))
    ids = ref.encode("a <extra_id_7> b")
    assert tok.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
    assert plain.decode(ids, skip_special_tokens=True) == "a b"
    # Older hub folders name no tokenizer_class; their extra_ids still say T5.
    (tmp_path / "tokenizer_config.json").write_text('{"extra_ids": 100}')
    older = wxb.load_tokenizer(tmp_path)
    assert type(older) is T5Tokenizer and older(TEXTS)["input_ids"] == ref(TEXTS)["input_ids"]


def test_unigram_trained_from_texts_round_trips_through_transformers(tmp_path):
    tok = tokenizer_from_settings({"kind": "unigram", "vocab_size": 300, "extra_ids": 20},
                                  corpus(400))
    assert type(tok) is T5Tokenizer
    assert [tok.id_to_token(i) for i in range(3)] == list(SPECIALS)
    assert tok.vocab_size == 300 + 20 and tok.extra_ids == 20
    assert tok.get_sentinel_token_ids() == list(range(319, 299, -1))
    assert tok.encode("the fox <extra_id_19>")[-2:] == [300, 1]
    tok.save(tmp_path)
    again = wxb.load_tokenizer(tmp_path)
    fast = transformers.T5TokenizerFast.from_pretrained(str(tmp_path))
    auto = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    assert type(again) is T5Tokenizer and type(auto) is transformers.T5Tokenizer
    settings = dict(text_pair=TEXTS[::-1], padding=True, truncation=True, max_length=24,
                    return_offsets_mapping=True)
    expected = rows(tok(TEXTS, **settings))
    assert rows(again(TEXTS, **settings)) == expected
    assert rows(fast(TEXTS, **settings)) == expected == rows(auto(TEXTS, **settings))
    for ids in expected["input_ids"]:
        for skip in (False, True):
            assert again.decode(ids, skip) == fast.decode(ids, skip_special_tokens=skip)


def test_unigram_settings_rename_specials_and_refuse_unknown_keys():
    tok = tokenizer_from_settings({"kind": "unigram", "vocab_size": 200, "extra_ids": 0},
                                  corpus(200), special_tokens={"eos": "<eos>"})
    assert [tok.id_to_token(i) for i in range(3)] == ["<pad>", "<eos>", "<unk>"]
    assert tok.extra_ids == 0 and tok.encode("fox")[-1] == 1
    with pytest.raises(ConfigError, match="unknown setting 'min_frequency' for kind unigram"):
        tokenizer_from_settings({"kind": "unigram", "min_frequency": 2}, corpus(50))
    with pytest.raises(ConfigError, match="special tokens are pad, eos, unk; got 'bos'"):
        tokenizer_from_settings({"kind": "unigram"}, corpus(50), special_tokens={"bos": "<s>"})
    with pytest.raises(ConfigError, match=r"kind one of .*unigram"):
        tokenizer_from_settings({"kind": "sentencepiece"}, corpus(50))


def test_spiece_errors(spiece_folder, tmp_path):
    (tmp_path / "spiece.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match="is not a SentencePiece model"):
        wxb.load_tokenizer(tmp_path)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus(300)),
                                   model_prefix=str(tmp_path / "spiece"), vocab_size=200,
                                   model_type="bpe", minloglevel=2)
    with pytest.raises(DataError, match="is a SentencePiece BPE model; wxb reads Unigram"):
        wxb.load_tokenizer(tmp_path)
    other = tmp_path / "albert"
    other.mkdir()
    (other / "spiece.model").write_bytes((spiece_folder / "spiece.model").read_bytes())
    (other / "tokenizer_config.json").write_text('{"tokenizer_class": "AlbertTokenizer"}')
    with pytest.raises(DataError, match=r"spiece\.model for a AlbertTokenizer"):
        wxb.load_tokenizer(other)
    (other / "tokenizer_config.json").write_text('{"extra_ids": -1}')
    with pytest.raises(DataError, match="extra_ids must be a whole number >= 0"):
        wxb.load_tokenizer(other)
