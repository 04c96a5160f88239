"""`wxb finetune`: fine-tune a model on labelled text, tagged tokens or chat data, from a YAML
config or flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def finetune(
    config: Annotated[Path | None, typer.Argument(
        help="YAML config with sections model, data, finetune, training", show_default=False)]
    = None,
    task: Annotated[str | None, typer.Option(
        help="text-classify (default), sft (chat data), token-classify (CoNLL), or another "
             "task of `wxb recipe tasks`")] = None,
    model: Annotated[str | None, typer.Option(
        help="checkpoint folder or hub id, e.g. sentence-transformers/all-MiniLM-L6-v2")] = None,
    chat_template: Annotated[str | None, typer.Option(
        help="with sft: chatml, llama3 or a Jinja template, when the tokenizer has none")] = None,
    train: Annotated[str | None, typer.Option(
        help="training table (.csv .tsv .jsonl), or with sft conversations (.jsonl)")] = None,
    validation: Annotated[str | None, typer.Option(help="validation table")] = None,
    test: Annotated[str | None, typer.Option(help="test table")] = None,
    text_column: Annotated[str | None, typer.Option(help="column of the text")] = None,
    text_pair_column: Annotated[str | None, typer.Option(
        help="column of the second text, for sentence pairs")] = None,
    label_column: Annotated[str | None, typer.Option(help="column of the label")] = None,
    max_length: Annotated[int | None, typer.Option(help="tokens per example (longer ones are "
                                                        "cut, the longer text first)")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="what trains: full, head, pooler_head, bottom, gradual, lora, qlora")] = None,
    freeze_layers: Annotated[int | None, typer.Option(
        help="with --strategy bottom: layers frozen above the embeddings")] = None,
    unfreeze_every: Annotated[int | None, typer.Option(
        help="with --strategy gradual: steps between unfreezing layers")] = None,
    layer_decay: Annotated[float | None, typer.Option(
        help="layer-wise learning-rate decay, e.g. 0.9")] = None,
    lora_r: Annotated[int | None, typer.Option(help="with lora / qlora: the rank r")] = None,
    lora_alpha: Annotated[float | None, typer.Option(
        help="with lora / qlora: the update is scaled by alpha / r")] = None,
    lora_dropout: Annotated[float | None, typer.Option(
        help="with lora / qlora: dropout on the LoRA path")] = None,
    target_modules: Annotated[str | None, typer.Option(
        help="with lora / qlora: all-linear, or a pattern of layer names, e.g. "
             "'query|value'")] = None,
    adapter: Annotated[str | None, typer.Option(
        help="with lora / qlora: go on training this adapter folder (wxb or PEFT)")] = None,
    neftune_alpha: Annotated[float | None, typer.Option(
        help="NEFTune: noise on the input embeddings in training, e.g. 5")] = None,
    output_dir: Annotated[str | None, typer.Option(
        help="run folder (default: the config's, else runs/finetune)")] = None,
    epochs: Annotated[float | None, typer.Option(help="number of epochs")] = None,
    max_steps: Annotated[int | None, typer.Option(help="optimizer steps; overrides epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="examples per step")] = None,
    lr: Annotated[str | None, typer.Option(help="learning rate, e.g. 5e-5")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the head and the data order")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="continue the run in the output dir from its last checkpoint")] = False,
) -> None:
    """Fine-tune a BERT-family checkpoint to classify text (or sentence pairs); with task
    token-classify, train a tagger on CoNLL files; with task sft, fine-tune a causal LM on
    chat data (alpaca, messages or sharegpt JSONL) with the loss on the assistant's answers.

    The run folder gets checkpoints, log.jsonl, loss_curve.png, confusion matrices of the
    validation and test splits (entity and token F1 for a tagger), the model (model/, with its
    tokenizer) and result.json.

    Example: wxb finetune --model sentence-transformers/all-MiniLM-L6-v2
    --train train.tsv --validation dev.tsv --text-column sentence --strategy head

    Example: wxb finetune run.yaml --layer-decay 0.9 --epochs 3

    Example: wxb finetune run.yaml --strategy lora --lora-r 8 --target-modules 'query|value'
    (the merged model goes to model/, the adapter alone to adapter/)

    Example: wxb finetune --task sft --model runs/zh-chat-base/model --chat-template chatml
    --train alpaca_zh_demo.jsonl --strategy lora --neftune-alpha 5 --max-steps 200

    Example: wxb finetune ner.yaml --train conll2003/train.txt --epochs 5 (ner.yaml: task:
    token-classify, model: {type: rnn, case_embedding_size: 16})
    """
    from wxb.cli.report import print_result
    from wxb.config import lay_over, load_config
    from wxb.tasks import get_task

    base = load_config(config) if config is not None else {}
    flags = {
        "task": task,
        "model": {"pretrained": model, "chat_template": chat_template},
        "data": {"train": train, "validation": validation, "test": test,
                 "text_column": text_column, "text_pair_column": text_pair_column,
                 "label_column": label_column, "max_length": max_length},
        "finetune": {"strategy": strategy, "freeze_layers": freeze_layers,
                     "unfreeze_every": unfreeze_every, "layer_decay": layer_decay,
                     "r": lora_r, "lora_alpha": lora_alpha, "lora_dropout": lora_dropout,
                     "target_modules": target_modules, "adapter": adapter},
        "training": {"output_dir": output_dir, "num_train_epochs": epochs,
                     "max_steps": max_steps, "per_device_train_batch_size": batch_size,
                     "learning_rate": lr, "seed": seed,
                     "neftune_noise_alpha": neftune_alpha},
    }
    settings = lay_over(base, flags)
    task_ = get_task(settings.get("task", "text-classify"))
    print_result(task_.run(settings, resume=resume, log=print))
