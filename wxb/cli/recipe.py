"""`wxb recipe list` and `wxb recipe run NAME`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

recipe_app = typer.Typer(help="Run the course's experiments (YAML recipes).",
                         no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]})


@recipe_app.command("list")
def list_recipes() -> None:
    """List the bundled recipes with their task, description and expected result, then the
    tasks.

    Example: wxb recipe list
    """
    from wxb.recipes import DEFAULT_TASK, load_recipe, recipe_names

    for name in recipe_names():
        recipe = load_recipe(name)
        expected = recipe.get("expected") or {}
        goal = "; ".join(" ".join(f"{k} {v}" for k, v in e.items())
                         for e in (expected if isinstance(expected, list) else [expected]))
        print(f"{name:<20} [{recipe.get('task', DEFAULT_TASK)}] "
              f"{recipe.get('description', '').strip()[:60]}")
        if goal:
            print(f"{'':<20} expected: {goal}")
    print()
    tasks()


@recipe_app.command("tasks")
def tasks() -> None:
    """List the tasks a recipe (or `wxb train`, `wxb finetune`, `wxb.pipeline`) can name.

    Example: wxb recipe tasks
    """
    print(tasks_help())


def tasks_help() -> str:
    """The registry as lines: each task, what it does, whether it trains and serves."""
    from wxb.tasks import TASKS

    lines = ["tasks (train: a recipe's task; pipeline: wxb.pipeline(name, folder)):"]
    for task in TASKS.values():
        uses = "/".join(u for u, on in (("train", task.train), ("pipeline", task.pipeline))
                        if on)
        aliases = f" (also {', '.join(task.aliases)})" if task.aliases else ""
        lines.append(f"  {task.name:<18} {uses:<15} {task.summary}{aliases}")
    return "\n".join(lines)


@recipe_app.command("run")
def run(
    name: Annotated[str, typer.Argument(help="recipe name (see `wxb recipe list`)")],
    data_dir: Annotated[Path, typer.Option(help="folder the recipe's data paths start from")]
    = Path("../shared/data"),
    output_dir: Annotated[Path | None, typer.Option(help="default: runs/NAME")] = None,
    max_steps: Annotated[int | None, typer.Option(help="override the training steps")] = None,
    model: Annotated[str | None, typer.Option(
        help="fine-tuning recipes: another checkpoint folder or hub id")] = None,
) -> None:
    """Run a recipe and write runs/NAME/result.json with its metric and the expected value.

    Example: wxb recipe run shakespeare-char --data-dir ../shared/data

    Example: wxb recipe run clue-tnews --model bert-base-chinese
    """
    from wxb.recipes import run_recipe

    overrides = {}
    if max_steps:
        overrides["training"] = {"max_steps": max_steps}
    if model:
        overrides["model"] = {"pretrained": model}
    result = run_recipe(name, data_dir, output_dir, overrides or None, log=print)
    print(json.dumps({k: result[k] for k in ("recipe", "expected", "reported")
                      if k in result}, indent=2, ensure_ascii=False))
