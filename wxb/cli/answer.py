"""`wxb answer`: answer questions from a context with a trained question-answering folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wxb.errors import ConfigError, DataError


def answer(
    question: Annotated[list[str], typer.Argument(help="question(s) about the context",
                                                  show_default=False)],
    model: Annotated[str, typer.Option(
        help="the model folder of a question-answering run, e.g. runs/squad2-minilm/model")],
    context: Annotated[Path | None, typer.Option(
        help="a text file holding the context", show_default=False)] = None,
    context_text: Annotated[str | None, typer.Option(
        help="the context itself, instead of a file", show_default=False)] = None,
    top_k: Annotated[int, typer.Option(help="how many answers to print")] = 1,
    max_answer_len: Annotated[int, typer.Option(help="most tokens in an answer")] = 15,
    handle_impossible_answer: Annotated[bool, typer.Option(
        help="allow the empty answer (for models trained on SQuAD 2.0)")] = False,
) -> None:
    """Print the answer to each question and its score (the start x end probability).

    Example: wxb answer --model runs/squad2-minilm/model --context article.txt "Who ruled?"

    Example: wxb answer --model runs/qa/model --context-text "I live in Berlin." "Where?"
    """
    from wxb.tasks.question_answering.pipeline import QuestionAnswerer

    if (context is None) == (context_text is None):
        raise ConfigError("give the context as --context FILE or as --context-text TEXT "
                          "(one of them)")
    if context is not None:
        if not context.is_file():
            raise DataError(f"context file {context} does not exist")
        context_text = context.read_text(encoding="utf-8")
    qa = QuestionAnswerer(model)
    for asked in question:
        found = qa(question=asked, context=context_text, top_k=top_k,
                   max_answer_len=max_answer_len,
                   handle_impossible_answer=handle_impossible_answer)
        answers = found if isinstance(found, list) else [found]
        if len(question) > 1:
            print(f"Q: {asked}")
        for rank, a in enumerate(answers, 1):
            lead = f"{rank}. " if top_k > 1 else ""
            text = a["answer"] if a["answer"] else "(no answer)"
            print(f"{lead}{text}\t(score {a['score']:.4f}, characters {a['start']}-{a['end']})")
