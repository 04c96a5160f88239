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
    finetune: {strategy: full | lora | qlora | ..., r, lora_alpha, ...}  (FinetuneSection)
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

import dataclasses
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, Literal

from wxb.align.dpo import LOSS_TYPES, DPOModel, check_dpo_settings, reference_logps
from wxb.align.pairwise import PairwiseModel, disable_dropout, preference_metrics
from wxb.align.reward import RewardModel
from wxb.data.preference import PreferenceCollator, encode_preferences, read_preferences
from wxb.errors import ConfigError
from wxb.tasks.data import HeldOutData, require
from wxb.tasks.models import (
    ChatModelSection,
    FinetuneSection,
    head_architecture,
    load_chat_model,
    pad_id,
)
from wxb.tasks.run import Run
from wxb.tasks.sections import Section
from wxb.tokenizers.chat import BUILTIN_TEMPLATES

DEFAULT_MAX_LENGTH = 512
TRAINING_DEFAULTS = {"num_train_epochs": 1, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1,
                     "weight_decay": 0.0, "per_device_train_batch_size": 8,
                     "per_device_eval_batch_size": 8, "eval_strategy": "epoch",
                     "logging_steps": 10}
TASK_DEFAULTS = {"dpo": {"output_dir": "runs/dpo", "learning_rate": 5e-6},
                 "reward": {"output_dir": "runs/reward", "learning_rate": 1e-5}}
SCORES = ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins",
          "eval_rewards/chosen", "eval_rewards/rejected")
METRICS = (*SCORES, *(f"{name}_before" for name in SCORES))


@dataclasses.dataclass
class DPOModelSection(ChatModelSection):
    """The policy, and the ``reference`` model DPO measures it against (by default the policy
    as it starts)."""

    reference: str | None = None


@dataclasses.dataclass
class DataSection(HeldOutData):
    """Preference pairs, each prompt + response at most ``max_length`` tokens (default 512, or
    the model's context when shorter), the prompt at most ``max_prompt_length`` (default half
    of it)."""

    max_length: int | None = None
    max_prompt_length: int | None = None

    def check(self) -> None:
        require(self, "train", "a JSONL or JSON file of preference pairs (prompt, chosen, "
                "rejected)")
        super().check()

    def fit(self, context: int) -> None:
        """Fill in the lengths left out; a pair must fit the model's ``context``."""
        if self.max_length is None:
            self.max_length = min(DEFAULT_MAX_LENGTH, context)
        if self.max_length > context:
            raise ConfigError(f"data.max_length {self.max_length} exceeds the model's context "
                              f"of {context}; set data.max_length: {context} or less")
        if self.max_prompt_length is None:
            self.max_prompt_length = self.max_length // 2


@dataclasses.dataclass
class DPOSection(Section):
    """The DPO loss: ``beta`` (how far the policy may move from its reference), ``loss_type``
    (sigmoid: DPO; ipo: IPO) and ``label_smoothing`` (the share of preferences assumed
    flipped, cDPO)."""

    beta: float = 0.1
    loss_type: Literal[LOSS_TYPES] = "sigmoid"
    label_smoothing: float = 0.0

    def check(self) -> None:
        check_dpo_settings(self.beta, self.label_smoothing, self.loss_type)


SECTIONS = {"dpo": {"model": DPOModelSection, "data": DataSection, "finetune": FinetuneSection,
                    "dpo": DPOSection},
            "reward": {"model": ChatModelSection, "data": DataSection,
                       "finetune": FinetuneSection}}


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
    from wxb.peft.strategy import apply_strategy, save_finetuned
    from wxb.train.memory import TrainingMemory

    run = Run(task, config, SECTIONS[task], log=log)
    model_section, data, finetune = run["model"], run["data"], run["finetune"]
    run.expect(METRICS)
    args = run.arguments({**TRAINING_DEFAULTS, **TASK_DEFAULTS[task]})

    if task == "dpo":
        model, tokenizer = load_chat_model(model_section.pretrained,
                                           model_section.chat_template, require_template=False)
    else:
        model, tokenizer = _load_reward_model(model_section)
    disable_dropout(model)
    data.fit(model.config.max_position_embeddings)
    run.log(f"model: {type(model).__name__}, {model.num_parameters():,} parameters")
    datasets = {}
    for name, pairs in data.read_splits(read_preferences).items():
        datasets[name] = encode_preferences(
            pairs, tokenizer, max_length=data.max_length,
            max_prompt_length=data.max_prompt_length, margins=task == "reward")
        run.log(f"{name}: {len(pairs):,} pairs, {datasets[name].truncated} cut to "
                f"{data.max_length} tokens")

    optimizers, callbacks = apply_strategy(model, finetune.method, args)
    pairwise: PairwiseModel = (DPOModel(model, **run["dpo"].to_dict()) if task == "dpo"
                               else RewardModel(model))
    trainer = run.trainer(pairwise, args, data_collator=PreferenceCollator(pad_id(tokenizer)),
                          compute_metrics=preference_metrics, optimizers=optimizers,
                          callbacks=callbacks)
    reference = None
    if isinstance(pairwise, DPOModel):
        reference = _add_reference(datasets, pairwise, model_section.reference, trainer,
                                   run.log)
    trainer.train_dataset, trainer.eval_dataset = datasets["train"], datasets["validation"]
    run.log(f"{model.num_parameters(trainable_only=True):,} parameters train "
            f"({finetune.strategy}); evaluating the starting point")
    before = trainer.evaluate()
    memory = TrainingMemory()
    memory.start(model)
    output = trainer.train(resume_from_checkpoint=resume)
    memory_mib = memory.report()  # before evaluation and saving, which take memory of their own

    after = trainer.evaluate()
    metrics = {**{k: after[k] for k in SCORES}, **{f"{k}_before": before[k] for k in SCORES}}
    for key in ("eval_rewards/accuracies", "eval_rewards/margins"):
        run.log(f"{key.removeprefix('eval_')} on held-out pairs: {before[key]:.4f} before, "
                f"{after[key]:.4f} after")
    saved = save_finetuned(model, tokenizer, run.output_dir / "model", finetune.method)
    return run.finish(
        metrics, trainer=trainer, output=output, model_dir=saved["model_dir"],
        adapter_dir=saved["adapter_dir"], memory_mib=memory_mib,
        examples={name: {"pairs": len(d), "truncated": d.truncated}
                  for name, d in datasets.items()},
        reference=reference)


def _load_reward_model(section: ChatModelSection) -> tuple[Any, Any]:
    """The model of ``section.pretrained`` with a one-number ``score`` head (new, unless the
    folder holds a reward model already) and its tokenizer."""
    from wxb.hub import from_pretrained, resolve
    from wxb.models.base import CONFIG_NAME, read_config_json
    from wxb.tokenizers.load import load_tokenizer

    folder = resolve(section.pretrained)
    tokenizer = load_tokenizer(folder)
    if section.chat_template is not None:
        tokenizer.chat_template = BUILTIN_TEMPLATES.get(section.chat_template,
                                                        section.chat_template)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is None:
        raise ConfigError(f"the tokenizer in {folder} has neither a pad nor an eos token; a "
                          "reward model reads each sequence at its last token before the "
                          "padding, so it needs one of them")
    architecture = head_architecture(read_config_json(folder / CONFIG_NAME).get("model_type"))
    model = from_pretrained(folder, architecture=architecture, num_labels=1,
                            pad_token_id=pad_id(tokenizer))
    return model, tokenizer


def _add_reference(datasets: dict[str, Any], dpo: DPOModel, reference_dir: str | None,
                   trainer: Any, log: Callable[[str], None]) -> str:
    """Put the reference's log-probabilities into every dataset, computed where the Trainer
    put the policy (and in its precision); return what the reference was: the model of
    ``reference_dir``, else the policy as it starts (with LoRA: with its adapters off)."""
    from wxb.peft.lora import disable_adapters, has_lora

    policy = dpo.model
    if reference_dir is not None:
        reference, _ = load_chat_model(reference_dir, require_template=False)
        if reference.config.vocab_size != policy.config.vocab_size:
            raise ConfigError(f"model.reference {reference_dir} has a vocabulary of "
                              f"{reference.config.vocab_size} tokens, the policy "
                              f"{policy.config.vocab_size}: both must read the same tokens")
        reference.to(trainer.device)
        context, source = nullcontext(), reference_dir
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
