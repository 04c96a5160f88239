"""The Trainer: one training loop for every model in wxb.

The loop, in the order it happens::

    for each epoch:                          shuffled with a generator seeded by (data_seed + epoch)
        for each group of gradient_accumulation_steps batches:
            loss = model(**batch).loss       (or a user step_fn for GANs and friends)
            backward, clip, optimizer and scheduler step
            log / evaluate / early-stop / save as the TrainingArguments say

Everything the loop depends on -- weights, optimizer and scheduler states, the random generators
and the position in the data -- goes into each checkpoint, so a resumed run continues exactly as
if it had never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from wxb.errors import ConfigError, DataError, TrainingError, WxbError
from wxb.io import atomic_write_text
from wxb.train import checkpoint as ckpt
from wxb.train.arguments import TrainingArguments
from wxb.train.callbacks import NEFTune
from wxb.train.distributed import Distributed
from wxb.train.precision import resolve_precision
from wxb.train.progress import ProgressBar, progress_enabled
from wxb.train.schedules import get_scheduler
from wxb.train.seed import enable_full_determinism, set_seed

OptimizerSpec = torch.optim.Optimizer | tuple[torch.optim.Optimizer, Any]
StepFn = Callable[["Trainer", dict[str, Any]], dict[str, float]]
logger = logging.getLogger("wxb.train")


class TrainingInterrupted(WxbError):
    """Ctrl-C stopped training; a resumable checkpoint was saved first."""


class _NonFiniteLoss(Exception):
    def __init__(self, value: float) -> None:
        self.value = value


@dataclass
class EvalPrediction:
    """What ``compute_metrics`` receives: model outputs and labels for the whole eval set."""

    predictions: np.ndarray
    label_ids: np.ndarray | None


@dataclass
class TrainOutput:
    global_step: int
    training_loss: float
    metrics: dict[str, float]


@dataclass
class TrainerState:
    """The loop's own state; saved as ``trainer_state.json`` in every checkpoint."""

    global_step: int = 0
    epoch: float = 0.0
    best_metric: float | None = None
    best_checkpoint: str | None = None
    evals_without_improvement: int = 0
    log_history: list[dict[str, float]] = field(default_factory=list)
    # Running sums since the last log line, so a resumed run logs the same averages.
    loss_sum: float = 0.0
    loss_count: int = 0


def default_collate(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of dict examples into a dict of batched tensors."""
    batch = {}
    for key in examples[0]:
        values = [e[key] for e in examples]
        if isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, float, bool, np.number)):
            batch[key] = torch.tensor(values)
        elif isinstance(values[0], np.ndarray):
            batch[key] = torch.from_numpy(np.stack(values))
        else:
            batch[key] = values
    return batch


def concat_padded(arrays: Sequence[np.ndarray], value: int = -100) -> np.ndarray:
    """Batches joined along the first axis; batches of different lengths (per-token logits
    (batch, seq, labels) of a tagger) are right-padded with ``value`` to the longest, as
    ``transformers``' Trainer does."""
    width = max(a.shape[1] if a.ndim > 1 else 0 for a in arrays)
    return np.concatenate([a if a.ndim < 2 or a.shape[1] == width else np.pad(
        a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=value)
        for a in arrays])


def create_optimizer(args: TrainingArguments, model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer ``args.optim`` names; weight decay skips biases and norm weights (1-D)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters (all have requires_grad=False)")
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": args.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    lr = args.learning_rate
    if args.optim == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=args.momentum)
    betas, eps = (args.adam_beta1, args.adam_beta2), args.adam_epsilon
    if args.optim == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


class Trainer:
    """Train ``model`` on dict batches; ``model(**batch).loss`` is what gets minimised.

    Args:
        model: any ``nn.Module``; for the default step it must return an object with ``.loss``.
        args: the TrainingArguments.
        train_dataset / eval_dataset: map-style datasets of dict examples.
        data_collator: turns a list of examples into a batch (default: stack tensors).
        compute_metrics: ``EvalPrediction -> dict[str, float]``, reported as ``eval_<name>``.
        optimizers: ``None`` (one optimizer and schedule from ``args``), ``(optimizer,
            scheduler)`` as in Hugging Face, or ``{name: optimizer or (optimizer, scheduler)}``
            for models with several optimizers (a scheduler of ``None`` follows ``args``).
        step_fn: ``step_fn(trainer, batch) -> {"loss": ..., ...}`` replaces the default step
            when one loss is not enough (a GAN); it calls ``trainer.backward(loss)`` and
            ``trainer.optimizer_step(names)`` itself.
        callbacks: objects with any of ``on_train_begin(trainer)`` (optimizers made, any
            checkpoint resumed, before the first step), ``on_step_end(trainer)``,
            ``on_log(trainer, logs)``, ``on_evaluate(trainer, metrics)``,
            ``on_epoch_end(trainer)``, ``on_train_end(trainer)`` (when ``train`` returns or
            raises, so a callback can undo what it set up); ready-made ones are in
            ``wxb.train.callbacks``. ``neftune_noise_alpha`` adds a ``NEFTune`` one.

    After construction ``precision`` is "bf16", "fp16" or "fp32" (``bf16: auto`` resolved for
    this device), ``bf16`` whether bf16 autocast is on, and ``precision_reason`` the logged
    line saying why.
    """

    def __init__(
        self,
        model: nn.Module,
        args: TrainingArguments | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | None = None,
        data_collator: Callable[[list], dict[str, Any]] | None = None,
        compute_metrics: Callable[[EvalPrediction], dict[str, float]] | None = None,
        optimizers: OptimizerSpec | dict[str, OptimizerSpec] | None = None,
        step_fn: StepFn | None = None,
        callbacks: Iterable[Any] = (),
    ) -> None:
        self.args = args = args or TrainingArguments()
        if args.full_determinism:
            enable_full_determinism(args.seed)
        else:
            set_seed(args.seed)
        self.dist = Distributed.from_env()
        self._lengths: list[int] | None = None  # of the training examples (group_by_length)
        self.device = self.dist.device(args.use_cpu)
        if args.fp16 and self.device.type != "cuda":
            raise ConfigError("fp16 needs a CUDA GPU; on the CPU use bf16: auto instead")
        resolved = resolve_precision(args.bf16, args.fp16, self.device)
        self.precision, self.bf16 = resolved.name, resolved.bf16
        self.precision_reason = resolved.reason
        if self.dist.is_main:
            logger.info(resolved.reason)
        if step_fn is not None and args.gradient_accumulation_steps != 1:
            raise ConfigError("a custom step_fn steps its optimizers itself; "
                              "set gradient_accumulation_steps to 1")
        if step_fn is not None and self.dist.enabled:
            raise ConfigError("a custom step_fn trains in one process; launch it without "
                              "torchrun")
        self.dist.init(self.device)
        self.model = model.to(self.device)
        if args.gradient_checkpointing:
            if not hasattr(model, "gradient_checkpointing_enable"):
                raise ConfigError(f"gradient checkpointing: {type(model).__name__} does not "
                                  "support it (BERT, GPT-2 and LLaMA do)")
            model.gradient_checkpointing_enable()
        # What the training steps call: the model, maybe wrapped to average gradients across
        # processes (DDP) and compiled. The wrappers share its parameters; evaluation and
        # checkpoints use the plain model, so saved names never change.
        self.train_model = self.model
        if self.dist.enabled:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device] if self.device.type == "cuda" else None)
        if args.torch_compile:
            self.train_model = torch.compile(self.train_model)
        self.train_dataset = train_dataset
        self.eval_dataset = eval_dataset
        self.data_collator = data_collator or default_collate
        self.compute_metrics = compute_metrics
        self.step_fn = step_fn
        self.callbacks = list(callbacks)
        if args.neftune_noise_alpha is not None:
            self.callbacks.append(NEFTune(args.neftune_noise_alpha))
        self.output_dir = Path(args.output_dir)
        self.state = TrainerState()
        self.scaler = torch.amp.GradScaler("cuda") if args.fp16 else None
        self._optimizer_spec = optimizers
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self._stop = False
        self._interrupted = False
        self._saved_step: int | None = None

    # ----------------------------------------------------------------- building blocks

    def autocast(self):
        """The mixed-precision context the forward pass runs in."""
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if self.precision == "fp16":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss``; a NaN/inf loss stops training before any weight changes."""
        # Under torchrun every process must take the same branch, or the others would wait
        # for this one's gradients forever.
        if self.dist.any(not bool(torch.isfinite(loss.detach()).all()), self.device):
            raise _NonFiniteLoss(float(loss.detach().float()))
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def optimizer_step(self, names: str | Sequence[str] | None = None) -> float | None:
        """Clip, step and zero the named optimizers (all by default) and their schedulers.

        Returns the gradient norm before clipping, or None when clipping is off.
        """
        names = [names] if isinstance(names, str) else list(names or self.optimizers)
        optimizers = [self.optimizers[n] for n in names]
        if self.scaler:
            for opt in optimizers:
                self.scaler.unscale_(opt)
        grad_norm = None
        if self.args.max_grad_norm > 0:
            params = [p for opt in optimizers for g in opt.param_groups for p in g["params"]]
            grad_norm = float(nn.utils.clip_grad_norm_(params, self.args.max_grad_norm))
        for name, opt in zip(names, optimizers, strict=True):
            if self.scaler:
                self.scaler.step(opt)
            else:
                opt.step()
            self.schedulers[name].step()
            opt.zero_grad(set_to_none=True)
        return grad_norm

    def _setup_optimizers(self, num_training_steps: int) -> None:
        spec = self._optimizer_spec
        if spec is None:
            spec = {"default": create_optimizer(self.args, self.model)}
        elif not isinstance(spec, dict):
            spec = {"default": spec}
        warmup = self.args.warmup_for(num_training_steps)
        for name, item in spec.items():
            opt, sched = item if isinstance(item, tuple) else (item, None)
            if sched is None:
                sched = get_scheduler(self.args.lr_scheduler_type, opt,
                                      num_warmup_steps=warmup,
                                      num_training_steps=num_training_steps,
                                      scheduler_specific_kwargs=self.args.lr_scheduler_kwargs)
            self.optimizers[name], self.schedulers[name] = opt, sched

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                for k, v in batch.items()}

    def _loader(self, dataset: Dataset, batches: list[list[int]]) -> DataLoader:
        # A private generator keeps the DataLoader from drawing on the global torch RNG, whose
        # state must depend only on the training steps taken (for exact resume).
        return DataLoader(dataset, batch_sampler=batches, collate_fn=self.data_collator,
                          num_workers=self.args.dataloader_num_workers,
                          generator=torch.Generator().manual_seed(0))

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """The shuffled batches of one epoch; a function of the seed and the epoch only.

        Under torchrun these are the global batches, which each process shards.
        """
        n = len(self.train_dataset)
        size = self.args.per_device_train_batch_size * self.dist.world_size
        seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
        generator = torch.Generator().manual_seed(seed + epoch)
        order = torch.randperm(n, generator=generator).tolist()
        if self.args.group_by_length:
            order = self._grouped_by_length(order, size)
        batches = [order[i:i + size] for i in range(0, n, size)]
        if self.args.group_by_length:  # the length order must not become the batch order
            batches = [batches[i] for i in torch.randperm(len(batches),
                                                          generator=generator).tolist()]
        # A last batch too small to give every process an example cannot be sharded.
        smallest = size if self.args.dataloader_drop_last else self.dist.world_size
        if len(batches[-1]) < smallest and len(batches) > 1:
            batches.pop()
        return batches

    def _grouped_by_length(self, order: list[int], size: int) -> list[int]:
        """``order`` cut into mega-batches of 50 batches, each sorted by length, longest first
        (transformers' ``group_by_length``): batches hold examples of similar length, and the
        epoch stays random."""
        if self._lengths is None:
            name = getattr(self.model, "main_input_name", "input_ids")
            self._lengths = [len(self.train_dataset[i][name])
                             for i in range(len(self.train_dataset))]
        mega = 50 * size
        return [i for start in range(0, len(order), mega)
                for i in sorted(order[start:start + mega], key=lambda i: -self._lengths[i])]

    def _updates_per_epoch(self) -> int:
        return math.ceil(len(self._epoch_batches(0)) / self.args.gradient_accumulation_steps)

    def _callback(self, event: str, *payload: Any) -> None:
        for cb in self.callbacks:
            method = getattr(cb, event, None)
            if method is not None:
                method(self, *payload)

    def stop(self) -> None:
        """Ask the loop to stop after the current step (usable from callbacks)."""
        self._stop = True

    # ----------------------------------------------------------------- training

    def train(self, resume_from_checkpoint: str | Path | bool | None = None) -> TrainOutput:
        """Run the loop; ``resume_from_checkpoint`` is a folder or True for ``output_dir``."""
        args = self.args
        if self.train_dataset is None or len(self.train_dataset) == 0:
            raise DataError("the training dataset is empty; give the Trainer at least one "
                            "example (check the data file and its filters)")
        per_epoch = self._updates_per_epoch()
        total = args.max_steps if args.max_steps > 0 else math.ceil(
            args.num_train_epochs * per_epoch)
        self._setup_optimizers(total)
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        if resume_from_checkpoint:
            folder = self.output_dir if resume_from_checkpoint is True else resume_from_checkpoint
            folder = ckpt.find_checkpoint(folder)
            self._resume(folder, len(self.train_dataset))
            self._saved_step = self.state.global_step
        if self.dist.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._rewrite_log()
        self._stop = False
        start_time, start_step = time.perf_counter(), self.state.global_step
        with self._training_callbacks():
            self._run_epochs(total, per_epoch, start_time)
            if self._saved_step != self.state.global_step:
                self._save("last")
            if args.plot_loss and self.state.log_history and self.dist.is_main:
                from wxb.viz import plot_loss_curves

                plot_loss_curves(self.state.log_history, self.output_dir / "loss_curve.png")
        steps = self.state.global_step - start_step
        train_losses = [e["loss"] for e in self.state.log_history if "loss" in e]
        metrics = {"train_runtime": time.perf_counter() - start_time,
                   "train_steps": steps, "epoch": self.state.epoch}
        last_eval = [e for e in self.state.log_history if "eval_loss" in e]
        if last_eval:
            metrics.update(last_eval[-1])
        mean_loss = float(np.mean(train_losses)) if train_losses else float("nan")
        return TrainOutput(self.state.global_step, mean_loss, metrics)

    @contextmanager
    def _training_callbacks(self):
        """``on_train_begin`` now, ``on_train_end`` when the block ends, by return or error."""
        try:
            self._callback("on_train_begin")
            yield
        finally:
            self._callback("on_train_end")

    def _run_epochs(self, total: int, per_epoch: int, start_time: float) -> None:
        """The loop itself, from the current step to ``total`` (or a stop)."""
        args = self.args
        samples = 0
        enabled = progress_enabled(args.disable_tqdm) and self.dist.is_main
        with ProgressBar(total, self.state.global_step, enabled=enabled) as bar, \
                self._catch_interrupt():
            self.bar = bar
            epoch = self.state.global_step // per_epoch
            while self.state.global_step < total and not self._stop:
                batches = self._epoch_batches(epoch)
                groups = [batches[i:i + args.gradient_accumulation_steps]
                          for i in range(0, len(batches), args.gradient_accumulation_steps)]
                done_in_epoch = self.state.global_step - epoch * per_epoch
                flat = [self.dist.shard(b) for g in groups[done_in_epoch:] for b in g]
                data = iter(self._loader(self.train_dataset, flat))
                for i in range(done_in_epoch, len(groups)):
                    # Every process stops (or saves and stops) at the same step.
                    self._stop = self.dist.any(self._stop, self.device)
                    if self.state.global_step >= total or self._stop:
                        break
                    if self.dist.any(self._interrupted, self.device):
                        self._save_and_raise_interrupt()
                    rng_before = ckpt.capture_rng_state()
                    micro = [self._to_device(next(data)) for _ in groups[i]]
                    samples += sum(len(b) for b in groups[i])
                    try:
                        logs = self._training_step(micro)
                    except _NonFiniteLoss as err:
                        self._save_and_raise_nonfinite(err.value, epoch, rng_before)
                    self.state.global_step += 1
                    self.state.epoch = epoch + (i + 1) / len(groups)
                    speed = samples / max(time.perf_counter() - start_time, 1e-9)
                    bar.update(self.state.global_step, loss=logs["loss"],
                               samples_per_second=speed)
                    self._after_step(logs, speed, eval_now=self._eval_due(), total=total)
                if self.state.global_step % per_epoch == 0 or self.state.global_step >= total:
                    self._callback("on_epoch_end")
                    if args.eval_strategy == "epoch" and not self._stop:
                        self._evaluate_and_save()
                epoch += 1
            if self.state.loss_count:  # stopped between log lines: keep the last losses
                self._log_training({}, samples / max(time.perf_counter() - start_time, 1e-9))

    def _training_step(self, micro_batches: list[dict[str, Any]]) -> dict[str, float]:
        if self.step_fn is not None:
            logs = self.step_fn(self, micro_batches[0])
            if self.scaler:
                self.scaler.update()
            return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                    for k, v in logs.items()}
        total = torch.zeros((), device=self.device)
        for batch in micro_batches:
            with self.autocast():
                loss = self.train_model(**batch).loss
            if loss is None:
                raise ConfigError("the model returned no loss; put labels in the batch, or give "
                                  "the Trainer a step_fn that computes one")
            # Averaging over micro-batches makes 4 x 8 accumulate to the mean of one batch of 32.
            self.backward(loss / len(micro_batches))
            total += loss.detach().float()
        grad_norm = self.optimizer_step()
        if self.scaler:
            self.scaler.update()
        logs = {"loss": self.dist.mean(float(total) / len(micro_batches), self.device)}
        if grad_norm is not None:
            logs["grad_norm"] = grad_norm
        return logs

    def _eval_due(self) -> bool:
        a = self.args
        return a.eval_strategy == "steps" and self.state.global_step % a.eval_steps == 0

    def _after_step(self, logs: dict[str, float], speed: float, *, eval_now: bool,
                    total: int) -> None:
        args, state = self.args, self.state
        state.loss_sum += logs["loss"]
        state.loss_count += 1
        if state.global_step % max(args.logging_steps, 1) == 0 or state.global_step == total:
            self._log_training(logs, speed)
        self._callback("on_step_end")
        if eval_now:
            self._evaluate_and_save()
        elif args.save_steps and state.global_step % args.save_steps == 0:
            self._save("last")

    def _log_training(self, logs: dict[str, float], speed: float) -> None:
        """Log the mean loss since the last training log line, with this step's extras."""
        state = self.state
        entry = {"step": state.global_step, "epoch": round(state.epoch, 4),
                 "loss": state.loss_sum / state.loss_count,
                 "learning_rate": next(iter(self.schedulers.values())).get_last_lr()[0],
                 "samples_per_second": round(speed, 2)}
        entry.update({k: v for k, v in logs.items() if k != "loss"})
        state.loss_sum, state.loss_count = 0.0, 0
        self._log(entry)

    def _log(self, entry: dict[str, float]) -> None:
        self.state.log_history.append(entry)
        if self.dist.is_main:
            with open(self.output_dir / "log.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        self._callback("on_log", entry)

    def _rewrite_log(self) -> None:
        """Make log.jsonl equal to the history of the state we start from (fresh or resumed)."""
        lines = "".join(json.dumps(e) + "\n" for e in self.state.log_history)
        atomic_write_text(self.output_dir / "log.jsonl", lines)

    # ----------------------------------------------------------------- evaluation

    def evaluate(self, eval_dataset: Dataset | None = None) -> dict[str, float]:
        """Mean loss over the eval set, plus ``compute_metrics``; keys start with ``eval_``."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None or len(dataset) == 0:
            raise DataError("evaluation needs a non-empty eval_dataset")
        size = self.args.per_device_eval_batch_size
        n = len(dataset)
        batches = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
        was_training = self.model.training
        self.model.eval()
        loss_sum, count, predictions, labels = 0.0, 0, [], []
        with torch.no_grad():
            for batch in self._loader(dataset, batches):
                batch = self._to_device(batch)
                with self.autocast():
                    out = self.model(**batch)
                n = len(next(v for v in batch.values() if isinstance(v, torch.Tensor)))
                if getattr(out, "loss", None) is not None:
                    loss_sum += float(out.loss.float()) * n
                count += n
                if self.compute_metrics is not None:
                    predictions.append(out.logits.float().cpu().numpy())
                    if "labels" in batch:
                        labels.append(batch["labels"].cpu().numpy())
        self.model.train(was_training)
        metrics = {"eval_loss": loss_sum / count}
        if self.compute_metrics is not None:
            pred = EvalPrediction(concat_padded(predictions),
                                  concat_padded(labels) if labels else None)
            metrics.update({f"eval_{k.removeprefix('eval_')}": float(v)
                            for k, v in self.compute_metrics(pred).items()})
        return metrics

    def _evaluate_and_save(self) -> None:
        args, state = self.args, self.state
        metrics = self.evaluate()
        self._log({"step": state.global_step, "epoch": round(state.epoch, 4), **metrics})
        self.bar.print(f"step {state.global_step}: " +
                       ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        self._callback("on_evaluate", metrics)
        key = args.eval_metric_key
        if key not in metrics:
            raise ConfigError(f"metric_for_best_model {args.metric_for_best_model!r} is not "
                              f"among the evaluation metrics: {', '.join(metrics)}")
        value, best = metrics[key], state.best_metric
        threshold = args.early_stopping_threshold
        improved = best is None or (value > best + threshold if args.higher_is_better
                                    else value < best - threshold)
        if improved:
            state.best_metric = value
            state.best_checkpoint = f"checkpoint-{state.global_step}"
            state.evals_without_improvement = 0
        else:
            state.evals_without_improvement += 1
        self._save("last", *(["best"] if improved else []))
        patience = args.early_stopping_patience
        if patience and state.evals_without_improvement >= patience:
            self.bar.print(f"early stopping: {key} has not improved for {patience} evaluations "
                           f"(best {state.best_metric:.4f} at {state.best_checkpoint})")
            self._stop = True

    # ----------------------------------------------------------------- checkpoints

    def _save(self, *pointers: str, rng_state: dict[str, Any] | None = None) -> Path:
        name = f"checkpoint-{self.state.global_step}"
        folder = self.output_dir / name
        state = {**asdict(self.state), "model_class": type(self.model).__name__,
                 "num_train_examples": len(self.train_dataset),
                 "train_batch_size": self.args.per_device_train_batch_size,
                 "gradient_accumulation_steps": self.args.gradient_accumulation_steps}
        if self.dist.is_main:  # the processes hold the same weights: one of them writes
            ckpt.save_checkpoint(folder, self.model, optimizers=self.optimizers,
                                 schedulers=self.schedulers, scaler=self.scaler,
                                 rng_state=rng_state or ckpt.capture_rng_state(),
                                 trainer_state=state, training_args=self.args.to_dict())
            ckpt.update_pointer(self.output_dir, **dict.fromkeys(pointers, name))
        self.dist.barrier()
        self._saved_step = self.state.global_step
        return folder

    def _resume(self, folder: Path, num_examples: int) -> None:
        ckpt.load_weights(self.model, folder)
        saved = json.loads((folder / ckpt.STATE).read_text())
        layout = (saved["num_train_examples"], saved["train_batch_size"],
                  saved["gradient_accumulation_steps"])
        here = (num_examples, self.args.per_device_train_batch_size,
                self.args.gradient_accumulation_steps)
        if layout != here:
            raise ConfigError(f"checkpoint {folder} was trained on {layout[0]} examples with "
                              f"batch size {layout[1]} x {layout[2]} accumulation; this run has "
                              f"{here[0]} with {here[1]} x {here[2]}: exact resume needs the same")
        optim_states = ckpt.load_torch(folder, "optimizer.pt")
        sched_states = ckpt.load_torch(folder, "scheduler.pt")
        if set(optim_states) != set(self.optimizers):
            raise ConfigError(f"checkpoint {folder} has optimizers {sorted(optim_states)}, this "
                              f"run has {sorted(self.optimizers)}")
        for name, opt in self.optimizers.items():
            opt.load_state_dict(optim_states[name])
            self.schedulers[name].load_state_dict(sched_states[name])
        if self.scaler is not None and (folder / "scaler.pt").is_file():
            self.scaler.load_state_dict(ckpt.load_torch(folder, "scaler.pt"))
        fields = TrainerState.__dataclass_fields__
        self.state = TrainerState(**{k: v for k, v in saved.items() if k in fields})
        ckpt.restore_rng_state(ckpt.load_torch(folder, "rng_state.pt"))

    def _save_and_raise_nonfinite(self, value: float, epoch: int,
                                  rng_before: dict[str, Any]) -> None:
        self.model.zero_grad(set_to_none=True)
        folder = self._save("last", rng_state=rng_before)
        raise TrainingError(
            f"the loss became {value} at step {self.state.global_step + 1} (epoch {epoch + 1}); "
            f"the last good state is saved in {folder}; lower learning_rate, set max_grad_norm, "
            "or check the data of that step, then resume")

    def _save_and_raise_interrupt(self) -> None:
        folder = self._save("last")
        raise TrainingInterrupted(
            f"training interrupted at step {self.state.global_step}; a resumable checkpoint is "
            f"in {folder}; resume with resume_from_checkpoint={str(self.output_dir)!r} "
            "(CLI: --resume)")

    @contextmanager
    def _catch_interrupt(self):
        """Turn the first Ctrl-C into 'save a checkpoint after this step, then stop'."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._interrupted:  # a second Ctrl-C aborts at once
                raise KeyboardInterrupt
            self._interrupted = True
            self.bar.print("interrupt: finishing this step and saving a checkpoint "
                           "(Ctrl-C again aborts without saving)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            self._interrupted = False
