"""`wxb demo`: run the first chapters end to end and print what each model reached."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def demo(
    output_dir: Annotated[Path, typer.Option(help="where each run's result.json and loss "
                                                  "curve go")] = Path("runs/demo"),
    gpt_seconds: Annotated[float, typer.Option(help="training time of the language model")]
    = 120,
) -> None:
    """Run the demo: a NumPy MLP learns XOR, an MLP and a CNN learn the 8x8 digits, a small
    GPT-2 learns Python's help text, then writes with greedy, top-k and top-p decoding, and a
    real chat model (SmolLM2, when installed) answers an English and a Chinese question.

    Needs no download and takes about three minutes on a laptop.
    Each run writes result.json and loss_curve.png under the output dir.

    Example: wxb demo --output-dir runs/demo
    """
    from wxb.demo import run_demo

    console = Console()
    summary = run_demo(output_dir, gpt_seconds=gpt_seconds,
                       log=lambda line: console.print(f"[bold]>[/] {escape(line)}",
                                                      highlight=False))
    table = Table(title="wxb demo")
    for column in ("run", "accuracy", "expected", "parameters", "wall time"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for run in summary["runs"]:
        mark = "[green]ok[/]" if run["met"] else "[red]missed[/]"
        table.add_row(run["name"], f"{run['value']:.2%}", f">= {run['at_least']:.0%} {mark}",
                      f"{run['num_parameters']:,}", f"{run['wall_time_s']:.1f} s")
    console.print(table)
    gpt = summary["gpt"]
    console.print(f"\n[bold]{escape(gpt['description'])}[/]: {gpt['num_parameters']:,} "
                  f"parameters, {gpt['steps']} steps, validation loss {gpt['eval_loss']:.3f}")
    for sample in gpt["samples"]:
        console.print(f"[bold]{sample['strategy']:>6}[/] | {escape(sample['prompt'])}"
                      f"{escape(sample['continuation'])}", highlight=False, soft_wrap=True)
    # Full paths on lines of their own, so they can be copied (a table cell would cut them).
    console.print("loss curves:", highlight=False)
    for run in [*summary["runs"], gpt]:
        console.print(f"  {run['loss_curve']}", highlight=False, soft_wrap=True)
    chat = summary["chat"]
    if chat is not None:
        console.print(f"\n[bold]{escape(Path(chat['model']).name)}[/] (a real chat model, "
                      "offline):", highlight=False)
        for turn in chat["answers"]:
            console.print(f"  you> {escape(turn['question'])}\n  model> "
                          f"{escape(turn['answer'])}", highlight=False, soft_wrap=True)
    model_dir = gpt["model_dir"]
    console.print("\nserve the demo's model over the OpenAI API (a playground at /):",
                  highlight=False)
    console.print(f"  wxb serve --model {model_dir}", highlight=False, soft_wrap=True)
    console.print("  curl http://127.0.0.1:8000/v1/completions -H 'Content-Type: "
                  "application/json' -d '{\"model\": \"model\", \"prompt\": \"The \", "
                  "\"max_tokens\": 40}'", highlight=False, soft_wrap=True)
    console.print(f"total wall time {summary['wall_time_s']:.1f} s; summary in "
                  f"{Path(output_dir) / 'summary.json'}", highlight=False)
    if not summary["all_met"]:
        console.print("[red]a run missed its expected accuracy[/]")
        raise typer.Exit(1)
