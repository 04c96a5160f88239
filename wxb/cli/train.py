"""`wxb train`: train what a YAML config describes, with flags laid over it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def train(
    config: Annotated[Path | None, typer.Argument(
        help="YAML config with sections model, data, training; default: the digits-cnn recipe",
        show_default=False)] = None,
    model: Annotated[str | None, typer.Option(help="model type: cnn or mlp")] = None,
    data: Annotated[str | None, typer.Option(
        help="built-in data (digits) or a .csv/.npz file")] = None,
    output_dir: Annotated[str | None, typer.Option(
        help="run folder (default: the config's, else runs/train)")] = None,
    epochs: Annotated[float | None, typer.Option(help="number of epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="optimizer steps; overrides epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="examples per step")] = None,
    lr: Annotated[str | None, typer.Option(help="learning rate, e.g. 2e-3")] = None,
    optim: Annotated[str | None, typer.Option(help="adamw, adam or sgd")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="constant, constant_with_warmup, linear, cosine or cosine_with_restarts")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="learning-rate warm-up steps")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the weights and the data order")] = None,
    bf16: Annotated[str | None, typer.Option(
        help="autocast to bfloat16: true, false or auto (where the hardware has it)")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue the run in the output dir from its last checkpoint")] = False,
    resume_from: Annotated[Path | None, typer.Option(
        help="continue from this run folder or checkpoint-* folder", show_default=False)] = None,
) -> None:
    """Train what a YAML config describes (any task: its `task:` key, by default an
    image / feature classifier); flags override the config's values.

    With no config it runs the digits-cnn recipe: a CNN on the built-in 8x8 digits.
    The run folder gets checkpoints, log.jsonl, loss_curve.png,
    the model (model/) and result.json. The tasks: see `wxb recipe tasks`.

    Example: wxb train run.yaml --epochs 5 --lr 1e-3

    Example: wxb train --model mlp --data features.csv --output-dir runs/mlp

    Example: wxb train run.yaml --resume
    """
    from wxb.cli.report import print_result
    from wxb.config import lay_over, load_config
    from wxb.recipes import DEFAULT_TASK, default_train_config
    from wxb.tasks import get_task
    from wxb.tasks.image_classify.train import with_data

    base = load_config(config) if config is not None else default_train_config()
    if data is not None:
        base = with_data(base, data)
    flags = {"model": {"type": model},
             "training": {"output_dir": output_dir, "num_train_epochs": epochs,
                          "max_steps": max_steps, "per_device_train_batch_size": batch_size,
                          "learning_rate": lr, "optim": optim, "lr_scheduler_type": scheduler,
                          "warmup_steps": warmup_steps, "seed": seed, "bf16": bf16}}
    task = get_task(base.get("task", DEFAULT_TASK))
    result = task.run(lay_over(base, flags), resume=str(resume_from) if resume_from else resume,
                      log=print)
    print_result(result)
