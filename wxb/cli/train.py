"""`wxb train`: train a classifier from a YAML config, with flags laid over it."""

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
    bf16: Annotated[bool | None, typer.Option("--bf16/--no-bf16",
                                              help="autocast to bfloat16")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue the run in the output dir from its last checkpoint")] = False,
    resume_from: Annotated[Path | None, typer.Option(
        help="continue from this run folder or checkpoint-* folder", show_default=False)] = None,
) -> None:
    """Train a classifier from a YAML config; flags override the config's values.

    With no config it runs the digits-cnn recipe: a CNN on the built-in 8x8 digits.
    The run folder gets checkpoints, log.jsonl, loss_curve.png,
    the best model (model/) and result.json.

    Example: wxb train run.yaml --epochs 5 --lr 1e-3

    Example: wxb train --model mlp --data features.csv --output-dir runs/mlp

    Example: wxb train run.yaml --resume
    """
    from wxb.recipes import default_train_config
    from wxb.train.from_config import load_config, train_from_config, with_overrides

    training = {"output_dir": output_dir, "num_train_epochs": epochs, "max_steps": max_steps,
                "per_device_train_batch_size": batch_size, "learning_rate": lr, "optim": optim,
                "lr_scheduler_type": scheduler, "warmup_steps": warmup_steps, "seed": seed,
                "bf16": bf16}
    given = {name: value for name, value in training.items() if value is not None}
    base = load_config(config) if config is not None else default_train_config()
    result = train_from_config(with_overrides(base, model=model, data=data, training=given),
                               resume=str(resume_from) if resume_from else resume)

    metrics = result["metrics"]
    model_config = result["config"]["model"]
    print(f"model      {model_config['type']}, {result['num_parameters']:,} parameters, "
          f"saved in {result['model_dir']}")
    print(f"test       accuracy {metrics['eval_accuracy']:.4f}, loss {metrics['eval_loss']:.4f}")
    print(f"training   {result['steps']} steps, {result['wall_time_s']:.1f} s")
    if result["loss_curve"]:
        print(f"loss curve {result['loss_curve']}")
    print(f"result     {Path(result['config']['training']['output_dir']) / 'result.json'}")
