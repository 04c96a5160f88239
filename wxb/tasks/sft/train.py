"""Supervised fine-tuning of a causal LM on chat data, as a function of one config (task
``sft``).

    JSONL / JSON (alpaca, messages, sharegpt) -> conversations -> chat template -> ids with
    labels on the assistant turns only -> (packing) -> what trains (full, freezing, LoRA,
    QLoRA; NEFTune from the training section) -> Trainer -> eval loss and greedy answers to
    the sample prompts, before and after -> model/ (+ adapter/) + result.json

The config (a recipe with ``task: sft`` is one)::

    model:    {pretrained: DIR | hub id,           # a causal LM folder with its tokenizer
               chat_template: chatml | llama3 | <a Jinja template>}   # when the tokenizer
                                                   # has none (or to replace its own)
    data:     {train: FILE, validation: FILE}  or  {train: FILE, validation_size: 0.05,
               split_seed: 0}; + max_length: 512, packing: false,
               format: auto | alpaca | messages | sharegpt
    finetune: {strategy: full | lora | qlora | ..., r, lora_alpha, ...}  (FinetuneSection)
    training: {<TrainingArguments fields>, neftune_noise_alpha: 5}
    samples:  {prompts: ["..."], system: null, max_new_tokens: 64,
               generation: {repetition_penalty: 1.1}}   # answered greedily before and after
    max_time_seconds: 600     # stop training after this much wall time

The evaluation split is never packed, so its loss (the mean over batches of the loss per
assistant token) is the same measure with and without packing. The end-of-turn token of the
template (ChatML's ``<|im_end|>``) becomes the model's ``eos_token_id``, so ``wxb chat --model
runs/x/model`` stops where an answer ends. The model that is evaluated and saved is the last.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Literal

import torch

from wxb.align.sft import encode_conversations, end_of_turn_id, pack
from wxb.data.chat import FORMATS, read_conversations
from wxb.data.text import PaddingCollator
from wxb.errors import ConfigError
from wxb.tasks.data import HeldOutData, require
from wxb.tasks.models import ChatModelSection, FinetuneSection, load_chat_model, pad_id
from wxb.tasks.run import Run
from wxb.tasks.sections import Section

TRAINING_DEFAULTS = {"output_dir": "runs/sft", "num_train_epochs": 3, "learning_rate": 2e-5,
                     "lr_scheduler_type": "cosine", "warmup_ratio": 0.03, "weight_decay": 0.0,
                     "per_device_train_batch_size": 8, "eval_strategy": "epoch",
                     "logging_steps": 10}
METRICS = ("eval_loss", "eval_loss_before", "perplexity")


@dataclasses.dataclass
class DataSection(HeldOutData):
    """Conversations to learn from (``format``: how their rows are written), each cut to
    ``max_length`` tokens; ``packing`` joins short training examples into full rows."""

    max_length: int = 512
    packing: bool = False
    format: Literal[FORMATS] = "auto"

    def check(self) -> None:
        require(self, "train", "a JSONL or JSON file of conversations (alpaca, messages or "
                "sharegpt rows)")
        super().check()


@dataclasses.dataclass
class SamplesSection(Section):
    """Prompts answered greedily (after the ``system`` message, if any) before and after
    training, each answer at most ``max_new_tokens`` long; ``generation`` holds more
    ``generate()`` settings."""

    prompts: list[str] = dataclasses.field(default_factory=list)
    system: str | None = None
    max_new_tokens: int = 64
    generation: dict = dataclasses.field(default_factory=dict)


SECTIONS = {"model": ChatModelSection, "data": DataSection, "finetune": FinetuneSection,
            "samples": SamplesSection}


def train_sft(config: dict[str, Any], *, resume: bool | str = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the configured causal LM on chat data; return the contents of result.json.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder. ``log`` receives one line per stage.
    """
    from wxb.peft.strategy import apply_strategy, save_finetuned
    from wxb.train.memory import TrainingMemory

    run = Run("sft", config, SECTIONS, log=log)
    model_section, data, finetune, samples = (run[name] for name in SECTIONS)
    run.expect(METRICS)
    args = run.arguments(TRAINING_DEFAULTS)

    model, tokenizer = load_chat_model(model_section.pretrained, model_section.chat_template)
    end = end_of_turn_id(tokenizer)
    end_token = tokenizer.id_to_token(end) if end is not None else None
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters; chat "
            f"turns end with {end_token or 'no special token'}")
    encoded, stats = {}, {}
    for name, conversations in data.read_splits(
            lambda path: read_conversations(path, data.format)).items():
        encoded[name], stats[name] = encode_conversations(conversations, tokenizer,
                                                          max_length=data.max_length)
        s = stats[name]
        run.log(f"{name}: {s.kept:,} examples, {s.tokens:,} tokens ({s.assistant_tokens:,} "
                f"trained); {s.truncated} cut to {data.max_length} tokens, {s.dropped} dropped")
    train_set = pack(encoded["train"], data.max_length) if data.packing else encoded["train"]
    if data.packing:
        run.log(f"packing: {len(encoded['train']):,} examples in {len(train_set):,} rows")

    optimizers, callbacks = apply_strategy(model, finetune.method, args)
    trainer = run.trainer(model, args, train_dataset=train_set,
                          eval_dataset=encoded["validation"],
                          data_collator=PaddingCollator(pad_id(tokenizer)),
                          optimizers=optimizers, callbacks=callbacks)
    run.log(f"{model.num_parameters(trainable_only=True):,} parameters train "
            f"({finetune.strategy}); evaluating the starting point")
    before = trainer.evaluate()["eval_loss"]
    answers_before = answer_prompts(model, tokenizer, samples)
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()  # before evaluation and saving, which take memory of their own

    after = trainer.evaluate()["eval_loss"]
    metrics = {"eval_loss": after, "eval_loss_before": before, "perplexity": math.exp(after)}
    run.log(f"validation loss on assistant tokens: {before:.4f} before, {after:.4f} after")
    answers_after = answer_prompts(model, tokenizer, samples)
    saved = save_finetuned(model, tokenizer, run.output_dir / "model", finetune.method)
    return run.finish(
        metrics, trainer=trainer, output=output, model_dir=saved["model_dir"],
        adapter_dir=saved["adapter_dir"], memory_mib=memory_mib,
        examples={name: s.to_dict() for name, s in stats.items()},
        packed_rows=len(train_set) if data.packing else None,
        end_of_turn_token=end_token,
        samples=[{"prompt": p, "before": a, "after": b}
                 for p, a, b in zip(samples.prompts, answers_before, answers_after,
                                    strict=True)])


@torch.no_grad()
def answer_prompts(model: Any, tokenizer: Any,
                   samples: SamplesSection | dict[str, Any]) -> list[str]:
    """The model's greedy answer to every sample prompt (a ``samples`` section, or its
    mapping), asked as a one-turn chat; the answer ends at an eos (the template's end of
    turn) or after ``max_new_tokens``."""
    from wxb.generation import generate  # generation builds on the models; load it on use

    if not isinstance(samples, SamplesSection):
        samples = SamplesSection.from_dict(samples, "samples")
    was_training = model.training
    model.eval()
    system = [{"role": "system", "content": samples.system}] if samples.system else []
    answers = []
    for prompt in samples.prompts:
        ids = tokenizer.apply_chat_template([*system, {"role": "user", "content": prompt}],
                                            add_generation_prompt=True)
        context = model.config.max_position_embeddings
        if len(ids) + samples.max_new_tokens > context:
            raise ConfigError(f"samples: the prompt {prompt[:30]!r} ({len(ids)} tokens) plus "
                              f"max_new_tokens {samples.max_new_tokens} exceeds the "
                              f"model's context of {context}")
        out = generate(model, torch.tensor([ids], device=model.device),
                       max_new_tokens=samples.max_new_tokens,
                       **{"do_sample": False, **samples.generation})
        answers.append(tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True))
    model.train(was_training)
    return answers
