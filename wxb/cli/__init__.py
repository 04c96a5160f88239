"""The `wxb` command: one module per subcommand, parsing and printing only.

Bad input surfaces as a ``WxbError`` from the library; ``main`` prints it as the single line
``wxb: error: <message>`` on stderr and exits with status 2, never with a traceback.
"""

from __future__ import annotations

import sys

import typer

from wxb.cli import (
    align,
    answer,
    convert,
    demo,
    finetune,
    generate,
    mcp,
    params,
    rag,
    recipe,
    serve,
    summarize,
    tokenize,
    train,
    transcribe,
    translate,
    vectors,
    version,
)
from wxb.errors import WxbError
from wxb.tasks import TASKS

app = typer.Typer(
    name="wxb",
    help="wxb: from Wx+b to LLaMA, every model of deep learning for language from scratch.",
    epilog=f"Tasks: {', '.join(TASKS)} (what each does: wxb recipe tasks).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("version")(version.version)
app.command("demo", no_args_is_help=False)(demo.demo)
app.command("train", no_args_is_help=False)(train.train)
app.command("finetune", no_args_is_help=True)(finetune.finetune)
app.command("tokenize")(tokenize.tokenize)
app.command("params")(params.params)
app.command("convert")(convert.convert)
app.command("generate")(generate.generate)
app.command("chat")(generate.chat)
app.command("translate")(translate.translate)
app.command("answer")(answer.answer)
app.command("summarize")(summarize.summarize)
app.command("transcribe")(transcribe.transcribe)
app.command("serve")(serve.serve)
app.command("mcp")(mcp.mcp)
app.add_typer(tokenize.tokenizer_app, name="tokenizer")
app.add_typer(recipe.recipe_app, name="recipe")
app.add_typer(align.align_app, name="align")
app.add_typer(rag.rag_app, name="rag")
app.add_typer(vectors.vectors_app, name="vectors")


def main(argv: list[str] | None = None) -> None:
    """Run the `wxb` command line (``argv`` defaults to ``sys.argv[1:]``)."""
    try:
        app(args=argv, prog_name="wxb")
    except WxbError as err:
        if _is_interrupt(err):
            # Not bad input: the message says where the checkpoint is and how to resume.
            print(err, file=sys.stderr)
            sys.exit(130)
        print(f"wxb: error: {err}", file=sys.stderr)
        sys.exit(2)


def _is_interrupt(err: WxbError) -> bool:
    """Whether ``err`` is the Trainer's TrainingInterrupted.

    Only a loaded Trainer raises it; looking it up in ``sys.modules`` keeps torch from loading
    for commands that never train (``wxb --help`` stays fast).
    """
    trainer = sys.modules.get("wxb.train.trainer")
    return trainer is not None and isinstance(err, trainer.TrainingInterrupted)
