"""WER and CER: corpus-level, equal to jiwer on fixtures (empty hypotheses included), with
Whisper's English normalisation (equal to openai-whisper's BasicTextNormalizer) and Chinese
CER over Simplified characters without spaces or punctuation."""

from __future__ import annotations

import jiwer
import pytest
from whisper.normalizers import BasicTextNormalizer

from wxb.errors import ConfigError, DataError
from wxb.metrics.speech import (
    character_error_rate,
    error_counts,
    normalize_chinese,
    normalize_english,
    word_error_rate,
)

REFERENCES = ["the cat sat on the mat", "hello world", "good morning"]
HYPOTHESES = ["the cat sit on mat", "", "good morning everyone"]


def test_wer_is_jiwers_corpus_rate_with_an_empty_hypothesis():
    # sat->sit (S), "the" missing (D); "hello world" all deleted (2 D); "everyone" (I):
    # 5 edits over 6 + 2 + 2 reference words.
    counts = error_counts(HYPOTHESES, REFERENCES, unit="word")
    assert (counts.substitutions, counts.deletions, counts.insertions, counts.hits) == \
        (1, 3, 1, 6)
    assert counts.reference_units == 10
    assert word_error_rate(HYPOTHESES, REFERENCES) == 0.5 == jiwer.wer(REFERENCES, HYPOTHESES)
    # Corpus-level, not the mean of the three utterances' rates (2/6, 1, 1/2).
    assert word_error_rate(HYPOTHESES, REFERENCES) != pytest.approx((2 / 6 + 1 + 1 / 2) / 3)
    # Only empty hypotheses: every reference word deleted.
    assert word_error_rate(["", ""], ["a b", "c"]) == 1.0 == jiwer.wer(["a b", "c"], ["", ""])
    # Insertions can push it above 1.
    assert word_error_rate(["a b c d"], ["x"]) == 4.0 == jiwer.wer(["x"], ["a b c d"])


def test_cer_is_jiwers_counting_the_spaces_between_words():
    hypotheses = ["helo wrld", "", "  good mornin "]
    references = ["hello world", "hi", "good morning"]
    expected = jiwer.cer(references, hypotheses)
    # 1 + 1 deletions, 2 for "hi", 1 for "g": 5 over 11 + 2 + 12 characters.
    assert expected == pytest.approx(5 / 25)
    assert character_error_rate(hypotheses, references) == pytest.approx(expected)


ENGLISH = [
    ("Hello, World! [MUSIC]", "hello world"),
    ("Don't stop (laughs) — it's 9 o'clock.", "dont stop its nine oclock"),
    ("<|en|> Café au lait?", "cafe au lait"),
    ("ZERO.", "zero"),
]


def test_whisper_normalisation_equals_openai_whispers_basic_normalizer():
    basic = BasicTextNormalizer()
    for text in [t for pair in ENGLISH for t in pair] + ["  Tabs\tand\nnew  lines  "]:
        assert normalize_english(text) == basic(text).strip()
    assert normalize_english("Hello, World! [MUSIC]") == "hello world"


def test_normalised_wer_and_cer_equal_jiwer_on_normalised_text():
    hypotheses = [h for h, _ in ENGLISH]
    references = [r for _, r in ENGLISH]
    basic = BasicTextNormalizer()
    hyp, ref = [basic(t) for t in hypotheses], [basic(t) for t in references]
    wer = word_error_rate(hypotheses, references, normalize=True)
    assert wer == pytest.approx(jiwer.wer(ref, hyp))
    assert character_error_rate(hypotheses, references, normalize=True) == \
        pytest.approx(jiwer.cer([r.strip() for r in ref], [h.strip() for h in hyp]))
    # Unnormalised, case and punctuation count as errors.
    assert word_error_rate(hypotheses, references) > wer
    # Numbers are not spelt out: "9" vs "nine" stays one substitution; "don t" vs "dont"
    # one substitution and one insertion, likewise "it s" and "o clock".
    assert error_counts(hypotheses[1:2], references[1:2], unit="word",
                        normalize=True).rate == pytest.approx(7 / 5)


def test_chinese_cer_over_simplified_characters_without_spaces_or_punctuation():
    references = ["今天天气很好。", "我们去公园吧", "打开空调，设定二十九度"]
    hypotheses = ["今天天氣很好", "我們 去 公圓", "打開空調設定二十九度！"]
    # Traditional = Simplified, punctuation and spaces gone: only 圆/园 (S) and 吧 (D) differ.
    counts = error_counts(hypotheses, references, unit="character", language="zh")
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 1, 0)
    assert counts.reference_units == 6 + 6 + 10
    assert character_error_rate(hypotheses, references, language="zh") == pytest.approx(2 / 22)
    assert character_error_rate(hypotheses, references, language="zh") == pytest.approx(
        jiwer.cer([normalize_chinese(r) for r in references],
                  [normalize_chinese(h) for h in hypotheses]))
    # jiwer on the raw text counts the script, the punctuation and the spaces.
    assert jiwer.cer(references, hypotheses) > 0.3
    assert normalize_chinese("苹果表配 Apple Pay，ＯＫ") == "苹果表配applepayok"
    assert character_error_rate(["", "我们去公园吧"], references[:2], language="zh-CN") == \
        pytest.approx(6 / 12)  # an empty hypothesis: all of its reference deleted


def test_bad_input_gives_one_line():
    with pytest.raises(DataError, match="2 hypotheses but 3 references"):
        word_error_rate(["a", "b"], REFERENCES)
    with pytest.raises(DataError, match="no transcripts to score"):
        word_error_rate([], [])
    with pytest.raises(DataError, match="every reference transcript is empty after normal"):
        character_error_rate(["你好"], ["。，"], language="zh")
    with pytest.raises(DataError, match="every reference transcript is empty; an error rate"):
        word_error_rate(["a"], ["  "])
    with pytest.raises(ConfigError, match="not defined for Chinese"):
        word_error_rate(["你好"], ["你好"], language="zh")
    with pytest.raises(DataError, match="hypothesis 1 is NoneType, not a string"):
        word_error_rate(["a", None], ["a", "b"])
