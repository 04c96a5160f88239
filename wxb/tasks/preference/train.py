"""Training on preference pairs, as a function of one config: DPO (``train_dpo``) and the reward
model of RLHF (``train_reward``).

    JSONL / JSON pairs (wxb.data.preference) -> prompt + chosen / rejected ids, the prompt
    unlabelled -> what trains (full, freezing, LoRA, QLoRA) -> [DPO: the reference's
    log-probabilities, computed once] -> Trainer -> held-out reward accuracy and margins,
    before and after -> model/ (+ adapter/) with its tokenizer + result.json

The config (a recipe with ``task: dpo`` or ``task: reward`` is one)::

    model:    {pretrained: DIR | hub id,        # a causal LM folder with its tokenizer
               chat_template: chatml | llama3 | <a Jinja template>,  # for prompts given as
                                                # messages, when the tokenizer has none
               reference: DIR}                  # dpo only: the reference model; by default
                                                # the policy as it starts (with LoRA: the
                                                # policy with its adapters off, as in TRL)
    data:     {train: FILE, validation: FILE}  or  {train: FILE, validation_size: 0.05,
               split_seed: 0}; + max_length: 512 (at most the model's context),
               max_prompt_length: max_length // 2
    finetune: {strategy: full | lora | qlora | ..., r, lora_alpha, ...}  (wxb.peft.strategy)
    dpo:      {beta: 0.1, loss_type: sigmoid | ipo, label_smoothing: 0.0}       (dpo only)
    training: {<TrainingArguments fields>}
    max_time_seconds: 600     # stop training after this much wall time

Defaults. DPO's learning rate is 5e-6: TRL's 1e-6 (and Zephyr's 5e-7) suit models of billions
of parameters, while the course's small models barely move at it; a model of a few million
parameters trained from scratch takes about 5e-5. One epoch, cosine schedule with 10% warm-up,
as in the Zephyr and TRL DPO recipes. The reward model starts with a fresh ``score`` head and
trains at 1e-5 (TRL's reward example). Dropout is off in both, as TRL's ``disable_dropout``.

The scores are TRL's: ``eval_rewards/accuracies`` (the share of held-out pairs whose chosen
response gets the higher reward), ``eval_rewards/margins``, ``eval_rewards/chosen`` and
``eval_rewards/rejected``, measured before training (``*_before``) and after. Before DPO the
policy is its reference, so every reward is 0, the accuracy 0.0 (a tie is not a win) and the
sigmoid loss log 2. The model that is evaluated and saved is the last one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from wxb.align.dpo import DPOModel, check_dpo_settings, reference_logps
from wxb.align.pairwise import PairwiseModel, disable_dropout, preference_metrics
from wxb.align.reward import RewardModel
from wxb.config import check_section_keys, coerce
from wxb.data.preference import PreferenceCollator, encode_preferences, read_preferences
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
from wxb.train.sft import MODEL_KEYS, check_model_section, load_chat_model
from wxb.train.trainer import Trainer

TASKS = ("dpo", "reward")
OTHER_KEYS = ("name", "description", "task", "expected", "reported", "max_time_seconds")
DATA_DEFAULTS = {**HELD_OUT_DEFAULTS, "max_length": None, "max_prompt_length": None}
DEFAULT_MAX_LENGTH = 512
DPO_DEFAULTS = {"beta": 0.1, "loss_type": "sigmoid", "label_smoothing": 0.0}
TRAINING_DEFAULTS = {"num_train_epochs": 1, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1,
                     "weight_decay": 0.0, "per_device_train_batch_size": 8,
                     "per_device_eval_batch_size": 8, "eval_strategy": "epoch",
                     "logging_steps": 10}
TASK_DEFAULTS = {"dpo": {"output_dir": "runs/dpo", "learning_rate": 5e-6},
                 "reward": {"output_dir": "runs/reward", "learning_rate": 1e-5}}
SCORES = ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins",
          "eval_rewards/chosen", "eval_rewards/rejected")
METRICS = (*SCORES, *(f"{name}_before" for name in SCORES))


def train_dpo(config: dict[str, Any], *, resume: bool | str = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train the configured causal LM with DPO on preference pairs; return the contents of
    result.json. ``resume`` continues the run in ``training.output_dir`` (True) or from a
    given run or checkpoint folder; ``log`` receives one line per stage."""
    return _train_on_pairs("dpo", config, resume, log)


def train_reward(config: dict[str, Any], *, resume: bool | str = False,
                 log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train a reward model (the configured model with a one-number ``score`` head) on
    preference pairs; return the contents of result.json. Arguments as ``train_dpo``."""
    return _train_on_pairs("reward", config, resume, log)


def _train_on_pairs(task: str, config: dict[str, Any], resume: bool | str,
                    log: Callable[[str], None] | None) -> dict[str, Any]:
    start = time.perf_counter()
    log = log or (lambda line: None)
    config = copy.deepcopy(config)
    sections = ("model", "data", "finetune", "training", *(["dpo"] if task == "dpo" else []))
    model_section, data, method, training, *dpo = config_sections(config, sections, OTHER_KEYS)
    model_section = check_model_section(
        model_section, (*MODEL_KEYS, "reference") if task == "dpo" else MODEL_KEYS)
    data, method = _check_data(data), check_finetune(method)
    dpo_settings = _check_dpo(dpo[0]) if dpo else None
    expected = check_expected(config.get("expected"), METRICS)
    max_time = config.get("max_time_seconds")
    max_time = None if max_time is None else coerce("max_time_seconds", max_time, float)
    args = TrainingArguments.from_dict({**TRAINING_DEFAULTS, **TASK_DEFAULTS[task], **training})
    output_dir = Path(args.output_dir)

    if task == "dpo":
        model, tokenizer = load_chat_model(model_section, require_template=False)
    else:
        model, tokenizer = _load_reward_model(model_section)
    disable_dropout(model)
    data = _with_lengths(data, model)
    log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters")
    datasets = {}
    for name, pairs in read_splits(data, read_preferences).items():
        datasets[name] = encode_preferences(
            pairs, tokenizer, max_length=data["max_length"],
            max_prompt_length=data["max_prompt_length"], margins=task == "reward")
        log(f"{name}: {len(pairs):,} pairs, {datasets[name].truncated} cut to "
            f"{data['max_length']} tokens")

    optimizers, callbacks = apply_strategy(model, method, args)
    pairwise: PairwiseModel = DPOModel(model, **dpo_settings) if dpo_settings \
        else RewardModel(model)
    trainer = Trainer(pairwise, args, data_collator=PreferenceCollator(_pad_id(tokenizer)),
                      compute_metrics=preference_metrics, optimizers=optimizers,
                      callbacks=callbacks)
    reference = None
    if isinstance(pairwise, DPOModel):
        reference = _add_reference(datasets, pairwise, model_section, trainer, log)
    trainer.train_dataset, trainer.eval_dataset = datasets["train"], datasets["validation"]
    log(f"{model.num_parameters(trainable_only=True):,} parameters train "
        f"({method['strategy']}); evaluating the starting point")
    before = trainer.evaluate()
    budget = TimeBudget(max_time) if max_time is not None else None
    trainer.callbacks += [budget] if budget else []
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()  # before evaluation and saving, which take memory of their own

    after = trainer.evaluate()
    metrics = {**{k: after[k] for k in SCORES}, **{f"{k}_before": before[k] for k in SCORES}}
    for key in ("eval_rewards/accuracies", "eval_rewards/margins"):
        log(f"{key.removeprefix('eval_')} on held-out pairs: {before[key]:.4f} before, "
            f"{after[key]:.4f} after")
    saved = save_finetuned(model, tokenizer, output_dir / "model", method)

    result: dict[str, Any] = {
        **run_summary(task, metrics, trainer, output, budget, start),
        "memory_mib": memory_mib,
        "examples": {name: {"pairs": len(d), "truncated": d.truncated}
                     for name, d in datasets.items()},
        "reference": reference,
        **saved,
        "config": result_config(
            config, expected, model=model_section, data=data, finetune=method,
            **({"dpo": dpo_settings} if dpo_settings else {}), training=args.to_dict(),
            max_time_seconds=max_time),
    }
    return write_result(result, expected, metrics, output_dir)


# ----------------------------------------------------------------------------- the sections


def _check_data(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("data", section, ("train", *DATA_DEFAULTS))
    if "train" not in section:
        raise ConfigError("data.train is required: a JSONL or JSON file of preference pairs "
                          "(prompt, chosen, rejected)")
    section = {**DATA_DEFAULTS, **check_held_out(section)}
    for key in ("max_length", "max_prompt_length"):
        if section[key] is not None:
            section[key] = coerce(f"data.{key}", section[key], int)
    return section


def _check_dpo(section: dict[str, Any]) -> dict[str, Any]:
    check_section_keys("dpo", section, tuple(DPO_DEFAULTS))
    section = {**DPO_DEFAULTS, **section}
    for key in ("beta", "label_smoothing"):
        section[key] = coerce(f"dpo.{key}", section[key], float)
    check_dpo_settings(section["beta"], section["label_smoothing"], section["loss_type"])
    return section


def _with_lengths(data: dict[str, Any], model: Any) -> dict[str, Any]:
    """The data section with ``max_length`` (512, or the model's context when shorter) and
    ``max_prompt_length`` (half of it) where it leaves them out; a pair must fit the context."""
    context = model.config.max_position_embeddings
    max_length = data["max_length"]
    max_length = min(DEFAULT_MAX_LENGTH, context) if max_length is None else max_length
    if max_length > context:
        raise ConfigError(f"data.max_length {max_length} exceeds the model's context of "
                          f"{context}; set data.max_length: {context} or less")
    return {**data, "max_length": max_length,
            "max_prompt_length": max_length // 2 if data["max_prompt_length"] is None
            else data["max_prompt_length"]}


# ----------------------------------------------------------------------------- the pieces


def _load_reward_model(section: dict[str, Any]) -> tuple[Any, Any]:
    """The model of ``section['pretrained']`` with a one-number ``score`` head (new, unless
    the folder holds a reward model already) and its tokenizer."""
    from wxb.hub import from_pretrained, resolve
    from wxb.models.base import CONFIG_NAME, read_config_json
    from wxb.tokenizers.load import load_tokenizer
    from wxb.train.finetune import head_architecture

    folder = resolve(section["pretrained"])
    tokenizer = load_tokenizer(folder)
    template = section.get("chat_template")
    if template is not None:
        tokenizer.chat_template = BUILTIN_TEMPLATES.get(template, template)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer in {folder} has neither a pad nor an eos token; a "
                          "reward model reads each sequence at its last token before the "
                          "padding, so it needs one of them")
    architecture = head_architecture(read_config_json(folder / CONFIG_NAME).get("model_type"))
    model = from_pretrained(folder, architecture=architecture, num_labels=1,
                            pad_token_id=_pad_id(tokenizer))
    return model, tokenizer


def _pad_id(tokenizer: Any) -> int:
    """The padding id: the tokenizer's pad token, else its eos (as TRL sets it), else 0."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def _add_reference(datasets: dict[str, Any], dpo: DPOModel, section: dict[str, Any],
                   trainer: Trainer, log: Callable[[str], None]) -> str:
    """Put the reference's log-probabilities into every dataset, computed where the Trainer
    put the policy (and in its precision); return what the reference was."""
    from wxb.peft.lora import disable_adapters, has_lora

    policy = dpo.model
    if section.get("reference") is not None:
        reference, _ = load_chat_model({"pretrained": section["reference"]},
                                       require_template=False)
        if reference.config.vocab_size != policy.config.vocab_size:
            raise ConfigError(f"model.reference {section['reference']} has a vocabulary of "
                              f"{reference.config.vocab_size} tokens, the policy "
                              f"{policy.config.vocab_size}: both must read the same tokens")
        reference.to(trainer.device)
        context, source = nullcontext(), str(section["reference"])
    elif has_lora(policy):
        reference, context = policy, disable_adapters(policy)
        source = "the policy with its LoRA adapters disabled"
    else:
        reference, context, source = policy, nullcontext(), "the policy as it starts"
    log(f"reference log-probabilities from {source}")
    with context, trainer.autocast():
        for name, dataset in datasets.items():
            datasets[name] = reference_logps(reference, dataset,
                                             trainer.args.per_device_eval_batch_size,
                                             average=dpo.average_logps)
    return source
