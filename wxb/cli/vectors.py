"""`wxb vectors neighbors | analogy`: nearest words and analogies in word2vec / GloVe vectors."""

from __future__ import annotations

from typing import Annotated

import typer

vectors_app = typer.Typer(help="Query word vectors (word2vec / GloVe files, or glove-6b-50d): "
                               "nearest neighbours and analogies.",
                          no_args_is_help=True,
                          context_settings={"help_option_names": ["-h", "--help"]})

Vectors = Annotated[str, typer.Argument(
    help="a word2vec (text or binary) or GloVe file, or the name glove-6b-50d",
    show_default=False)]
Restrict = Annotated[int | None, typer.Option(
    "--restrict", min=1, help="rank only the first N words (the N most frequent)",
    show_default=False)]


def _print_table(rows: list[tuple[str, float]]) -> None:
    width = max([len("word"), *(len(word) for word, _ in rows)])
    print(f"{'word':<{width}}  {'cosine':>7}")
    for word, cosine in rows:
        print(f"{word:<{width}}  {cosine:>7.4f}")


@vectors_app.command("neighbors", no_args_is_help=True)
def neighbors(
    vectors: Vectors,
    word: Annotated[str, typer.Argument(help="the word to look around", show_default=False)],
    topn: Annotated[int, typer.Option(min=1, help="how many neighbours")] = 10,
    restrict: Restrict = None,
) -> None:
    """The words nearest to WORD by cosine similarity.

    Example: wxb vectors neighbors glove-6b-50d frog

    Example: wxb vectors neighbors vectors.bin python --topn 5 --restrict 50000
    """
    from wxb.data.vectors import WordVectors

    loaded = WordVectors.load(vectors)
    _print_table(loaded.most_similar(word, topn=topn, restrict_vocab=restrict))


@vectors_app.command("analogy", no_args_is_help=True)
def analogy(
    vectors: Vectors,
    a: Annotated[str, typer.Argument(help="the word to start from (king)", show_default=False)],
    b: Annotated[str, typer.Argument(help="the word to subtract (man)", show_default=False)],
    c: Annotated[str, typer.Argument(help="the word to add (woman)", show_default=False)],
    topn: Annotated[int, typer.Option(min=1, help="how many answers")] = 5,
    restrict: Restrict = None,
) -> None:
    """The words nearest to A − B + C (the query words left out).

    Example: wxb vectors analogy glove-6b-50d king man woman --restrict 100000   (queen)
    """
    from wxb.data.vectors import WordVectors

    loaded = WordVectors.load(vectors)
    _print_table(loaded.analogy(a, b, c, topn=topn, restrict_vocab=restrict))
