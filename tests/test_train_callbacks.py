"""The Trainer's callbacks (wxb.train.callbacks): the time budget, NEFTune as a callback that
is undone however training ends, and staged unfreezing over any groups of parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import wxb.peft.neftune
from wxb.errors import ConfigError, TrainingError
from wxb.train import Trainer, TrainingArguments
from wxb.train.callbacks import NEFTune, StagedUnfreezing, TimeBudget, add_noise, neftune


class Out:
    def __init__(self, loss: torch.Tensor) -> None:
        self.loss = loss


class Net(nn.Module):
    """Three linear layers; ``nan_at`` makes the loss NaN from that forward call on."""

    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(10, 4)
        self.layers = nn.ModuleList([nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 1)])
        self.nan_at, self.calls = nan_at, 0

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def forward(self, input_ids: torch.Tensor, y: torch.Tensor) -> Out:
        self.calls += 1
        h = self.embed(input_ids).mean(1)
        for layer in self.layers:
            h = torch.tanh(layer(h))
        loss = (h.squeeze(-1) - y).pow(2).mean()
        return Out(loss * float("nan") if self.nan_at and self.calls >= self.nan_at else loss)


DATA = [{"input_ids": torch.arange(i, i + 5) % 10, "y": torch.tensor(float(i % 3) - 1)}
        for i in range(16)]


def args(tmp_path, **kw) -> TrainingArguments:
    base = dict(output_dir=str(tmp_path), learning_rate=5e-2, per_device_train_batch_size=4,
                disable_tqdm=True, plot_loss=False, use_cpu=True, max_steps=3)
    return TrainingArguments(**{**base, **kw})


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def moved(before: dict[str, torch.Tensor], model: nn.Module) -> set[str]:
    return {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}


def test_time_budget_stops_after_the_step_in_flight(tmp_path):
    budget = TimeBudget(0.0)
    trainer = Trainer(Net(), args(tmp_path / "a"), train_dataset=DATA, callbacks=[budget])
    trainer.train()
    assert budget.stopped and trainer.state.global_step == 1
    roomy = TimeBudget(3600.0)
    trainer = Trainer(Net(), args(tmp_path / "b"), train_dataset=DATA, callbacks=[roomy])
    trainer.train()
    assert not roomy.stopped and trainer.state.global_step == 3


def test_neftune_callback_noises_training_only_and_is_removed_even_after_an_error(tmp_path):
    model = Net(nan_at=2)
    callback = NEFTune(5.0)
    ids = DATA[0]["input_ids"][None]
    with pytest.raises(TrainingError, match="the loss became nan"):
        Trainer(model, args(tmp_path), train_dataset=DATA, callbacks=[callback]).train()
    assert len(model.embed._forward_hooks) == 0  # removed although train() raised
    model.train()
    assert torch.equal(model.embed(ids), model.embed.weight[ids])
    callback.on_train_begin(type("T", (), {"model": model})())
    noisy = model.embed(ids) - model.embed.weight[ids]
    assert 0 < noisy.abs().max() <= 5.0 / math.sqrt(5 * 4)
    with pytest.raises(ConfigError, match="neftune_noise_alpha must be > 0"):
        NEFTune(0.0)


def test_the_trainer_adds_neftune_from_its_arguments_and_peft_reexports_it(tmp_path):
    trainer = Trainer(Net(), args(tmp_path, neftune_noise_alpha=5.0), train_dataset=DATA)
    assert [type(c) for c in trainer.callbacks] == [NEFTune]
    assert trainer.callbacks[0].alpha == 5.0
    assert Trainer(Net(), args(tmp_path), train_dataset=DATA).callbacks == []
    assert (wxb.peft.neftune.add_noise, wxb.peft.neftune.neftune) == (add_noise, neftune)


def frozen_net() -> tuple[Net, list[list[nn.Parameter]]]:
    """The first two layers frozen; stages: layer 1 (the upper), then layer 0."""
    model = Net()
    for layer in model.layers[:2]:
        layer.requires_grad_(False)
    model.embed.requires_grad_(False)
    return model, [list(model.layers[1].parameters()), list(model.layers[0].parameters())]


def test_staged_unfreezing_opens_one_stage_every_n_steps(tmp_path):
    model, stages = frozen_net()
    schedule = StagedUnfreezing(stages, every=2)
    before = snapshot(model)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
    Trainer(model, args(tmp_path), train_dataset=DATA, optimizers=(opt, None),
            callbacks=[schedule]).train()
    # Steps 1-2 train the head; after step 2 layers.1 opens and step 3 trains it.
    changed = moved(before, model)
    assert {k.rsplit(".", 1)[0] for k in changed} == {"layers.2", "layers.1"}
    assert [schedule.unfrozen_stages(s) for s in (0, 1, 2, 3, 4, 99)] == [0, 0, 1, 1, 2, 2]
    assert not model.embed.weight.requires_grad  # not in any stage: stays frozen


def test_staged_unfreezing_resumes_with_the_stages_of_its_step(tmp_path):
    def run(steps: int, resume: bool) -> dict[str, torch.Tensor]:
        model, stages = frozen_net()
        before = snapshot(model)
        opt = torch.optim.AdamW(model.parameters(), lr=5e-2)
        # constant: a linear schedule would end the first run at learning rate 0
        Trainer(model, args(tmp_path, max_steps=steps, lr_scheduler_type="constant"),
                train_dataset=DATA, optimizers=(opt, None),
                callbacks=[StagedUnfreezing(stages, every=2)]).train(resume_from_checkpoint=resume)
        return moved(before, model)

    # layers.0 opens after step 4: untouched by the first run (the checkpoint holds its initial
    # weights), trained by step 5 of the resumed one.
    assert not any(k.startswith("layers.0.") for k in run(4, False))
    assert {"layers.0.weight", "layers.0.bias"} <= run(5, True)


def test_staged_unfreezing_needs_the_frozen_parameters_in_the_optimizer(tmp_path):
    model, stages = frozen_net()
    with pytest.raises(ConfigError, match="needs an optimizer over every parameter it will "
                                          "unfreeze"):
        Trainer(model, args(tmp_path), train_dataset=DATA,
                callbacks=[StagedUnfreezing(stages, every=1)]).train()
    with pytest.raises(ConfigError, match="every must be at least 1 step, got 0"):
        StagedUnfreezing(stages, every=0)
