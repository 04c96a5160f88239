"""Preference pairs, the DPO and reward-model losses against their closed forms, a few steps of
each moving the right way, and `train_dpo` / `train_reward` / `wxb align dpo` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from entry import run_wxb
from test_sft import assert_resumed_from_step_2

import wxb
from wxb.align.dpo import DPOModel, causal_lm_logps, dpo_loss, reference_logps, sequence_logps
from wxb.align.pairwise import disable_dropout, preference_metrics
from wxb.align.reward import RewardModel, reward_loss
from wxb.data.preference import (
    PreferenceCollator,
    PreferencePair,
    concatenated,
    encode_preferences,
    read_preferences,
)
from wxb.errors import ConfigError, DataError, WxbError
from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
from wxb.models.llama import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification
from wxb.peft.lora import LoraConfig, add_lora, disable_adapters
from wxb.tasks.preference.train import train_dpo, train_reward
from wxb.tokenizers.char import CharTokenizer
from wxb.tokenizers.chat import CHATML
from wxb.train.trainer import EvalPrediction

MARKERS = ["<|im_start|>", "<|im_end|>"]
TEXT = "systemuserassistant\nabcdefghijklmnopqrstuvwxyz 0123456789.,?!"
# Prompt "add a and b": the right sum is chosen, the sum plus one rejected.
ROWS = [{"prompt": [{"role": "user", "content": f"add {a} and {b}"}], "chosen": str(a + b),
         "rejected": str(a + b + 1)} for a in range(6) for b in range(4)]


def chat_tokenizer() -> CharTokenizer:
    tok = CharTokenizer.train([TEXT], added_tokens=MARKERS)
    tok.chat_template = CHATML
    return tok


def llama_config(tok, **fields) -> LlamaConfig:
    return LlamaConfig(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=64,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       max_position_embeddings=128, bos_token_id=None, eos_token_id=None,
                       pad_token_id=tok.pad_token_id, **fields)


def tiny_llama(tok, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(tok))


def encoded(tok, pairs, **options):
    return encode_preferences(pairs, tok, max_length=64, max_prompt_length=32, **options)


def whole_batch(dataset, pad_id: int = 0):
    return PreferenceCollator(pad_id)([dataset[i] for i in range(len(dataset))])


def pairs_of(rows) -> list[PreferencePair]:
    return [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in rows]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- the losses


LOGPS = torch.tensor([[-3.0, -7.5, -4.0, -6.0],     # policy chosen, rejected, ref chosen, rejected
                      [-10.0, -2.0, -9.0, -2.5],
                      [-1.0, -1.0, -1.0, -1.0]], dtype=torch.float64)


@pytest.mark.parametrize("loss_type, beta, eps", [("sigmoid", 0.1, 0.0), ("sigmoid", 0.5, 0.2),
                                                  ("ipo", 0.1, 0.0), ("ipo", 0.7, 0.0)])
def test_dpo_loss_is_the_closed_form(loss_type, beta, eps):
    pc, pr, rc, rr = LOGPS.T
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=eps,
                                        loss_type=loss_type)

    def log_sigmoid(x: float) -> float:
        return -math.log1p(math.exp(-x))

    for i, (a, b, c, d) in enumerate(LOGPS.tolist()):
        h = (a - b) - (c - d)
        if loss_type == "sigmoid":
            expected = -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)
        else:
            expected = (h - 1 / (2 * beta)) ** 2
        assert losses[i].item() == pytest.approx(expected, rel=1e-12)
        assert chosen[i].item() == pytest.approx(beta * (a - c), rel=1e-12)
        assert rejected[i].item() == pytest.approx(beta * (b - d), rel=1e-12)


def test_dpo_settings_are_checked():
    with pytest.raises(ConfigError, match=r"unknown dpo\.loss_type 'hinge'"):
        DPOModel(torch.nn.Linear(1, 1), loss_type="hinge")
    with pytest.raises(ConfigError, match=r"dpo\.beta must be a positive number"):
        DPOModel(torch.nn.Linear(1, 1), beta=0.0)
    with pytest.raises(ConfigError, match="label_smoothing applies to loss_type sigmoid"):
        DPOModel(torch.nn.Linear(1, 1), loss_type="ipo", label_smoothing=0.1)


def test_sequence_logps_equals_a_log_softmax_loop_and_ignores_minus_100():
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 11)
    labels = torch.randint(0, 11, (3, 7))
    labels[0, :3] = -100          # a prompt
    labels[1, 5:] = -100          # padding
    labels[2, 1:] = -100          # nothing scored
    sums, counts = torch.zeros(3), torch.zeros(3)
    for b in range(3):
        for t in range(1, 7):     # the token at t is predicted at t - 1
            if labels[b, t] != -100:
                sums[b] += torch.log_softmax(logits[b, t - 1], -1)[labels[b, t]]
                counts[b] += 1
    assert torch.allclose(sequence_logps(logits, labels), sums, atol=1e-5)
    means = sums / counts.clamp(min=1)
    assert torch.allclose(sequence_logps(logits, labels, average=True), means, atol=1e-6)
    assert sequence_logps(logits, labels)[2] == 0
    changed = logits.clone()
    changed[0, :2] = 100.0        # positions that predict prompt tokens do not count
    assert torch.allclose(sequence_logps(changed, labels), sums, atol=1e-5)


def test_one_padded_batch_scores_each_pair_as_alone():
    tok = chat_tokenizer()
    model = tiny_llama(tok).eval()
    rows = [ROWS[0], {**ROWS[5], "chosen": "a much longer answer"}, ROWS[9]]
    data = encoded(tok, pairs_of(rows))
    batch = whole_batch(data, pad_id=tok.pad_token_id)
    ids, mask, labels = concatenated(batch)
    assert ids.shape[0] == 6 and (mask == 0).any()
    with torch.no_grad():
        together = causal_lm_logps(model, ids, mask, labels)
        averaged = causal_lm_logps(model, ids, mask, labels, average=True)
    alone = []
    for half in ("chosen", "rejected"):
        for i in range(len(data)):
            item = data[i]
            row_ids = torch.tensor([item[f"{half}_input_ids"]])
            with torch.no_grad():
                alone.append(causal_lm_logps(model, row_ids, torch.ones_like(row_ids),
                                             torch.tensor([item[f"{half}_labels"]])))
    assert torch.allclose(together, torch.cat(alone), atol=1e-5)
    scored = (labels[:, 1:] != -100).sum(-1)
    assert torch.allclose(averaged, together / scored, atol=1e-6)


def test_at_the_start_the_loss_is_log_2_and_every_reward_is_zero():
    tok = chat_tokenizer()
    policy = tiny_llama(tok)
    data = reference_logps(policy, encoded(tok, pairs_of(ROWS[:6])), batch_size=4)
    assert policy.training  # given back in the mode it came in
    batch = whole_batch(data)
    out = DPOModel(policy, beta=0.1)(**batch)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-5)
    assert out.logits.shape == (6, 2)
    assert torch.allclose(out.logits, torch.zeros(6, 2), atol=1e-5)
    ipo = DPOModel(policy, beta=0.1, loss_type="ipo")
    ipo_batch = whole_batch(reference_logps(policy, data, average=True))
    assert ipo(**ipo_batch).loss.item() == pytest.approx(25.0, abs=1e-3)  # (1 / (2 beta))^2
    without = {k: v for k, v in batch.items() if not k.startswith("reference")}
    with pytest.raises(ConfigError, match="reference_chosen_logps"):
        DPOModel(policy)(**without)


def policy_margin(policy, batch) -> float:
    """Mean over pairs of (policy - reference) log-prob margin of chosen over rejected."""
    with torch.no_grad():
        chosen, rejected = causal_lm_logps(policy, *concatenated(batch)).chunk(2)
    return ((chosen - rejected) - (batch["reference_chosen_logps"]
                                   - batch["reference_rejected_logps"])).mean().item()


def dpo_steps(dpo: DPOModel, batch, steps: int, lr: float) -> list[float]:
    optimizer = torch.optim.Adam([p for p in dpo.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = dpo(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_a_few_dpo_steps_raise_the_chosen_margin_on_the_training_pairs():
    tok = chat_tokenizer()
    policy = tiny_llama(tok)
    batch = whole_batch(reference_logps(policy, encoded(tok, pairs_of(ROWS[:8]))))
    assert policy_margin(policy, batch) == pytest.approx(0.0, abs=1e-5)
    losses = dpo_steps(DPOModel(policy, beta=0.1), batch, steps=5, lr=3e-3)
    assert losses[-1] < losses[0] < math.log(2) + 1e-5
    assert policy_margin(policy, batch) > 0.5


def test_with_lora_the_reference_is_the_policy_with_adapters_disabled():
    tok = chat_tokenizer()
    policy = tiny_llama(tok)
    data = encoded(tok, pairs_of(ROWS[:8]))
    base = whole_batch(reference_logps(policy, data))
    add_lora(policy, LoraConfig(r=4, lora_alpha=8, target_modules="q_proj|v_proj"))
    with disable_adapters(policy):
        batch = whole_batch(reference_logps(policy, data))
    assert torch.allclose(batch["reference_chosen_logps"], base["reference_chosen_logps"])
    dpo_steps(DPOModel(policy, beta=0.1), batch, steps=5, lr=1e-2)
    assert policy_margin(policy, batch) > 0.1
    with disable_adapters(policy):  # the frozen base is still the reference
        assert policy_margin(policy, batch) == pytest.approx(0.0, abs=1e-5)


def test_preference_metrics_count_ties_as_losses():
    prediction = EvalPrediction(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]]), None)
    assert preference_metrics(prediction) == pytest.approx({
        "rewards/chosen": 1 / 3, "rewards/rejected": 2 / 3, "rewards/accuracies": 1 / 3,
        "rewards/margins": -1 / 3})


def test_disable_dropout_makes_training_mode_deterministic():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_embd=16, n_head=2, n_layer=1,
                                       n_positions=16, attn_pdrop=0.5, resid_pdrop=0.5,
                                       embd_pdrop=0.5))
    ids = torch.randint(0, 20, (2, 8))
    assert not torch.equal(model(ids).logits, model(ids).logits)
    disable_dropout(model)
    assert torch.equal(model(ids).logits, model.eval()(ids).logits)


# ----------------------------------------------------------------------------- reward model


def tiny_reward_model(tok, seed: int = 0) -> LlamaForSequenceClassification:
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(llama_config(tok, num_labels=1))


def test_reward_loss_is_minus_log_sigmoid_of_the_gap_with_the_margin():
    tok = chat_tokenizer()
    model = tiny_reward_model(tok).eval()
    rows = [{**r, "margin": m} for r, m in zip(ROWS[:4], (0.0, 1.0, 2.5, -1.0), strict=True)]
    data = encoded(tok, [PreferencePair(r["prompt"], r["chosen"], r["rejected"], r["margin"])
                         for r in rows], margins=True)
    batch = whole_batch(data, pad_id=tok.pad_token_id)
    with torch.no_grad():
        out = RewardModel(model)(**batch)
        # each half on its own, padded only to its own longest
        half = {h: PreferenceCollator(tok.pad_token_id)(
            [{"chosen_input_ids": data[i][f"{h}_input_ids"],
              "chosen_labels": data[i][f"{h}_labels"], "rejected_input_ids": [1],
              "rejected_labels": [-100]} for i in range(len(data))]) for h in ("chosen",
                                                                               "rejected")}
        rc, rr = (model(input_ids=half[h]["chosen_input_ids"],
                        attention_mask=half[h]["chosen_attention_mask"]).logits[:, 0]
                  for h in ("chosen", "rejected"))
    margin = torch.tensor([0.0, 1.0, 2.5, -1.0])
    assert torch.allclose(out.logits, torch.stack([rc, rr], 1), atol=1e-5)
    assert out.loss.item() == pytest.approx(-F.logsigmoid(rc - rr - margin).mean().item(),
                                            abs=1e-6)
    assert reward_loss(rc, rr).item() == pytest.approx(-F.logsigmoid(rc - rr).mean().item())
    with pytest.raises(ConfigError, match="needs num_labels=1"):
        RewardModel(LlamaForSequenceClassification(llama_config(tok, num_labels=2)))


def test_a_few_reward_steps_raise_the_accuracy_on_the_training_pairs():
    tok = chat_tokenizer()
    model = tiny_reward_model(tok)
    # The preferred answer depends on the prompt, so no answer wins by itself.
    pairs = [PreferencePair([{"role": "user", "content": f"say {w} {i}"}], w,
                            "no" if w == "yes" else "yes")
             for w in ("yes", "no") for i in range(4)]
    batch = whole_batch(encoded(tok, pairs), pad_id=tok.pad_token_id)
    reward = RewardModel(model)

    def accuracy() -> float:
        with torch.no_grad():
            rewards = reward(**batch).logits
        return (rewards[:, 0] > rewards[:, 1]).float().mean().item()

    before = accuracy()
    optimizer = torch.optim.Adam(reward.parameters(), lr=2e-2)
    for _ in range(20):
        loss = reward(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert before <= 0.5 < accuracy()


# ----------------------------------------------------------------------------- preference data


def test_every_documented_row_format_reads(tmp_path):
    rows = [
        {"prompt": "\n\nHuman: hi\n\nAssistant:", "chosen": " hello", "rejected": " go"},
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "go",
         "margin": 2},
        {"conversations": [{"from": "system", "value": "be kind"},
                           {"from": "human", "value": "hi"}],
         "chosen": {"from": "gpt", "value": "hello"}, "rejected": {"from": "gpt", "value": "go"}},
        {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
         "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"}]},
    ]
    pairs = read_preferences(write_jsonl(tmp_path / "p.jsonl", rows))
    user_hi = [{"role": "user", "content": "hi"}]
    assert pairs[0] == PreferencePair("\n\nHuman: hi\n\nAssistant:", " hello", " go")
    assert pairs[1] == PreferencePair(user_hi, "hello", "go", 2.0)
    assert pairs[2] == PreferencePair([{"role": "system", "content": "be kind"}, *user_hi],
                                      "hello", "go")
    assert pairs[3] == PreferencePair(user_hi, "hello", "go")
    (tmp_path / "p.json").write_text(json.dumps(rows))  # LLaMA-Factory's one JSON array
    assert read_preferences(tmp_path / "p.json") == pairs


@pytest.mark.parametrize("row, message", [
    ({"prompt": "p", "chosen": "a"}, "line 2: a preference row needs 'chosen' and 'rejected'; "
                                     "'rejected' missing"),
    ({"prompt": "p", "chosen": "", "rejected": ""}, "line 2: .*'chosen' and 'rejected' missing"),
    ({"chosen": "a", "rejected": "b"}, "line 2: no prompt"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "line 2: 'margin'"),
])
def test_bad_rows_name_the_file_and_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], row])
    with pytest.raises(DataError, match=message) as err:
        read_preferences(path)
    assert str(path) in str(err.value)


def test_encoding_leaves_the_prompt_unlabelled_and_collating_pads_both_halves_alike():
    tok = chat_tokenizer()
    pair = PreferencePair([{"role": "user", "content": "hi"}], "a long answer", "no", 1.5)
    data = encoded(tok, [pair, pairs_of(ROWS[:1])[0]], margins=False)
    item = data[0]
    prompt = tok.apply_chat_template(pair.prompt, add_generation_prompt=True)
    for half, text in (("chosen", "a long answer"), ("rejected", "no")):
        ids, labels = item[f"{half}_input_ids"], item[f"{half}_labels"]
        assert ids[:len(prompt)] == prompt and labels[:len(prompt)] == [-100] * len(prompt)
        assert labels[len(prompt):] == ids[len(prompt):]
        assert tok.decode(ids[len(prompt):]) == f"{text}<|im_end|>\n"
    assert "margin" not in item
    batch = whole_batch(data.with_columns(score=[1.0, 2.0]), pad_id=tok.pad_token_id)
    widths = {v.shape[1] for k, v in batch.items() if v.ndim == 2}
    assert len(widths) == 1
    assert batch["score"].tolist() == [1.0, 2.0]
    assert batch["rejected_labels"][0, len(item["rejected_input_ids"]):].eq(-100).all()
    assert batch["rejected_attention_mask"][0].sum() == len(item["rejected_input_ids"])
    with_margins = encoded(tok, [pair], margins=True)
    assert whole_batch(with_margins)["margin"].tolist() == [1.5]
    with pytest.raises(DataError, match="column 'score' has 1 values for 2"):
        data.with_columns(score=[1.0])


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    tok = chat_tokenizer()
    tiny_llama(tok).save_pretrained(folder)
    tok.save(folder)
    return folder


@pytest.fixture
def data(tmp_path):
    return write_jsonl(tmp_path / "pairs.jsonl", ROWS)


def run_config(base_model, data_file, output_dir, **changes):
    config = {
        "model": {"pretrained": str(base_model)},
        "data": {"train": str(data_file), "validation_size": 0.25},
        "training": {"output_dir": str(output_dir), "max_steps": 4, "learning_rate": 3e-3,
                     "per_device_train_batch_size": 6, "warmup_ratio": 0.0,
                     "eval_strategy": "no", "logging_steps": 2},
    }
    for section, values in changes.items():
        config[section] = {**config.get(section, {}), **values}
    return config


def test_train_dpo_reports_before_and_after_and_saves_the_policy(base_model, data, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("CI", "true")
    lines = []
    result = train_dpo(run_config(base_model, data, tmp_path / "run", dpo={"beta": 0.2}),
                       log=lines.append)
    m = result["metrics"]
    assert m["eval_loss_before"] == pytest.approx(math.log(2), abs=1e-5)
    assert m["eval_rewards/accuracies_before"] == 0.0
    assert m["eval_rewards/margins_before"] == pytest.approx(0.0, abs=1e-5)
    assert m["eval_loss"] != m["eval_loss_before"]
    assert result["examples"] == {"train": {"pairs": 18, "truncated": 0},
                                  "validation": {"pairs": 6, "truncated": 0}}
    assert result["reference"] == "the policy as it starts"
    assert result["config"]["dpo"] == {"beta": 0.2, "loss_type": "sigmoid",
                                       "label_smoothing": 0.0}
    assert result["config"]["data"]["max_length"] == 128  # the model's context
    assert any("rewards/accuracies on held-out pairs: 0.0000 before" in ln for ln in lines)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["metrics"] == pytest.approx(m)
    model = wxb.from_pretrained(result["model_dir"])
    assert isinstance(model, LlamaForCausalLM)
    assert (tmp_path / "run" / "model" / "vocab.txt").is_file()
    # the saved policy is the trained one
    start = wxb.from_pretrained(base_model).state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in model.state_dict().items())


def test_an_interrupted_dpo_run_resumes_exactly(base_model, data, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    # Step 2's checkpoint of a finished run stands for an interrupted one: keep it.
    monkeypatch.setattr("wxb.train.checkpoint.shutil.rmtree", lambda *args, **kwargs: None)
    straight = train_dpo(run_config(base_model, data, tmp_path / "a",
                                    training={"save_steps": 2}))
    resumed = train_dpo(run_config(base_model, data, tmp_path / "b"),
                        resume=str(tmp_path / "a" / "checkpoint-2"))
    assert resumed["steps"] == 4
    assert resumed["metrics"] == pytest.approx(straight["metrics"], abs=1e-6)
    a, b = (wxb.from_pretrained(tmp_path / d / "model").state_dict() for d in "ab")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert_resumed_from_step_2(tmp_path / "a", tmp_path / "b")


def test_train_dpo_with_lora_and_ipo(base_model, data, tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = train_dpo(run_config(base_model, data, tmp_path / "lora",
                                  finetune={"strategy": "lora", "r": 4},
                                  dpo={"loss_type": "ipo"}))
    assert result["reference"] == "the policy with its LoRA adapters disabled"
    assert result["metrics"]["eval_loss_before"] == pytest.approx(25.0, abs=1e-3)
    assert (tmp_path / "lora" / "adapter" / "adapter_config.json").is_file()
    assert result["trainable_parameters"] < result["num_parameters"] / 2


def test_train_reward_puts_a_score_head_on_the_causal_lm(base_model, data, tmp_path,
                                                         monkeypatch):
    monkeypatch.setenv("CI", "true")
    reward = train_reward(run_config(base_model, data, tmp_path / "reward"))
    assert reward["task"] == "reward" and reward["reference"] is None
    assert 0 <= reward["metrics"]["eval_rewards/accuracies"] <= 1
    assert isinstance(wxb.from_pretrained(reward["model_dir"]), LlamaForSequenceClassification)


@pytest.mark.parametrize("change, message", [
    ({"dpo": {"beta": -1}}, "dpo.beta must be a positive number"),
    ({"dpo": {"loss_type": "hinge"}}, "unknown dpo.loss_type 'hinge'"),
    ({"dpo": {"gamma": 1}}, "unknown dpo field 'gamma'"),
    ({"data": {"max_length": 512}}, "data.max_length 512 exceeds the model's context of 128"),
    ({"data": {"max_length": 64, "max_prompt_length": 64}}, "max_prompt_length"),
    ({"model": {"reference": "no-such-folder"}}, "no-such-folder"),
])
def test_bad_configs_are_refused(base_model, data, tmp_path, change, message):
    with pytest.raises(WxbError, match=message):
        train_dpo(run_config(base_model, data, tmp_path / "run", **change))


def test_cli_align_dpo(base_model, data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    code, out, _ = run_wxb(capsys, "align", "dpo", "--model", base_model, "--train", data,
                           "--beta", "0.5", "--max-steps", "2", "--lr", "1e-3",
                           "--output-dir", tmp_path / "run")
    assert code == 0
    assert "held out   reward accuracy 0.0000 ->" in out
    assert json.loads((tmp_path / "run" / "result.json").read_text())["config"]["dpo"][
        "beta"] == 0.5
    assert "Example: wxb align dpo" in run_wxb(capsys, "align", "dpo", "--help")[1]

    bad = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"prompt": "p", "chosen": "a"}])
    for args, needle in (((), "line 2"), (("--loss-type", "hinge"), "hinge")):
        code, _, err = run_wxb(capsys, "align", "dpo", "--model", base_model, "--train",
                               bad if not args else data, *args,
                               "--output-dir", tmp_path / "bad")
        assert code == 2 and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1 and err.startswith("wxb: error: ")
        assert needle in err
