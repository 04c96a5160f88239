"""Fine-tuning strategies: what trains, what stays fixed through real Trainer steps, and the
layer-wise learning rates."""

from __future__ import annotations

import pytest
import torch

from wxb.errors import ConfigError
from wxb.models.bert import BertConfig, BertForSequenceClassification
from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
from wxb.models.params import parameter_breakdown
from wxb.peft import (
    GradualUnfreezing,
    freeze_all_but_head,
    freeze_bottom,
    param_groups,
)
from wxb.train import Trainer, TrainingArguments

CONFIG = dict(vocab_size=60, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
              intermediate_size=48, max_position_embeddings=16, num_labels=2,
              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


class Pairs(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(5, 60, (10,), generator=g),
                "labels": torch.tensor(i % 2)}


def model() -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(**CONFIG))


def snapshot(m) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def train(m, tmp_path, steps, optimizer=None, callbacks=()):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=steps, learning_rate=1e-2,
                             per_device_train_batch_size=8, disable_tqdm=True,
                             plot_loss=False, use_cpu=True, lr_scheduler_type="constant")
    trainer = Trainer(m, args, train_dataset=Pairs(), callbacks=list(callbacks),
                      optimizers=optimizer)
    trainer.train()
    return trainer


def changed(before, m) -> set[str]:
    return {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}


def test_only_the_head_trains(tmp_path):
    m = freeze_all_but_head(model())
    trainable, total = m.num_parameters(trainable_only=True), m.num_parameters()
    assert trainable == 32 * 2 + 2 < total
    rows = {r.component: r for r in parameter_breakdown(m)}
    assert rows["head"].trainable == rows["head"].parameters == trainable
    assert rows["attention"].trainable == 0
    before = snapshot(m)
    train(m, tmp_path, 3)
    assert changed(before, m) == {"classifier.weight", "classifier.bias"}
    with_pooler = freeze_all_but_head(model(), pooler=True)
    assert with_pooler.num_parameters(trainable_only=True) == trainable + 32 * 32 + 32
    with pytest.raises(ConfigError, match="no task head"):
        freeze_all_but_head(GPT2LMHeadModel(GPT2Config(vocab_size=50, n_layer=1, n_embd=16,
                                                       n_head=2, n_positions=8)))


def test_embeddings_and_the_first_layers_stay_fixed(tmp_path):
    m = freeze_bottom(model(), 2)
    before = snapshot(m)
    train(m, tmp_path, 3)
    moved = changed(before, m)
    assert not any(k.startswith(("bert.embeddings.", "bert.encoder.layer.0.",
                                 "bert.encoder.layer.1.")) for k in moved)
    assert any(k.startswith("bert.encoder.layer.3.") for k in moved)
    with pytest.raises(ConfigError, match=r"cannot freeze 5 layers: .* has 4"):
        freeze_bottom(model(), 5)


def test_gradual_unfreezing_opens_one_layer_from_the_top_every_n_steps(tmp_path):
    m = model()
    schedule = GradualUnfreezing(m, every=2)
    before = snapshot(m)
    trainer = train(m, tmp_path / "a", 3, torch.optim.AdamW(param_groups(m, 1e-2)), [schedule])
    moved = changed(before, m)
    # Steps 1-2 train the head; after step 2 layer 3 opens and step 3 trains it.
    assert any(k.startswith("bert.encoder.layer.3.") for k in moved)
    assert not any(k.startswith(("bert.encoder.layer.2.", "bert.embeddings.")) for k in moved)
    assert trainer.state.global_step == 3
    assert [schedule.unfrozen_layers(s) for s in (0, 2, 8, 10, 99)] == [0, 1, 4, 5, 5]
    with pytest.raises(ConfigError, match="needs an optimizer over every parameter"):
        m2 = model()
        train(m2, tmp_path / "b", 2, callbacks=[GradualUnfreezing(m2, every=1)])


def test_layer_wise_learning_rate_decay():
    m = model()
    groups = param_groups(m, 1e-3, layer_decay=0.5, weight_decay=0.01)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert lr_of[id(m.classifier.weight)] == pytest.approx(1e-3)
    for i, layer in enumerate(m.bert.encoder.layer):
        assert lr_of[id(layer.output.dense.weight)] == pytest.approx(1e-3 * 0.5 ** (4 - i))
    assert lr_of[id(m.bert.embeddings.word_embeddings.weight)] == pytest.approx(1e-3 * 0.5 ** 5)
    assert decay_of[id(m.classifier.weight)] == 0.01
    assert decay_of[id(m.classifier.bias)] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
