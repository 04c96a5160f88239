"""The Trainer: accumulation, clipping, schedules, evaluation, early stopping, checkpoints."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from wxb.errors import CheckpointError, ConfigError, DataError, TrainingError
from wxb.train import Trainer, TrainingArguments, TrainingInterrupted, find_checkpoint
from wxb.train.schedules import lr_factor


@dataclass
class Out:
    loss: torch.Tensor | None
    logits: torch.Tensor


class Regressor(nn.Module):
    """A small MLP with dropout, so resume must restore the RNG to be exact."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(dropout), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Out:
        pred = self.net(x).squeeze(-1)
        return Out(None if y is None else ((pred - y) ** 2).mean(), pred)


class Classifier(nn.Module):
    def __init__(self, n_in: int = 4, n_out: int = 3) -> None:
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Out:
        logits = self.linear(x)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return Out(loss, logits)


class Examples(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int = 0, **extra: torch.Tensor) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 4, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def args(tmp_path, **kw) -> TrainingArguments:
    # On the CPU even where there is a GPU: these tests compare with tensors made on the CPU.
    base = dict(output_dir=str(tmp_path), learning_rate=1e-2, per_device_train_batch_size=8,
                logging_steps=1, disable_tqdm=True, plot_loss=False, use_cpu=True)
    return TrainingArguments(**{**base, **kw})


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_accumulating_4x8_equals_one_batch_of_32(tmp_path):
    data = Examples(32)
    results = []
    for batch, accum in ((32, 1), (8, 4)):
        torch.manual_seed(0)
        model = Regressor(dropout=0.0)
        Trainer(model, args(tmp_path / f"{batch}", per_device_train_batch_size=batch,
                            gradient_accumulation_steps=accum, max_steps=1, optim="sgd",
                            lr_scheduler_type="constant", max_grad_norm=0),
                train_dataset=data).train()
        results.append(params(model))
    # The same update, computed by hand: one SGD step on the mean loss over all 32 examples.
    torch.manual_seed(0)
    reference = Regressor(dropout=0.0)
    loss = reference(data.x, data.y).loss
    loss.backward()
    with torch.no_grad():
        expected = {k: p - 1e-2 * p.grad for k, p in reference.named_parameters()}
    for key, value in expected.items():
        assert torch.allclose(results[0][key], value, atol=1e-6)
        assert torch.allclose(results[1][key], value, atol=1e-6)


def test_gradient_clipping_limits_the_update(tmp_path):
    torch.manual_seed(0)
    model = Regressor(dropout=0.0)
    before = params(model)
    data = Examples(8)
    data.y = data.y * 1000  # a huge loss, hence a huge gradient
    Trainer(model, args(tmp_path, per_device_train_batch_size=8, max_steps=1, optim="sgd",
                        learning_rate=1.0, lr_scheduler_type="constant", max_grad_norm=0.5),
            train_dataset=data).train()
    step = torch.cat([(params(model)[k] - before[k]).flatten() for k in before])
    assert step.norm().item() == pytest.approx(0.5, rel=1e-4)
    log = read_log(tmp_path / "log.jsonl")
    assert log[0]["grad_norm"] > 100  # reported before clipping


def test_learning_rate_follows_the_schedule(tmp_path):
    torch.manual_seed(0)
    seen = []

    class Watch:
        def on_step_end(self, trainer):
            seen.append(trainer.optimizers["default"].param_groups[0]["lr"])

    Trainer(Regressor(), args(tmp_path, max_steps=12, warmup_steps=3,
                              lr_scheduler_type="cosine_with_restarts",
                              lr_scheduler_kwargs={"num_cycles": 2}),
            train_dataset=Examples(40), callbacks=[Watch()]).train()
    expected = [1e-2 * lr_factor("cosine_with_restarts", s, num_warmup_steps=3,
                                 num_training_steps=12, num_cycles=2) for s in range(1, 13)]
    assert seen == pytest.approx(expected, abs=1e-12)


def run_to_completion(tmp_path, steps: int, **kw) -> tuple[nn.Module, Trainer]:
    torch.manual_seed(0)
    model = Regressor()
    trainer = Trainer(model, args(tmp_path, max_steps=steps, **kw), train_dataset=Examples(37),
                      eval_dataset=Examples(16, seed=1))
    trainer.train()
    return model, trainer


class InterruptAt:
    """Send ourselves a real SIGINT (Ctrl-C) after a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer):
        if trainer.state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("accum", [1, 2])
def test_ctrl_c_then_resume_equals_uninterrupted_training_bitwise(tmp_path, accum):
    # 37 examples in batches of 8: epochs of 5 batches, so 2N = 24 steps cross epoch boundaries.
    common = dict(gradient_accumulation_steps=accum, eval_strategy="steps", eval_steps=5,
                  lr_scheduler_type="linear", warmup_steps=2)
    full, full_trainer = run_to_completion(tmp_path / "full", 24, **common)

    torch.manual_seed(0)
    model = Regressor()
    first = Trainer(model, args(tmp_path / "cut", max_steps=24, **common),
                    train_dataset=Examples(37), eval_dataset=Examples(16, seed=1),
                    callbacks=[InterruptAt(11)])
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN under nohup
    with pytest.raises(TrainingInterrupted, match="interrupted at step 11"):
        first.train()
    assert signal.getsignal(signal.SIGINT) is before  # the Trainer's handler is removed

    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    resumed = Regressor()
    second = Trainer(resumed, args(tmp_path / "cut", max_steps=24, **common),
                     train_dataset=Examples(37), eval_dataset=Examples(16, seed=1))
    second.train(resume_from_checkpoint=True)

    for key, value in params(full).items():
        assert torch.equal(params(resumed)[key], value), key
    def timeless(history):
        return [{k: v for k, v in e.items() if k != "samples_per_second"} for e in history]

    assert timeless(second.state.log_history) == timeless(full_trainer.state.log_history)
    full_opt = full_trainer.optimizers["default"].state_dict()["state"]
    resumed_opt = second.optimizers["default"].state_dict()["state"]
    for index, state in full_opt.items():
        assert torch.equal(resumed_opt[index]["exp_avg_sq"], state["exp_avg_sq"])
    log = read_log(tmp_path / "cut" / "log.jsonl")
    assert [e["step"] for e in log if "loss" in e] == list(range(1, 25))


def test_resume_with_constant_schedule_from_a_shorter_run(tmp_path):
    full, _ = run_to_completion(tmp_path / "full", 20, lr_scheduler_type="constant")
    run_to_completion(tmp_path / "part", 8, lr_scheduler_type="constant")
    torch.manual_seed(5)
    model = Regressor()
    Trainer(model, args(tmp_path / "part", max_steps=20, lr_scheduler_type="constant"),
            train_dataset=Examples(37), eval_dataset=Examples(16, seed=1)).train(
        resume_from_checkpoint=True)
    for key, value in params(full).items():
        assert torch.equal(params(model)[key], value), key


def test_evaluation_metrics_best_checkpoint_and_early_stopping(tmp_path):
    scores = iter([0.50, 0.60, 0.55, 0.58, 0.59, 0.90, 0.95])

    def compute_metrics(pred):
        assert pred.predictions.shape == (16, 3) and pred.label_ids.shape == (16,)
        return {"score": next(scores)}

    data = Examples(40)
    labels = torch.arange(40) % 3
    train = [{"x": data.x[i], "labels": labels[i]} for i in range(40)]
    evalset = train[:16]
    torch.manual_seed(0)
    trainer = Trainer(Classifier(), args(tmp_path, max_steps=100, eval_strategy="steps",
                                         eval_steps=2, metric_for_best_model="score",
                                         early_stopping_patience=3),
                      train_dataset=train, eval_dataset=evalset,
                      compute_metrics=compute_metrics)
    trainer.train()
    evals = [e for e in trainer.state.log_history if "eval_score" in e]
    assert [e["eval_score"] for e in evals] == [0.50, 0.60, 0.55, 0.58, 0.59]
    assert [e["step"] for e in evals] == [2, 4, 6, 8, 10]
    assert trainer.state.global_step == 10  # stopped: 3 evaluations without improvement
    pointer = json.loads((tmp_path / "checkpoints.json").read_text())
    assert pointer == {"last": "checkpoint-10", "best": "checkpoint-4"}
    best_state = json.loads((tmp_path / "checkpoint-4" / "trainer_state.json").read_text())
    assert best_state["best_metric"] == 0.60 and best_state["global_step"] == 4
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-10",
                                                                     "checkpoint-4"]


def test_early_stopping_on_a_loss_minimises(tmp_path):
    losses = iter([1.0, 0.8, 0.9, 0.7, 0.75, 0.71, 0.72])

    def compute_metrics(pred):
        return {"ce": next(losses)}

    data = [{"x": torch.randn(4), "labels": torch.tensor(i % 3)} for i in range(24)]
    trainer = Trainer(Classifier(), args(tmp_path, num_train_epochs=50, eval_strategy="epoch",
                                         metric_for_best_model="ce", greater_is_better=False,
                                         early_stopping_patience=2,
                                         per_device_train_batch_size=12),
                      train_dataset=data, eval_dataset=data, compute_metrics=compute_metrics)
    trainer.train()
    assert trainer.state.best_metric == 0.7
    assert trainer.state.global_step == 2 * 6  # 6 epochs of 2 steps, then patience ran out
    assert json.loads((tmp_path / "checkpoints.json").read_text())["best"] == "checkpoint-8"


class NaNAt(nn.Module):
    def __init__(self, bad_call: int) -> None:
        super().__init__()
        self.inner = Regressor(dropout=0.0)
        self.calls, self.bad_call = 0, bad_call

    def forward(self, x, y):
        self.calls += 1
        out = self.inner(x, y)
        return Out(out.loss * float("nan") if self.calls == self.bad_call else out.loss, out.logits)


def test_nan_loss_stops_with_a_clear_error_and_saves_the_last_good_state(tmp_path):
    torch.manual_seed(0)
    model = NaNAt(bad_call=6)
    trainer = Trainer(model, args(tmp_path, max_steps=20), train_dataset=Examples(37))
    with pytest.raises(TrainingError, match=r"loss became nan at step 6 .*checkpoint-5"):
        trainer.train()
    folder = find_checkpoint(tmp_path)
    assert folder.name == "checkpoint-5"
    good = params(model)
    assert all(torch.isfinite(v).all() for v in good.values())
    reloaded = NaNAt(bad_call=0)
    from wxb.train.checkpoint import load_weights

    load_weights(reloaded, folder)
    for key, value in good.items():
        assert torch.equal(params(reloaded)[key], value)


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    trainer = Trainer(Regressor(), args(tmp_path, max_steps=10, save_steps=4),
                      train_dataset=Examples(37))
    real_save, calls = torch.save, []

    def failing_save(obj, path, *a, **kw):
        calls.append(path)
        if "checkpoint-8" in str(path) and len(calls) > 1:
            raise OSError("disk full")
        return real_save(obj, path, *a, **kw)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        trainer.train()
    assert find_checkpoint(tmp_path).name == "checkpoint-4"
    assert [p.name for p in tmp_path.iterdir() if "checkpoint-8" in p.name] == []
    # ... and it resumes from there.
    monkeypatch.setattr(torch, "save", real_save)
    again = Trainer(Regressor(), args(tmp_path, max_steps=10, save_steps=4),
                    train_dataset=Examples(37))
    again.train(resume_from_checkpoint=True)
    assert again.state.global_step == 10


def test_gan_with_two_optimizers_and_a_step_function(tmp_path):
    torch.manual_seed(0)
    gan = nn.ModuleDict({"generator": nn.Linear(1, 1), "discriminator": nn.Sequential(
        nn.Linear(1, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))})
    bce = nn.functional.binary_cross_entropy_with_logits

    def gan_step(trainer, batch):
        real = batch["x"]
        fake = gan["generator"](torch.randn_like(real))
        d_real, d_fake = gan["discriminator"](real), gan["discriminator"](fake.detach())
        d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        trainer.backward(d_loss)
        trainer.optimizer_step("discriminator")
        g_out = gan["discriminator"](fake)
        g_loss = bce(g_out, torch.ones_like(g_out))
        trainer.backward(g_loss)
        trainer.optimizer_step("generator")
        return {"loss": d_loss + g_loss, "d_loss": d_loss, "g_loss": g_loss}

    real = [{"x": torch.tensor([4.0 + 0.5 * torch.randn(()).item()])} for _ in range(256)]
    optimizers = {
        "generator": torch.optim.Adam(gan["generator"].parameters(), lr=2e-2, betas=(0.5, 0.999)),
        "discriminator": torch.optim.Adam(gan["discriminator"].parameters(), lr=2e-2,
                                          betas=(0.5, 0.999)),
    }
    trainer = Trainer(gan, args(tmp_path, num_train_epochs=20, per_device_train_batch_size=32,
                                lr_scheduler_type="constant"),
                      train_dataset=real, optimizers=optimizers, step_fn=gan_step)
    trainer.train()
    with torch.no_grad():
        generated = gan["generator"](torch.randn(2000, 1))
    assert abs(generated.mean().item() - 4.0) < 0.5  # the generator moved from ~0 to the data
    assert {"d_loss", "g_loss"} <= set(trainer.state.log_history[-1])
    saved = torch.load(find_checkpoint(tmp_path) / "optimizer.pt", weights_only=True)
    assert set(saved) == {"generator", "discriminator"}


def test_encoder_decoder_pair_with_their_own_optimizers(tmp_path):
    torch.manual_seed(0)

    class Pair(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.decoder = nn.Linear(4, 8), nn.Linear(8, 1)

        def forward(self, x, y):
            pred = self.decoder(torch.tanh(self.encoder(x))).squeeze(-1)
            return Out(((pred - y) ** 2).mean(), pred)

    model = Pair()
    enc_opt = torch.optim.SGD(model.encoder.parameters(), lr=0.05)
    dec_opt = torch.optim.SGD(model.decoder.parameters(), lr=0.0)  # frozen by its own lr
    frozen = params(model.decoder)
    enc_before = params(model.encoder)
    data = Examples(37)
    loss_before = model(data.x, data.y).loss.item()
    trainer = Trainer(model, args(tmp_path, max_steps=30, lr_scheduler_type="constant"),
                      train_dataset=data, optimizers={"encoder": enc_opt, "decoder": dec_opt})
    trainer.train()
    assert all(torch.equal(params(model.decoder)[k], v) for k, v in frozen.items())
    assert not torch.equal(params(model.encoder)["weight"], enc_before["weight"])
    assert model(data.x, data.y).loss.item() < 0.95 * loss_before


def test_bf16_autocast_on_cpu(tmp_path):
    dtypes = []

    class Probe(Regressor):
        def forward(self, x, y=None):
            out = super().forward(x, y)
            dtypes.append(self.net[0](x).dtype)
            return out

    torch.manual_seed(0)
    trainer = Trainer(Probe(dropout=0.0), args(tmp_path, max_steps=40, bf16=True,
                                               learning_rate=3e-2),
                      train_dataset=Examples(64))
    trainer.train()
    assert dtypes[0] == torch.bfloat16
    losses = [e["loss"] for e in trainer.state.log_history]
    assert losses[-1] < 0.5 * losses[0]


def test_torch_compile_trains_like_eager_and_saves_plain_names(tmp_path):
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = Regressor(dropout=0.0)
        trainer = Trainer(model, args(tmp_path / str(compiled), max_steps=6,
                                      torch_compile=compiled), train_dataset=Examples(37))
        trainer.train()
        runs[compiled] = (model, [e["loss"] for e in trainer.state.log_history if "loss" in e])
    assert runs[True][1] == pytest.approx(runs[False][1], rel=1e-5)
    assert runs[True][0].state_dict().keys() == runs[False][0].state_dict().keys()
    assert trainer.train_model is not trainer.model  # the compiled wrapper did the training
    saved = find_checkpoint(tmp_path / "True")
    assert "net.0.weight" in load_file(saved / "model.safetensors")


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU; on the CPU use bf16"):
        Trainer(Regressor(), args(tmp_path, fp16=True), train_dataset=Examples(8))


def test_same_seed_same_result_and_deterministic_mode(tmp_path):
    runs = []
    for i, seed in enumerate((1, 1, 2)):
        torch.manual_seed(0)
        model = Regressor()
        Trainer(model, args(tmp_path / str(i), max_steps=10, seed=seed,
                            full_determinism=(i == 0)), train_dataset=Examples(37)).train()
        runs.append(params(model))
    try:
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])


def test_logs_plot_and_progress_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CI", "true")
    torch.manual_seed(0)
    Trainer(Regressor(), args(tmp_path / "quiet", max_steps=6, plot_loss=True,
                              disable_tqdm=None, eval_strategy="steps", eval_steps=3),
            train_dataset=Examples(37), eval_dataset=Examples(8)).train()
    err = capsys.readouterr().err
    assert "samples/s" not in err  # no bar under CI ...
    assert "step 3: eval_loss" in err  # ... but evaluation results are still reported
    log = read_log(tmp_path / "quiet" / "log.jsonl")
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in log if "eval_loss" in e] == [3, 6]
    assert {"learning_rate", "samples_per_second", "epoch"} <= set(log[0])
    png = (tmp_path / "quiet" / "loss_curve.png").read_bytes()
    assert png.startswith(b"\x89PNG")

    Trainer(Regressor(), args(tmp_path / "bar", max_steps=6, disable_tqdm=False),
            train_dataset=Examples(37)).train()
    err = capsys.readouterr().err
    assert "6/6" in err and "samples/s" in err and "loss" in err


def test_bad_arguments_raise_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown optim 'adamax'; choose one of: adamw"):
        TrainingArguments(optim="adamax")
    with pytest.raises(ConfigError, match="unknown lr_scheduler_type 'cosin'"):
        TrainingArguments(lr_scheduler_type="cosin")
    with pytest.raises(ConfigError, match=r"learning_rate must be a number \(e.g. 3e-4\), "
                                          "got 'fast'"):
        TrainingArguments(learning_rate="fast")
    assert TrainingArguments(learning_rate="1e-3").learning_rate == 1e-3
    with pytest.raises(ConfigError, match="unknown training argument 'lr'"):
        TrainingArguments.from_dict({"lr": 1e-3})
    with pytest.raises(DataError, match="training dataset is empty"):
        Trainer(Regressor(), args(tmp_path), train_dataset=[]).train()
    with pytest.raises(ConfigError, match="metric_for_best_model 'f1' is not among"):
        Trainer(Regressor(), args(tmp_path, max_steps=2, eval_strategy="steps", eval_steps=1,
                                  metric_for_best_model="f1"),
                train_dataset=Examples(8), eval_dataset=Examples(8)).train()


def test_bad_resume_targets(tmp_path):
    with pytest.raises(CheckpointError, match=r"resume directory .* does not exist"):
        Trainer(Regressor(), args(tmp_path), train_dataset=Examples(8)).train(
            resume_from_checkpoint=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no last checkpoint in"):
        Trainer(Regressor(), args(tmp_path), train_dataset=Examples(8)).train(
            resume_from_checkpoint=tmp_path / "empty")
    Trainer(Regressor(), args(tmp_path / "run", max_steps=2), train_dataset=Examples(8)).train()
    with pytest.raises(CheckpointError, match="holds a Regressor, not a Classifier"):
        Trainer(Classifier(), args(tmp_path / "run", max_steps=4),
                train_dataset=Examples(8)).train(resume_from_checkpoint=True)

    class Wider(Regressor):
        def __init__(self):
            super().__init__()
            self.net[0] = nn.Linear(4, 32)
            self.net[3] = nn.Linear(32, 1)

    Wider.__name__ = "Regressor"
    with pytest.raises(CheckpointError, match="does not fit this Regressor"):
        Trainer(Wider(), args(tmp_path / "run", max_steps=4),
                train_dataset=Examples(8)).train(resume_from_checkpoint=True)
    with pytest.raises(ConfigError, match="exact resume needs the same"):
        Trainer(Regressor(), args(tmp_path / "run", max_steps=4),
                train_dataset=Examples(9)).train(resume_from_checkpoint=True)


# ----------------------------------------------------------------------------- checkpointing


def tiny_transformers():
    from wxb.models.bert import BertConfig, BertForSequenceClassification
    from wxb.models.gpt2 import GPT2Config, GPT2LMHeadModel
    from wxb.models.llama import LlamaConfig, LlamaForCausalLM

    return {
        "bert": (BertForSequenceClassification(BertConfig(
            vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=16, num_labels=2)),
            lambda layers: layers.bert.encoder.layer, {"labels": torch.tensor([0, 1])}),
        "gpt2": (GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=32, n_layer=3, n_head=2,
                                            n_positions=16)),
                 lambda m: m.transformer.h, None),
        "llama": (LlamaForCausalLM(LlamaConfig(
            vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16)),
            lambda m: m.model.layers, None),
    }


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_gradient_checkpointing_recomputes_each_layer_with_the_same_gradients(family):
    torch.manual_seed(0)
    model, layers_of, labels = tiny_transformers()[family]
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids, "labels": ids if labels is None else labels["labels"]}
    calls = []
    for layer in layers_of(model):
        # A pre-hook: the recomputation stops once it has what the backward pass needs.
        layer.register_forward_pre_hook(lambda *_: calls.append(1))

    def loss_and_grads():
        torch.manual_seed(3)  # the dropout masks of BERT and GPT-2
        calls.clear()
        model.zero_grad()
        loss = model.train()(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, len(calls)

    loss, grads, runs = loss_and_grads()
    model.gradient_checkpointing_enable()
    loss_ckpt, grads_ckpt, runs_ckpt = loss_and_grads()
    assert (runs, runs_ckpt) == (3, 6)  # each layer ran again in the backward pass
    torch.testing.assert_close(loss_ckpt, loss)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, msg=name)
    with torch.no_grad():  # evaluation and generation run each layer once
        calls.clear()
        model.eval()(**batch)
        assert len(calls) == 3
    model.gradient_checkpointing_disable()
    loss_and_grads()
    assert len(calls) == 3


def test_the_trainer_turns_gradient_checkpointing_on(tmp_path):
    model, _, _ = tiny_transformers()["llama"]
    args = TrainingArguments(output_dir=str(tmp_path), gradient_checkpointing=True)
    Trainer(model, args)
    assert model.gradient_checkpointing
    from wxb.models.mlp import MLPConfig, MLPForClassification

    with pytest.raises(ConfigError, match="MLPForClassification does not support it"):
        Trainer(MLPForClassification(MLPConfig()), args)
    with pytest.raises(ConfigError, match="Sequential does not support it"):
        Trainer(nn.Sequential(nn.Linear(2, 2)), args)


def test_training_memory_counts_the_weights_and_what_training_added():
    from wxb.train.memory import TrainingMemory, peak_rss_mib, rss_mib

    model = nn.Linear(1024, 1024)  # 4 MiB of weights and bias
    spike = torch.ones(64, 2**20)  # 256 MiB before training: forgotten at start
    spike.mul_(2)
    del spike
    meter = TrainingMemory()
    meter.start(model)
    assert peak_rss_mib() < rss_mib() + 64  # the peak was reset
    held = torch.ones(32, 2**20).mul_(2)  # 128 MiB while "training"
    report = meter.report()
    del held
    assert report["model"] == pytest.approx(4.0, abs=0.01)
    assert 120 < report["added_by_training"] < 200
    assert report["training"] == pytest.approx(report["model"] + report["added_by_training"],
                                               abs=0.11)
