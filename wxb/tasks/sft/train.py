"""Supervised fine-tuning of a causal LM on chat data, as a function of one config.

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
    finetune: {strategy: full | lora | qlora | ..., r, lora_alpha, ...}  (wxb.peft.strategy)
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

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from wxb.align.sft import encode_conversations, end_of_turn_id, pack
from wxb.config import check_section_keys, check_strings, coerce
from wxb.data.chat import FORMATS, read_conversations
from wxb.data.text import PaddingCollator
from wxb.errors import ConfigError
from wxb.peft.strategy import apply_strategy, check_finetune, save_finetuned
from wxb.tokenizers.chat import BUILTIN_TEMPLATES
from wxb.train.arguments import TrainingArguments
from wxb.train.from_config import (
    HELD_OUT_DEFAULTS,
    check_expected,
    check_held_out,
    config_sections,
    read_splits,
    result_config,
    write_result,
)
from wxb.train.memory import TrainingMemory
from wxb.train.pretrain import TimeBudget, run_summary
from wxb.train.trainer import Trainer

SECTIONS = ("model", "data", "finetune", "training", "samples")
OTHER_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
MODEL_KEYS = ("pretrained", "chat_template")
DATA_DEFAULTS = {**HELD_OUT_DEFAULTS, "max_length": 512, "packing": False, "format": "auto"}
SAMPLES_DEFAULTS = {"prompts": [], "system": None, "max_new_tokens": 64, "generation": {}}
TRAINING_DEFAULTS = {"output_dir": "runs/sft", "num_train_epochs": 3, "learning_rate": 2e-5,
                     "lr_scheduler_type": "cosine", "warmup_ratio": 0.03, "weight_decay": 0.0,
                     "per_device_train_batch_size": 8, "eval_strategy": "epoch",
                     "logging_steps": 10}
METRICS = ("eval_loss", "eval_loss_before", "perplexity")


def train_sft(config: dict[str, Any], *, resume: bool | str = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune the configured causal LM on chat data; return the contents of result.json.

    ``resume`` continues the run in ``training.output_dir`` (True) or from a given run or
    checkpoint folder. ``log`` receives one line per stage.
    """
    start = time.perf_counter()
    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    model_section, data, method, training, samples = config_sections(config, SECTIONS,
                                                                     OTHER_KEYS)
    model_section, data = check_model_section(model_section), _check_data(data)
    method, samples = check_finetune(method), _check_samples(samples)
    expected = check_expected(config.get("expected"), METRICS)
    max_time = config.get("max_time_seconds")
    max_time = None if max_time is None else coerce("max_time_seconds", max_time, float)
    args = TrainingArguments.from_dict({**TRAINING_DEFAULTS, **training})
    output_dir = Path(args.output_dir)

    model, tokenizer = load_chat_model(model_section)
    end = end_of_turn_id(tokenizer)
    log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters; chat turns "
        f"end with {tokenizer.id_to_token(end) if end is not None else 'no special token'}")
    splits = read_splits(data, lambda path: read_conversations(path, data["format"]))
    encoded, stats = {}, {}
    for name, conversations in splits.items():
        encoded[name], stats[name] = encode_conversations(
            conversations, tokenizer, max_length=data["max_length"])
        s = stats[name]
        log(f"{name}: {s.kept:,} examples, {s.tokens:,} tokens ({s.assistant_tokens:,} "
            f"trained); {s.truncated} cut to {data['max_length']} tokens, {s.dropped} dropped")
    train_set = pack(encoded["train"], data["max_length"]) if data["packing"] \
        else encoded["train"]
    if data["packing"]:
        log(f"packing: {len(encoded['train']):,} examples in {len(train_set):,} rows")

    optimizers, callbacks = apply_strategy(model, method, args)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    trainer = Trainer(model, args, train_dataset=train_set, eval_dataset=encoded["validation"],
                      data_collator=PaddingCollator(pad_id), optimizers=optimizers,
                      callbacks=callbacks)
    log(f"{model.num_parameters(trainable_only=True):,} parameters train "
        f"({method['strategy']}); evaluating the starting point")
    before = trainer.evaluate()["eval_loss"]
    answers_before = answer_prompts(model, tokenizer, samples)
    budget = TimeBudget(max_time) if max_time is not None else None
    trainer.callbacks += [budget] if budget else []
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()  # before evaluation and saving, which take memory of their own

    after = trainer.evaluate()["eval_loss"]
    metrics = {"eval_loss": after, "eval_loss_before": before, "perplexity": math.exp(after)}
    log(f"validation loss on assistant tokens: {before:.4f} before, {after:.4f} after")
    answers_after = answer_prompts(model, tokenizer, samples)
    saved = save_finetuned(model, tokenizer, output_dir / "model", method)

    result: dict[str, Any] = {
        **run_summary("sft", metrics, trainer, output, budget, start),
        "memory_mib": memory_mib,
        "examples": {name: s.to_dict() for name, s in stats.items()},
        "packed_rows": len(train_set) if data["packing"] else None,
        "end_of_turn_token": tokenizer.id_to_token(end) if end is not None else None,
        **saved,
        "samples": [{"prompt": p, "before": a, "after": b}
                    for p, a, b in zip(samples["prompts"], answers_before, answers_after,
                                       strict=True)],
        "config": result_config(config, expected, model=model_section, data=data,
                                finetune=method, training=args.to_dict(), samples=samples,
                                max_time_seconds=max_time),
    }
    return write_result(result, expected, metrics, output_dir)


# ----------------------------------------------------------------------------- the sections


def check_model_section(section: dict[str, Any],
                        known: tuple[str, ...] = MODEL_KEYS) -> dict[str, Any]:
    """The model section of a fine-tuning config of a causal LM, which names ``pretrained``
    (and may name the other ``known`` keys)."""
    check_section_keys("model", section, known)
    if "pretrained" not in section:
        raise ConfigError("model.pretrained is required: the causal LM folder (with its "
                          "tokenizer) to fine-tune, e.g. model: {pretrained: runs/base/model}")
    return {**section, "pretrained": str(section["pretrained"])}


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("data", section, ("train", *DATA_DEFAULTS))
    if "train" not in section:
        raise ConfigError("data.train is required: a JSONL or JSON file of conversations "
                          "(alpaca, messages or sharegpt rows)")
    section = {**DATA_DEFAULTS, **check_held_out(section)}
    section["max_length"] = coerce("data.max_length", section["max_length"], int)
    section["packing"] = coerce("data.packing", section["packing"], bool)
    if section["format"] not in FORMATS:
        raise ConfigError(f"unknown data.format {section['format']!r}; choose one of: "
                          f"{', '.join(FORMATS)}")
    return section


def _check_samples(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("samples", section, tuple(SAMPLES_DEFAULTS))
    section = {**SAMPLES_DEFAULTS, **section}
    check_strings("samples.prompts", section["prompts"])
    if not isinstance(section["generation"], dict):
        raise ConfigError("samples.generation must map generate() settings to values, e.g. "
                          "{repetition_penalty: 1.1}")
    section["max_new_tokens"] = coerce("samples.max_new_tokens", section["max_new_tokens"], int)
    return section


# ----------------------------------------------------------------------------- the pieces


def load_chat_model(section: dict[str, Any], *,
                    require_template: bool = True) -> tuple[Any, Any]:
    """The causal LM and its tokenizer, with the chat template the section names (or the
    tokenizer's own) and the template's end-of-turn token as an eos of the model. Without
    ``require_template`` a tokenizer may have no template (prompts given as plain text)."""
    from wxb.hub import from_pretrained, resolve
    from wxb.models.decoder import CausalLMBase
    from wxb.tokenizers.load import load_tokenizer

    folder = resolve(section["pretrained"])
    model = from_pretrained(folder)
    if not isinstance(model, CausalLMBase):
        raise ConfigError(f"{folder} holds a {type(model).__name__}, not a causal language "
                          "model (gpt2, llama)")
    tokenizer = load_tokenizer(folder)
    template = section.get("chat_template")
    if template is not None:
        tokenizer.chat_template = BUILTIN_TEMPLATES.get(template, template)
    if tokenizer.chat_template is None:
        if not require_template:
            return model, tokenizer
        raise ConfigError(f"the tokenizer in {folder} has no chat template; give "
                          f"model.chat_template: {' | '.join(BUILTIN_TEMPLATES)} | <a Jinja "
                          "template>")
    end = end_of_turn_id(tokenizer)
    eos = model.config.eos_token_id
    if end is not None and end != eos and not (isinstance(eos, list) and end in eos):
        # Generation stops at any of these: the end of a turn, or the base model's own eos.
        model.config.eos_token_id = end if eos is None else [end, *(
            eos if isinstance(eos, list) else [eos])]
    return model, tokenizer


@torch.no_grad()
def answer_prompts(model: Any, tokenizer: Any, section: dict[str, Any]) -> list[str]:
    """The model's greedy answer to every sample prompt, asked as a one-turn chat; the
    answer ends at an eos (the template's end of turn) or after ``max_new_tokens``."""
    from wxb.generation import generate  # generation builds on the models; load it on use

    was_training = model.training
    model.eval()
    system = [{"role": "system", "content": section["system"]}] if section["system"] else []
    answers = []
    for prompt in section["prompts"]:
        ids = tokenizer.apply_chat_template([*system, {"role": "user", "content": prompt}],
                                            add_generation_prompt=True)
        context = model.config.max_position_embeddings
        if len(ids) + section["max_new_tokens"] > context:
            raise ConfigError(f"samples: the prompt {prompt[:30]!r} ({len(ids)} tokens) plus "
                              f"max_new_tokens {section['max_new_tokens']} exceeds the "
                              f"model's context of {context}")
        out = generate(model, torch.tensor([ids], device=model.device),
                       max_new_tokens=section["max_new_tokens"],
                       **{"do_sample": False, **section["generation"]})
        answers.append(tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True))
    model.train(was_training)
    return answers
