"""Supervised fine-tuning on chat data: the readers, assistant-only labels from the chat
template, truncation and packing, and `train_sft` / `wxb finetune --task sft` end to end."""

from __future__ import annotations

import json

import pytest
import torch
from entry import wxb_cli

import wxb
from wxb.align.sft import (
    IGNORE_INDEX,
    encode_chat,
    encode_conversations,
    end_of_turn_id,
    pack,
    render_with_spans,
)
from wxb.data.chat import read_conversations
from wxb.data.text import PaddingCollator
from wxb.errors import ConfigError, DataError, WxbError
from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.tasks.sft.train import train_sft
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.chat import CHATML, LLAMA3

MARKERS = ["<|im_start|>", "<|im_end|>"]
TEXT = ("systemuserassistant\nwhat is two plus two? four. name a colour: red. hello there! "
        "0123456789")
ROWS = [{"instruction": f"add {a} and {b}", "input": "", "output": f"{a + b}"}
        for a in range(6) for b in range(4)]


def chat_tokenizer(template: str = CHATML) -> CharTokenizer:
    tok = CharTokenizer.train([TEXT + "adn"], added_tokens=MARKERS)
    tok.chat_template = template
    return tok


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def labelled_text(tok, example) -> str:
    """The text of the tokens that carry a label, one run of them per line."""
    runs, current = [], []
    for i, label in zip(example["input_ids"], example["labels"], strict=True):
        if label != IGNORE_INDEX:
            assert label == i
            current.append(i)
        elif current:
            runs.append(current)
            current = []
    runs += [current] if current else []
    return [tok.decode(r) for r in runs]


# ----------------------------------------------------------------------------- reading


def test_the_three_row_formats_read_as_messages(tmp_path):
    rows = [
        {"instruction": "name a colour", "input": "", "output": "red"},
        {"instruction": "add", "input": "2 2", "output": "4", "system": "be brief",
         "history": [["hello", "hello there"]]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}],
         "system": "s"},
    ]
    conversations = read_conversations(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert conversations[0] == [{"role": "user", "content": "name a colour"},
                                {"role": "assistant", "content": "red"}]
    assert conversations[1] == [{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "hello"},
                                {"role": "assistant", "content": "hello there"},
                                {"role": "user", "content": "add\n2 2"},
                                {"role": "assistant", "content": "4"}]
    assert conversations[2] == conversations[3][1:]
    assert conversations[3][0] == {"role": "system", "content": "s"}
    array = tmp_path / "chat.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    assert read_conversations(array) == conversations


@pytest.mark.parametrize("row, message", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "line 2: the conversation has no "
                                                         "assistant turn"),
    ({"instruction": "x"}, "line 2: an alpaca row needs instruction and output"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "line 2: message 0 has role 'robot'"),
    ({"conversations": [{"from": "bot", "value": "x"}]}, "line 2: turn 0 is from 'bot'"),
    ({"text": "x"}, "line 2: unknown row format"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "chat.jsonl", [ROWS[0], row])
    with pytest.raises(DataError, match=message) as err:
        read_conversations(path)
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------- labels


def test_labels_cover_each_assistant_turn_and_its_end_marker_only():
    tok = chat_tokenizer()
    messages = [{"role": "system", "content": "hello"},
                {"role": "user", "content": "what is two plus two?"},
                {"role": "assistant", "content": "four."},
                {"role": "user", "content": "name a colour:"},
                {"role": "assistant", "content": "red."}]
    example = encode_chat(tok, messages)
    text = tok.apply_chat_template(messages, tokenize=False)
    assert tok.decode(example["input_ids"]) == text
    assert labelled_text(tok, example) == ["four.<|im_end|>\n", "red.<|im_end|>\n"]
    # The assistant spans are what the template adds after the generation prompt.
    _, spans = render_with_spans(tok, messages)
    assert [text[s:e] for s, e in spans] == ["four.<|im_end|>\n", "red.<|im_end|>\n"]


def test_llama3_template_labels_and_end_of_turn():
    tok = CharTokenizer.train([TEXT], added_tokens=["<|start_header_id|>", "<|end_header_id|>",
                                                    "<|eot_id|>"],
                              special_tokens={"pad": "[PAD]", "unk": "[UNK]",
                                              "bos": "<|begin_of_text|>"})
    tok.chat_template = LLAMA3
    example = encode_chat(tok, [{"role": "user", "content": "hello"},
                                {"role": "assistant", "content": " four. "}])
    assert labelled_text(tok, example) == ["four.<|eot_id|>"]  # the template trims content
    assert end_of_turn_id(tok) == tok.token_to_id("<|eot_id|>")


def test_end_of_turn_is_the_templates_marker_and_unknown_markers_are_refused():
    tok = chat_tokenizer()
    assert end_of_turn_id(tok) == tok.token_to_id("<|im_end|>")
    plain = CharTokenizer.train([TEXT])
    plain.chat_template = CHATML
    with pytest.raises(ConfigError, match="does not know all of the chat template's text"):
        end_of_turn_id(plain)


def test_a_template_that_rewrites_earlier_turns_is_refused():
    tok = chat_tokenizer("{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}")
    with pytest.raises(ConfigError, match="beginning plus the next turn"):
        encode_chat(tok, [{"role": "user", "content": "hello"},
                          {"role": "assistant", "content": "red."}])


def test_truncation_counts_and_drops_examples_without_an_answer_left():
    tok = chat_tokenizer()
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "red"}]
    long = [{"role": "user", "content": "what is two plus two? " * 3},
            {"role": "assistant", "content": "four"}]
    whole = len(encode_chat(tok, short)["input_ids"])
    examples, stats = encode_conversations([short, long], tok, max_length=whole)
    assert len(examples) == 1 and examples[0] == encode_chat(tok, short)
    assert (stats.kept, stats.dropped, stats.truncated) == (1, 1, 1)
    assert stats.longest == len(encode_chat(tok, long)["input_ids"])
    assert stats.assistant_tokens == len("red") + 2  # the answer, <|im_end|> and "\n"
    with pytest.raises(DataError, match="raise max_length"):
        encode_conversations([long], tok, max_length=8)


def test_packing_keeps_every_token_and_label_in_order():
    examples = [{"input_ids": list(range(n)), "labels": [IGNORE_INDEX] * (n - 1) + [n]}
                for n in (3, 5, 2, 6, 1)]
    rows = pack(examples, 8)
    assert [len(r["input_ids"]) for r in rows] == [8, 8, 1]
    for key in ("input_ids", "labels"):
        assert [t for r in rows for t in r[key]] == [t for e in examples for t in e[key]]
    with pytest.raises(ConfigError, match="does not fit a packed row of 4"):
        pack(examples, 4)


def test_the_loss_is_the_mean_over_assistant_tokens():
    tok = chat_tokenizer()
    examples, _ = encode_conversations(read_rows_as_chat(ROWS[:3]), tok, max_length=64)
    batch = PaddingCollator(tok.pad_token_id)(examples)
    torch.manual_seed(0)
    model = tiny_llama(tok).eval()
    out = model(**batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    keep = labels != IGNORE_INDEX
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(out.loss, expected)
    assert int(keep.sum()) == sum(len(str(r["output"])) + 2 for r in ROWS[:3])


# ----------------------------------------------------------------------------- end to end


def read_rows_as_chat(rows):
    return [[{"role": "user", "content": r["instruction"]},
             {"role": "assistant", "content": r["output"]}] for r in rows]


def tiny_llama(tok) -> LlamaForCausalLM:
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        bos_token_id=None, eos_token_id=None, pad_token_id=tok.pad_token_id))


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    tok = chat_tokenizer()
    torch.manual_seed(0)
    tiny_llama(tok).save_pretrained(folder)
    tok.save(folder)
    return folder


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "train.jsonl", ROWS)


def sft_config(base_model, data_file, output_dir, **changes):
    config = {
        "model": {"pretrained": str(base_model)},
        "data": {"train": str(data_file), "validation_size": 0.25, "max_length": 48},
        "training": {"output_dir": str(output_dir), "num_train_epochs": 8,
                     "per_device_train_batch_size": 4, "learning_rate": 1e-2,
                     "warmup_ratio": 0.0, "eval_strategy": "no", "logging_steps": 5},
        "samples": {"prompts": ["add 2 and 1"], "max_new_tokens": 4},
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def test_train_sft_learns_the_answers_and_saves_a_chat_model(base_model, data, tmp_path,
                                                             monkeypatch):
    monkeypatch.setenv("CI", "true")
    run = tmp_path / "run"
    lines = []
    result = train_sft(sft_config(base_model, data, run), log=lines.append)
    m = result["metrics"]
    assert m["eval_loss"] < 0.7 * m["eval_loss_before"]
    assert result["examples"]["train"]["kept"] == 18 and result["examples"]["validation"][
        "kept"] == 6
    assert result["end_of_turn_token"] == "<|im_end|>"
    assert result["trainable_parameters"] == result["num_parameters"]
    assert result["memory_mib"]["training"] > 0
    assert result["samples"][0]["prompt"] == "add 2 and 1"
    assert json.loads((run / "result.json").read_text())["metrics"] == m
    assert any("end with <|im_end|>" in line for line in lines)

    model, tok = wxb.from_pretrained(run / "model"), wxb.load_tokenizer(run / "model")
    assert model.config.eos_token_id == tok.token_to_id("<|im_end|>")
    assert tok.chat_template == CHATML
    # The saved model answers as the result says it did.
    from wxb.tasks.sft.train import answer_prompts

    answers = answer_prompts(model, tok, {"prompts": ["add 2 and 1"], "system": None,
                                          "max_new_tokens": 4, "generation": {}})
    assert answers == [result["samples"][0]["after"]]


def test_an_interrupted_sft_run_resumes_exactly(base_model, data, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    # Step 2's checkpoint of a finished run stands for an interrupted one: keep it.
    monkeypatch.setattr("wxb.train.checkpoint.shutil.rmtree", lambda *args, **kwargs: None)
    training = {"max_steps": 4, "num_train_epochs": 1, "logging_steps": 2}
    straight = train_sft(sft_config(base_model, data, tmp_path / "a",
                                    training={**training, "save_steps": 2}))
    resumed = train_sft(sft_config(base_model, data, tmp_path / "b", training=training),
                        resume=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed["steps"] == 4
    assert resumed["metrics"] == pytest.approx(straight["metrics"], abs=1e-6)
    assert resumed["samples"] == straight["samples"]
    assert_resumed_from_step_2(tmp_path / "a", tmp_path / "b")


def assert_resumed_from_step_2(first, second):
    """The second run's log holds the first one's entry for step 2 as it was (its measured
    speed too: a rerun would measure anew) and a new one for step 4."""
    logs = [[json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
            for run in (first, second)]
    assert [e["step"] for e in logs[1]] == [2, 4]
    assert logs[1][0] == logs[0][0]
    assert logs[1][1]["samples_per_second"] != logs[0][1]["samples_per_second"]


def test_lora_packing_and_neftune(base_model, data, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    run = tmp_path / "run"
    config = sft_config(base_model, data, run, finetune={"strategy": "lora", "r": 4},
                        data={"packing": True, "max_length": 100},
                        training={"neftune_noise_alpha": 5.0, "num_train_epochs": 2})
    result = train_sft(config)
    assert result["packed_rows"] < result["examples"]["train"]["kept"]
    assert result["trainable_parameters"] < result["num_parameters"] / 5
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert result["config"]["training"]["neftune_noise_alpha"] == 5.0
    assert result["metrics"]["eval_loss"] < result["metrics"]["eval_loss_before"]


def test_qlora_trains_adapters_over_a_4bit_base(base_model, data, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    run = tmp_path / "run"
    result = train_sft(sft_config(base_model, data, run, finetune={"strategy": "qlora", "r": 4},
                                  training={"num_train_epochs": 3}))
    assert result["metrics"]["eval_loss"] < result["metrics"]["eval_loss_before"]
    assert result["trainable_parameters"] < result["num_parameters"] / 5
    # Saved merged at full precision: a plain checkpoint that transformers-style loaders read.
    model = wxb.from_pretrained(run / "model")
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("change, message", [
    ({"model": {"pretrained": "missing-folder"}}, "missing-folder"),
    ({"data": {"validation_size": 0}}, "validation_size must be between 0 and 1"),
    ({"data": {"format": "csv"}}, "unknown data.format 'csv'"),
    ({"samples": {"max_new_tokens": 120}}, "exceeds the model's context of 128"),
    ({"finetune": {"strategy": "lora", "target_modules": "nothing_here"}}, "q_proj"),
])
def test_bad_configs_are_refused_with_one_line(base_model, data, tmp_path, change, message):
    with pytest.raises(WxbError, match=message):
        train_sft(sft_config(base_model, data, tmp_path / "run", **change))


def test_a_tokenizer_without_a_template_needs_one(tmp_path, data):
    tok = CharTokenizer.train([TEXT + "adn"], added_tokens=MARKERS)
    tiny_llama(tok).save_pretrained(tmp_path / "base")
    tok.save(tmp_path / "base")
    config = sft_config(tmp_path / "base", data, tmp_path / "run")
    with pytest.raises(ConfigError, match=r"has no chat template; give model\.chat_template"):
        train_sft(config)
    config["model"]["chat_template"] = "chatml"
    config["training"]["max_steps"] = 1
    assert train_sft(config)["end_of_turn_token"] == "<|im_end|>"


def test_cli_finetune_task_sft(base_model, data, tmp_path):
    run = tmp_path / "run"
    done = wxb_cli("finetune", "--task", "sft", "--model", str(base_model), "--train",
                   str(data), "--max-steps", "3", "--output-dir", str(run))
    assert done.returncode == 0, done.stderr
    assert "validation loss on the answers" in done.stdout
    assert (run / "model" / "model.safetensors").is_file()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user",
                                                              "content": "hi"}]}])
    done = wxb_cli("finetune", "--task", "sft", "--model", str(base_model), "--train",
                   str(bad), "--output-dir", str(tmp_path / "bad"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"wxb: error: {bad}, line 1: the conversation has no assistant turn: there is nothing "
        "to learn from (supervised fine-tuning trains on the assistant's answers)"]
