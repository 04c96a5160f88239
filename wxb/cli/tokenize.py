"""`wxb tokenize` and `wxb tokenizer train`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

tokenizer_app = typer.Typer(help="Train tokenizers.", no_args_is_help=True,
                            context_settings={"help_option_names": ["-h", "--help"]})


def tokenize(
    text: Annotated[str, typer.Argument(help="the text to encode")],
    tokenizer: Annotated[Path, typer.Option(help="tokenizer folder (wxb or Hugging Face)")],
    pair: Annotated[str | None, typer.Option(help="a second text, as for BERT pairs")] = None,
    special: Annotated[bool, typer.Option("--special/--no-special",
                                          help="add the special tokens")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Print the tokens and ids of TEXT.

    Example: wxb tokenize --tokenizer runs/tok "Hello, world!"
    """
    from wxb.tokenizers import load_tokenizer

    tok = load_tokenizer(tokenizer)
    encoding = tok(text, pair, add_special_tokens=special, return_offsets_mapping=True)
    ids = encoding["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    if as_json:
        print(json.dumps({"tokens": tokens, "ids": ids,
                          "offsets": encoding["offset_mapping"]}, ensure_ascii=False))
        return
    print(f"{len(ids)} tokens")
    for token, index, (start, end) in zip(tokens, ids, encoding["offset_mapping"], strict=True):
        print(f"{index:>8}  {token!r:<20} {text[start:end]!r}" if end > start
              else f"{index:>8}  {token!r}")


@tokenizer_app.command("train")
def train(
    corpus: Annotated[list[Path], typer.Argument(help="UTF-8 text file(s)")],
    out: Annotated[Path, typer.Option(help="folder to write the tokenizer to")],
    kind: Annotated[str, typer.Option(help="bpe, wordpiece, unigram (T5's), char or "
                                           "word")] = "bpe",
    vocab_size: Annotated[int, typer.Option(help="vocabulary size (bpe, wordpiece, unigram; "
                                                 "a maximum for char and word)")] = 4096,
    min_frequency: Annotated[int, typer.Option(help="drop rarer tokens/pairs")] = 2,
    segmenter: Annotated[str, typer.Option(help="word: whitespace or jieba")] = "whitespace",
    fast: Annotated[bool, typer.Option(help="bpe: train with the tokenizers library")] = False,
    extra_ids: Annotated[int, typer.Option(help="unigram: <extra_id_*> sentinels after the "
                                                "pieces")] = 100,
) -> None:
    """Train a tokenizer on text files and save it.

    Example: wxb tokenizer train --kind bpe --vocab-size 4096 corpus.txt --out runs/tok
    """
    import time

    from wxb.tokenizers.train import train_tokenizer

    start = time.perf_counter()
    tok = train_tokenizer(kind, corpus, vocab_size=vocab_size, min_frequency=min_frequency,
                          segmenter=segmenter, fast=fast, extra_ids=extra_ids)
    tok.save(out)
    print(f"{kind} tokenizer, {tok.vocab_size:,} tokens, trained in "
          f"{time.perf_counter() - start:.1f} s, saved to {out}")
