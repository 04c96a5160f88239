"""Summarization end to end on made-up documents whose summary is their first words: ROUGE
(rouge-score for English, characters for Chinese), the lead baseline, the task with T5 and the
Transformer, the saved folder, `wxb.pipeline("summarize")` and `wxb summarize`."""

from __future__ import annotations

import csv
import json
import random

import pytest
from rouge_score import rouge_scorer

from wxb.cli import main
from wxb.errors import ConfigError, DataError
from wxb.metrics.summarization import lead, rouge, sentences
from wxb.tasks import get_task, pipeline
from wxb.tasks.summarization.model import load_settings
from wxb.tasks.summarization.train import train_summarization
from wxb.tokenizers.load import load_tokenizer

WORDS = ["red", "green", "blue", "black", "white", "fast", "slow", "big", "small", "old", "new",
         "warm", "cold"]


def _write_documents(path, n: int = 240, *, extra_rows: list[dict] = ()) -> None:
    """Documents of two sentences; the summary is the first sentence's first three words."""
    rng = random.Random(0)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["body", "gist"])
        writer.writeheader()
        for _ in range(n):
            first = [rng.choice(WORDS) for _ in range(rng.randint(4, 7))]
            second = [rng.choice(WORDS) for _ in range(rng.randint(3, 6))]
            writer.writerow({"body": " ".join(first) + ". " + " ".join(second) + ".",
                             "gist": " ".join(first[:3])})
        writer.writerows(extra_rows)


def _config(tmp_path, model: dict, **data) -> dict:
    return {
        "name": "toy-summaries",
        "model": {**model, "tokenizer": {"kind": "word"}},
        "data": {"path": str(tmp_path / "docs.csv"), "document_column": "body",
                 "summary_column": "gist", "source_prefix": "summarize: ",
                 "test_size": 0.1, "validation_size": 0.05, "max_source_length": 32,
                 "max_target_length": 8, "lead": 1, **data},
        "generation": {"num_beams": 2, "max_new_tokens": 6},
        "training": {"output_dir": str(tmp_path / "run"), "num_train_epochs": 25,
                     "per_device_train_batch_size": 16, "learning_rate": 3e-3,
                     "logging_steps": 50, "eval_strategy": "no", "seed": 0},
        "expected": {"metric": "test_rouge1", "at_least": 80},
    }


TRANSFORMER = {"type": "transformer", "d_model": 64, "encoder_layers": 2, "decoder_layers": 2,
               "encoder_attention_heads": 4, "decoder_attention_heads": 4,
               "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "dropout": 0.0}
T5 = {"type": "t5", "d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4,
      "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False, "dropout_rate": 0.0,
      "initializer_factor": 0.5}


def test_rouge_is_rouge_scores_with_stemming_and_sentences_for_lsum():
    hyps = ["The cats were sitting on the mats. They slept.", "a dog barked"]
    refs = ["the cat sat on the mat. it slept.", "the dog barked loudly"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"],
                                      use_stemmer=True)
    expected = {k: 0.0 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    for h, r in zip(hyps, refs, strict=True):
        scores = scorer.score("\n".join(sentences(r)), "\n".join(sentences(h)))
        for k in expected:
            expected[k] += 100 * scores[k].fmeasure / len(hyps)
    got = rouge(hyps, refs)
    assert got == pytest.approx(expected)
    # Stemming is on: "cats"/"cat", "mats"/"mat" match, so ROUGE-1 beats an unstemmed count.
    plain = rouge_scorer.RougeScorer(["rouge1"]).score(refs[0], hyps[0])["rouge1"].fmeasure
    assert got["rouge1"] > 100 * (plain + scorer.score(refs[1], hyps[1])["rouge1"].fmeasure) / 2
    # rougeLsum takes the LCS sentence by sentence; with the sentences swapped it differs.
    swapped = rouge(["They slept. The cats were sitting on the mats."], [refs[0]])
    assert swapped["rougeLsum"] == pytest.approx(rouge([hyps[0]], [refs[0]])["rougeLsum"])
    assert swapped["rougeL"] < rouge([hyps[0]], [refs[0]])["rougeL"]
    with pytest.raises(DataError, match="one reference"):
        rouge(["a"], ["a", "b"])


def test_chinese_rouge_counts_characters():
    # 我爱北京 against 我爱上海: 2 of 4 characters, 1 of 3 bigrams, LCS 2.
    got = rouge(["我爱北京。"], ["我爱上海"], language="zh")
    assert got["rouge1"] == pytest.approx(50.0)
    assert got["rouge2"] == pytest.approx(100 / 3)
    assert got["rougeL"] == pytest.approx(50.0)
    # rouge-score's own tokenizer drops every Chinese character: it would score 0.
    assert rouge(["我爱北京"], ["我爱上海"])["rouge1"] == 0.0
    # Latin words inside Chinese text count as one token each.
    assert rouge(["用GPT写诗"], ["用gpt作诗"], language="zh")["rouge1"] == pytest.approx(75.0)


def test_lead_takes_the_first_sentences_in_english_and_chinese():
    assert sentences("One. Two! Three? Four") == ["One.", "Two!", "Three?", "Four"]
    assert lead("One. Two! Three? Four", 2) == "One. Two!"
    assert sentences("今天下雨。明天放晴！后天呢？") == ["今天下雨。", "明天放晴！", "后天呢？"]
    assert lead("今天下雨。明天放晴！后天呢？", 1) == "今天下雨。"
    assert lead("3.5 million people voted. Then", 1) == "3.5 million people voted."


def test_summarizer_learns_to_pick_the_first_words_and_its_folder_summarizes(tmp_path, capsys):
    _write_documents(tmp_path / "docs.csv", extra_rows=[{"body": "", "gist": "x"},
                                                        {"body": "red green.", "gist": " "}])
    config = _config(tmp_path, TRANSFORMER, score_against_input=True)
    result = train_summarization(config)
    metrics = result["metrics"]
    assert result["task"] == "summarization" and result["met"], metrics
    assert result["skipped_empty_pairs"] == 2
    assert result["examples"] == {"train": 204, "validation": 12, "test": 24}
    # The lead-1 baseline is the whole first sentence: every reference word is in it, but it
    # is longer than the reference, so its precision (and F1) is lower than the model's.
    assert 40 < metrics["test_lead_rouge1"] < metrics["test_rouge1"]
    assert metrics["test_rougeL_over_lead"] == pytest.approx(
        metrics["test_rougeL"] - metrics["test_lead_rougeL"])
    # Against the input, copying wins: the lead scores higher than the short summaries.
    assert metrics["test_lead_rouge1_vs_input"] > metrics["test_rouge1_vs_input"]
    assert result["metric"] == "test_rougeL" and "test_loss" in metrics
    assert result["rouge_tokens"].startswith("rouge-score's English words")
    assert json.loads((tmp_path / "run" / "result.json").read_text())["metrics"] == metrics
    # The folder keeps the prefix and generation settings, and summarizes as the run did.
    assert load_settings(result["model_dir"])["prefix"] == "summarize: "
    summarizer = pipeline("summarize", result["model_dir"])
    sample = result["samples"]["test"][0]
    assert summarizer(sample["document"]) == [{"summary_text": sample["summary"]}]
    assert get_task("summarization", use="pipeline").name == "summarization"
    with pytest.raises(SystemExit) as exit_info:
        main(["summarize", "--model", result["model_dir"], sample["document"],
              str(tmp_path / "docs.csv"), "--column", "body"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == sample["summary"] and len(lines) == 1 + 241


def test_t5_summarizer_trains_and_a_run_continues_from_its_folder(tmp_path):
    # T5 has no absolute positions (its relative biases are in self-attention only), so
    # "the first three words" takes it longer to learn; here: the loss falls, the folder
    # loads as T5 and a second run starts from it.
    _write_documents(tmp_path / "docs.csv", n=120)
    config = _config(tmp_path, T5)
    config["model"]["tokenizer"] = {"kind": "unigram", "vocab_size": 40, "extra_ids": 0}
    config["training"].update(num_train_epochs=4)
    del config["expected"]
    result = train_summarization(config)
    first = result["metrics"]["test_loss"]
    again = _config(tmp_path, {})
    again["model"] = {"pretrained": result["model_dir"]}
    again["training"].update(output_dir=str(tmp_path / "again"), num_train_epochs=4)
    del again["expected"]
    second = train_summarization(again)
    assert second["config"]["model"] == {"pretrained": result["model_dir"]}
    assert second["metrics"]["test_loss"] < first
    assert json.loads((tmp_path / "again" / "model" / "config.json").read_text())[
        "model_type"] == "t5"
    # The tokenizer trained for it is T5's kind (SentencePiece Unigram, <pad> 0, </s> 1).
    tokenizer = load_tokenizer(result["model_dir"])
    assert type(tokenizer).__name__ == "T5Tokenizer"
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1)


def test_summarization_bad_input_is_one_clear_line(tmp_path, capsys):
    _write_documents(tmp_path / "docs.csv", n=30)
    config = _config(tmp_path, T5, document_column="text")
    with pytest.raises(DataError, match=r"no column 'text'.*data\.document_column"):
        train_summarization(config)
    t5_two_vocabularies = _config(tmp_path, T5)
    t5_two_vocabularies["model"] = {**T5, "source_tokenizer": {"kind": "word"},
                                    "target_tokenizer": {"kind": "word"}}
    with pytest.raises(ConfigError, match="one embedding table"):
        train_summarization(t5_two_vocabularies)
    pretrained_and_type = _config(tmp_path, T5)
    pretrained_and_type["model"]["pretrained"] = str(tmp_path)
    with pytest.raises(ConfigError, match="zero_shot scores a pretrained model"):
        train_summarization({**_config(tmp_path, T5), "zero_shot": True})
    with pytest.raises(ConfigError, match=r"model\.pretrained brings its own"):
        train_summarization(pretrained_and_type)
    with pytest.raises(ConfigError, match="repetition_penalty must be positive"):
        train_summarization({**_config(tmp_path, T5), "generation": {"repetition_penalty": 0}})
    with pytest.raises(SystemExit) as exit_info:
        main(["summarize", "--model", str(tmp_path / "missing"), "some text"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wxb: error:")


def _decoder_folder(tmp_path):
    """A small GPT-2 and a word tokenizer (no chat template) saved as a causal-LM folder."""
    import torch

    from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
    from wxb.tokenizers.train import tokenizer_from_settings

    texts = [" ".join(WORDS), "Summarize the following text. TL;DR"]
    tokenizer = tokenizer_from_settings({"kind": "word"}, texts, special_tokens={
        "pad": "[PAD]", "unk": "[UNK]", "eos": "[EOS]"})
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=tokenizer.vocab_size, n_positions=64, n_embd=64, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    folder = model.save_pretrained(tmp_path / "gpt")
    tokenizer.save(folder)
    return folder


def test_a_decoder_only_model_summarizes_from_a_prompt(tmp_path):
    _write_documents(tmp_path / "docs.csv", n=160)
    config = _config(tmp_path, {})
    config["model"] = {"pretrained": str(_decoder_folder(tmp_path))}
    config["data"].update(prompt="{document} TL;DR", max_source_length=20)
    config["training"].update(num_train_epochs=30, output_dir=str(tmp_path / "zero"))
    del config["expected"]
    before = train_summarization({**config, "zero_shot": True})  # no training step
    assert before["steps"] == 0
    config["training"].update(output_dir=str(tmp_path / "tuned"))
    after = train_summarization(config)
    # Loss on the summary tokens only: the model learns to copy the first three words.
    assert after["metrics"]["test_loss"] < before["metrics"]["test_loss"] / 2
    assert after["metrics"]["test_rouge1"] > 70 > before["metrics"]["test_rouge1"]
    summarizer = pipeline("summarize", after["model_dir"])
    assert summarizer.decoder_only
    sample = after["samples"]["test"][0]
    assert summarizer(sample["document"]) == [{"summary_text": sample["summary"]}]
    with pytest.raises(ConfigError, match="must hold"):
        train_summarization({**config, "data": {**config["data"], "prompt": "Summarize:"}})
