"""`wxb align dpo`: train a causal LM on preference pairs, from a YAML config or flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

align_app = typer.Typer(help="Align a language model with human preferences.",
                        no_args_is_help=True,
                        context_settings={"help_option_names": ["-h", "--help"]})


@align_app.command("dpo", no_args_is_help=True)
def dpo(
    config: Annotated[Path | None, typer.Argument(
        help="YAML config with sections model, data, finetune, dpo, training",
        show_default=False)] = None,
    model: Annotated[str | None, typer.Option(
        help="causal LM folder with its tokenizer (the policy, and by default the reference)")]
    = None,
    reference: Annotated[str | None, typer.Option(
        help="another reference model folder (default: the policy as it starts)")] = None,
    train: Annotated[str | None, typer.Option(
        help="preference pairs (.jsonl or .json: prompt, chosen, rejected)")] = None,
    validation: Annotated[str | None, typer.Option(
        help="held-out pairs (default: 5% of --train)")] = None,
    chat_template: Annotated[str | None, typer.Option(
        help="for prompts given as messages: chatml, llama3 or a Jinja template")] = None,
    max_length: Annotated[int | None, typer.Option(
        help="tokens of prompt + response (default: 512, at most the model's context)")] = None,
    max_prompt_length: Annotated[int | None, typer.Option(
        help="tokens a long prompt is cut to, from the left")] = None,
    beta: Annotated[float | None, typer.Option(
        help="how far the policy may move from the reference (default 0.1)")] = None,
    loss_type: Annotated[str | None, typer.Option(help="sigmoid (DPO) or ipo")] = None,
    label_smoothing: Annotated[float | None, typer.Option(
        help="share of preferences assumed flipped (conservative DPO), e.g. 0.1")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="what trains: full, bottom, gradual, lora, qlora")] = None,
    lora_r: Annotated[int | None, typer.Option(help="with lora / qlora: the rank r")] = None,
    lora_alpha: Annotated[float | None, typer.Option(
        help="with lora / qlora: the update is scaled by alpha / r")] = None,
    output_dir: Annotated[str | None, typer.Option(
        help="run folder (default: the config's, else runs/dpo)")] = None,
    epochs: Annotated[float | None, typer.Option(help="number of epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="optimizer steps; overrides epochs")]
    = None,
    batch_size: Annotated[int | None, typer.Option(help="pairs per step")] = None,
    lr: Annotated[str | None, typer.Option(help="learning rate (default 5e-6), e.g. 5e-5")]
    = None,
    seed: Annotated[int | None, typer.Option(help="seed of the data order")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue the run in the output dir from its last checkpoint")] = False,
) -> None:
    """Train a causal LM on preference pairs with DPO (no reward model).

    Direct Preference Optimization makes the chosen responses likelier than the rejected
    ones, relative to a frozen reference model. The run folder gets checkpoints, log.jsonl,
    loss_curve.png, the model (model/, with its tokenizer; adapter/ with LoRA) and
    result.json with the held-out reward accuracy and margins before and after.

    Example: wxb align dpo --model runs/sft/model --train pairs.jsonl --beta 0.1
    --strategy lora --lora-r 8 --max-steps 200 --lr 5e-5

    Example: wxb align dpo dpo.yaml --loss-type ipo --output-dir runs/ipo
    """
    from wxb.cli.report import print_result
    from wxb.config import lay_over, load_config
    from wxb.tasks import run_task

    base = load_config(config) if config is not None else {}
    flags = {
        "model": {"pretrained": model, "reference": reference, "chat_template": chat_template},
        "data": {"train": train, "validation": validation, "max_length": max_length,
                 "max_prompt_length": max_prompt_length},
        "dpo": {"beta": beta, "loss_type": loss_type, "label_smoothing": label_smoothing},
        "finetune": {"strategy": strategy, "r": lora_r, "lora_alpha": lora_alpha},
        "training": {"output_dir": output_dir, "num_train_epochs": epochs,
                     "max_steps": max_steps, "per_device_train_batch_size": batch_size,
                     "learning_rate": lr, "seed": seed},
    }
    print_result(run_task("dpo", lay_over(base, flags), resume=resume, log=print))
