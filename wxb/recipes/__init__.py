"""YAML recipes reproducing the course's experiments, each with the result it is expected to reach.

A recipe is a training config plus ``name``, ``description``, ``task``, ``expected: {metric,
at_least | at_most}`` and ``reported`` (what a measured run reached, and where). The task says
what trains it:

- ``classify`` (the default): a `wxb train` config, run by ``train_from_config``;
- ``causal-lm``: a pretraining config (corpus, tokenizer, GPT-2 or LLaMA), run by ``pretrain``;
  it may name ``sample_metrics`` computed on the model's sampled continuations;
- ``text-classify``: fine-tuning an encoder on labelled text, run by ``finetune``;
- ``bert-pretrain``: masked-LM + next-sentence pretraining, run by ``pretrain_bert``;
- ``pretrain-finetune``: both, then the same fine-tuning from random weights, run by
  ``pretrain_then_finetune`` (its ``pretrain`` and ``finetune`` sections are configs of the two);
- ``token-classify``: a tagger (NER) trained on CoNLL files, run by ``train_tagger``;
- ``translation``: Seq2Seq or the Transformer on sentence pairs, scored by BLEU, run by
  ``train_translation``;
- ``compare-finetune``: one fine-tuning config trained once per ``variants`` entry (full,
  LoRA, QLoRA, ...), each in its own process, compared on score, memory and time, run by
  ``compare_finetune`` (its ``pipeline``: text-classify, sft or dpo);
- ``sft``: supervised fine-tuning of a causal LM on chat data, run by ``train_sft``;
- ``dpo``: a causal LM trained on preference pairs with DPO, run by ``train_dpo``;
- ``reward``: a reward model trained on preference pairs, run by ``train_reward``.

``run_recipe(name, data_dir)`` runs one and writes ``runs/<name>/result.json``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from wxb.config import merge_config
from wxb.errors import ConfigError, DataError
from wxb.io import atomic_write_json
from wxb.train.from_config import SECTIONS, parse_config

# What `wxb train` trains when given no config.
DEFAULT_TRAIN_RECIPE = "digits-cnn"
TASKS = ("classify", "causal-lm", "text-classify", "bert-pretrain", "pretrain-finetune",
         "token-classify", "translation", "compare-finetune", "sft", "dpo", "reward")
# The data fields that name files (relative to the data folder).
DATA_FILES = ("path", "train", "validation", "test")

# One line of a Tang poem ends at a full-width comma, full stop, question or exclamation mark,
# or semicolon: "秦川雄帝宅，函谷壯皇居。" is two lines of five characters.
POEM_LINE_END = re.compile("[，。？！；]")


def recipe_names() -> list[str]:
    """The names of the bundled recipes, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def load_recipe(name: str) -> dict[str, Any]:
    """The bundled recipe ``name`` as a config dict.

    A recipe that ``extends`` another is that one's sections with its own laid over them (a
    GRU variant of an LSTM recipe names only ``model: {cell: gru}``; one with another model
    ``type`` gives its whole model section); its name, description, promise and reported
    numbers are its own.
    """
    if name not in recipe_names():
        raise ConfigError(f"unknown recipe {name!r}; the recipes are: {', '.join(recipe_names())}")
    resource = resources.files(__name__) / f"{name}.yaml"
    recipe = parse_config(resource.read_text(encoding="utf-8"), f"recipe {name}")
    base_name = recipe.pop("extends", None)
    if base_name is None:
        return recipe
    if base_name == name:
        raise ConfigError(f"recipe {name} extends itself")
    base = load_recipe(base_name)
    base_type = (base.get("model") or {}).get("type")
    if (recipe.get("model") or {}).get("type", base_type) != base_type:
        base.pop("model")  # another family's fields would not fit: the recipe's model alone
    own = ("name", "description", "expected", "reported")
    return merge_config({k: v for k, v in base.items() if k not in own}, recipe)


def default_train_config() -> dict[str, Any]:
    """The model, data and training sections of the default recipe, without its name and promise.

    Flags laid over it (another model, fewer steps) would make the recipe's name and expected
    result untrue, so only the sections are kept.
    """
    recipe = load_recipe(DEFAULT_TRAIN_RECIPE)
    return {section: recipe[section] for section in SECTIONS if section in recipe}


def is_regular_poem(body: str) -> bool:
    """Whether every line of ``body`` has 5 characters, or every line has 7 (at least two lines).

    Those are the regular forms of Tang verse (五言 and 七言). Text after the last line end is an
    unfinished line and counts as a line, so a poem cut off mid-line is not regular.
    """
    lines = POEM_LINE_END.split(body.strip())
    if lines and lines[-1] == "":
        lines.pop()
    return len(lines) >= 2 and (all(len(line) == 5 for line in lines)
                                or all(len(line) == 7 for line in lines))


def regular_poem_share(poems: list[str]) -> float:
    """The share of ``poems`` (bodies, or ``title：body``) whose lines all have 5 or all 7
    characters; 0.0 for no poems."""
    if not poems:
        return 0.0
    return sum(is_regular_poem(p.split("：", 1)[-1]) for p in poems) / len(poems)


# What a causal-lm recipe's ``sample_metrics`` may name.
SAMPLE_METRICS: dict[str, Callable[[list[str]], float]] = {
    "regular_poem_share": regular_poem_share,
}


def run_recipe(name: str, data_dir: str | Path | None = None,
               output_dir: str | Path | None = None, overrides: dict[str, Any] | None = None,
               *, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the recipe ``name`` and return its result (also written to ``result.json``).

    ``data_dir`` is the folder that the recipe's relative data paths start from (the shared
    data folder, e.g. ``../shared/data``); ``output_dir`` defaults to ``runs/<name>``;
    ``overrides`` is a nested mapping laid over the recipe, e.g. ``{"training": {"max_steps":
    20}}`` (a model of another ``type`` replaces the recipe's model section). The result
    carries ``expected`` (with the measured value and whether it was met) and the recipe's
    ``reported`` numbers.
    """
    recipe = load_recipe(name)
    overrides = overrides or {}
    new_type = (overrides.get("model") or {}).get("type")
    if new_type is not None and new_type != (recipe.get("model") or {}).get("type"):
        # Fields of another family would not fit the new one: start from its defaults.
        recipe.pop("model", None)
    recipe = merge_config(recipe, overrides)
    task = recipe.get("task", "classify")
    if task not in TASKS:
        raise ConfigError(f"recipe {name}: unknown task {task!r}; choose one of: "
                          f"{', '.join(TASKS)}")
    output_dir = Path("runs") / name if output_dir is None else Path(output_dir)
    if task != "pretrain-finetune":
        recipe["training"] = {**(recipe.get("training") or {}), "output_dir": str(output_dir)}
    for config in (recipe, recipe.get("pretrain"), recipe.get("finetune")):
        if isinstance(config, dict) and isinstance(config.get("data"), dict):
            config["data"] = _resolve_data(config["data"], data_dir, name)
    if task == "classify":
        from wxb.train.from_config import train_from_config

        result = train_from_config(recipe)
    elif task == "text-classify":
        from wxb.train.finetune import finetune

        _check_earlier_run(recipe, name)

        result = finetune(recipe, log=log)
    elif task == "bert-pretrain":
        from wxb.train.pretrain_bert import pretrain_bert

        result = pretrain_bert(recipe, log=log)
    elif task == "pretrain-finetune":
        from wxb.train.pretrain_bert import pretrain_then_finetune

        result = pretrain_then_finetune(recipe, output_dir, log=log)
    elif task == "token-classify":
        from wxb.train.tagging import train_tagger

        result = train_tagger(recipe, log=log)
    elif task == "compare-finetune":
        from wxb.train.compare import compare_finetune

        _check_earlier_run(recipe, name)
        result = compare_finetune(recipe, log=log)
    elif task == "sft":
        from wxb.train.sft import train_sft

        _check_earlier_run(recipe, name)
        result = train_sft(recipe, log=log)
    elif task in ("dpo", "reward"):
        from wxb.train.dpo import train_dpo, train_reward

        _check_earlier_run(recipe, name)
        result = (train_dpo if task == "dpo" else train_reward)(recipe, log=log)
    elif task == "translation":
        from wxb.train.translate import train_translation

        result = train_translation(recipe, log=log)
    else:
        from wxb.train.pretrain import pretrain

        metric_names = recipe.pop("sample_metrics", None) or []
        unknown = sorted(set(metric_names) - set(SAMPLE_METRICS))
        if unknown:
            raise ConfigError(f"recipe {name}: unknown sample metric {unknown[0]!r}; known: "
                              f"{', '.join(SAMPLE_METRICS)}")
        result = pretrain(recipe, log=log,
                          sample_metrics={m: SAMPLE_METRICS[m] for m in metric_names})
    result = {"recipe": name, **result, "reported": recipe.get("reported")}
    atomic_write_json(output_dir / "result.json", result)
    return result


def _check_earlier_run(recipe: dict[str, Any], name: str) -> None:
    """A model that another recipe makes (``runs/<recipe>/...``) must exist: say which recipe
    to run first, or that ``--model`` picks another."""
    model = str((recipe.get("model") or {}).get("pretrained", ""))
    parts = Path(model).parts
    if len(parts) > 1 and parts[0] == "runs" and not Path(model).is_dir():
        raise ConfigError(f"recipe {name} fine-tunes {model}, which does not exist yet: run "
                          f"`wxb recipe run {parts[1]}` first, or give another checkpoint "
                          f"with --model")


def _resolve_data(data: dict[str, Any], data_dir: str | Path | None,
                  name: str) -> dict[str, Any]:
    """A data section with its file paths (and those of its ``documents``) made to start
    from ``data_dir``."""
    data = {**data, **{key: _resolve(data[key], data_dir, name)
                       for key in DATA_FILES if data.get(key) is not None}}
    if isinstance(data.get("documents"), list):
        data["documents"] = [{**doc, "path": _resolve(doc["path"], data_dir, name)}
                             if isinstance(doc, dict) and "path" in doc else doc
                             for doc in data["documents"]]
    return data


def _resolve(paths: str | list[str], data_dir: str | Path | None, name: str) -> str | list[str]:
    """Relative data paths start from ``data_dir``; say which folder to give when one is
    missing."""
    def one(path: str) -> str:
        full = Path(data_dir or ".") / path
        if not full.is_file():
            raise DataError(f"recipe {name}: data file {full} does not exist; pass the folder "
                              f"that holds {path} as data_dir (wxb recipe run {name} "
                              "--data-dir DIR)")
        return str(full)

    return [one(p) for p in paths] if isinstance(paths, list) else one(paths)
