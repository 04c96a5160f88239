"""`wxb mcp`: a model's uses as Model Context Protocol tools, for any MCP client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from wxb.errors import ConfigError

DEFAULT_PORT = 8000


def mcp(
    model: Annotated[str | None, typer.Option(
        help="a model folder or .gguf file: a causal LM, classifier, tagger, translator, "
             "summarizer or encoder (default: as wxb serve's)", show_default=False)] = None,
    embedder: Annotated[Path | None, typer.Option(
        help="an encoder folder (e.g. all-MiniLM-L6-v2) for the embed tool and searching",
        show_default=False)] = None,
    index: Annotated[Path | None, typer.Option(
        help="an index folder made by wxb rag index, for the search tool",
        show_default=False)] = None,
    http: Annotated[bool, typer.Option(
        "--http", help="serve streamable HTTP on 127.0.0.1 instead of stdio")] = False,
    port: Annotated[int | None, typer.Option(
        help=f"with --http: the TCP port (default: {DEFAULT_PORT})", show_default=False)] = None,
) -> None:
    """Serve a model over the Model Context Protocol: tools generate, chat, classify, tag,
    translate, summarize (as the folder is), embed, search, tokenize, count_parameters, and
    resources wxb://model/config and wxb://model/card. Over stdio an MCP client starts this
    command itself (register it in the client's mcpServers configuration).

    Example: wxb mcp --model runs/sft-chat-zh/model --embedder all-MiniLM-L6-v2 --index faq

    Example: wxb mcp --model runs/news-t5/model --http --port 8765
    """
    from wxb.tasks.causal_lm.pipeline import default_chat_model

    if port is not None and not http:
        raise ConfigError("--port is the HTTP port: give --http too (stdio needs no port)")
    if http:
        from wxb.cli.serve import _check_port

        _check_port("127.0.0.1", port or DEFAULT_PORT)
    if model is None:
        model = str(default_chat_model())
        print(f"wxb mcp: no --model given, serving {model}", file=sys.stderr)

    from wxb.serve.mcp import build_server, serve

    server = build_server(model, embedder, index)
    # stdout is the protocol's channel under stdio: every line for people goes to stderr.
    where = f"http://127.0.0.1:{port or DEFAULT_PORT}/mcp" if http else "stdio"
    print(f"wxb mcp: {server.tools.describe()} Serving on {where}.", file=sys.stderr,
          flush=True)
    serve(server, http=http, port=port or DEFAULT_PORT)
