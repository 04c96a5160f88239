"""The OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions,
/v1/embeddings, and vLLM's /tokenize and /detokenize (the audio routes, for a Whisper folder,
are in ``transcriptions``).

A generation request is validated (schemas), its prompt tokenized and checked against the
context, then each of its choices is submitted to the engine; the answer reads the choices'
deltas (choices.Choice) either all at once or as Server-Sent Events.

With retrieval (``wxb serve --rag INDEX``), a chat request's last user turn is searched for
first and the passages found are numbered [1]..[k] in a system message
(``wxb.rag.prompt.with_passages``); the answer carries where they came from as an extension
field, ``wxb_sources`` (streamed: on a last chunk with no choices, the usage chunk when asked
for).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from wxb.errors import WxbError
from wxb.serve.answers import (
    CompletionLogprobs,
    chat_logprobs,
    drain,
    event_stream,
    usage,
    wait_unless_gone,
)
from wxb.serve.choices import Choice, merged
from wxb.serve.engine import QueueFull, SamplingParams
from wxb.serve.schemas import (
    ApiError,
    ChatRequest,
    CompletionRequest,
    DetokenizeRequest,
    EmbeddingRequest,
    Message,
    Sampling,
    TokenizeRequest,
    check_limits,
    parse,
)
from wxb.serve.state import Served


def served(request: Request) -> Served:
    state: Served = request.app.state.served
    if state.status == "loading":
        raise ApiError(503, "the model is still loading; try again in a moment",
                       type="service_unavailable", code="model_loading",
                       headers={"Retry-After": "5"})
    if state.status != "ok":
        raise ApiError(503, f"the model could not be loaded: {state.error}",
                       type="service_unavailable", code="model_not_loaded")
    return state


def language_model(state: Served, name: str | None) -> None:
    if state.engine is None:
        serves = "transcription" if state.transcriber is not None else "embeddings"
        raise ApiError(404, f"this server serves no language model (only {serves})",
                       param="model", code="model_not_found")
    if name is not None and name != state.model_id:
        raise ApiError(404, f"The model `{name}` does not exist; this server serves "
                       f"`{state.model_id}`", param="model", code="model_not_found")


async def list_models(request: Request) -> dict[str, Any]:
    state = served(request)
    card = {"object": "model", "created": state.created, "owned_by": "wxb"}
    data = []
    if state.engine is not None:
        data.append({"id": state.model_id, **card, "root": state.settings.model,
                     "max_model_len": state.context})
    if state.transcriber is not None:
        data.append({"id": state.model_id, **card, "root": state.settings.model})
    if state.embedder is not None:
        data.append({"id": state.embedding_id, **card, "root": state.settings.embedding_model,
                     "max_model_len": state.embedder.max_length})
    return {"object": "list", "data": data}


# ----------------------------------------------------------------------------- prompts


async def chat_prompt(state: Served, messages: list[Message], *,
                      add_generation_prompt: bool = True,
                      add_special_tokens: bool = False) -> list[int]:
    """The conversation's ids through the tokenizer's chat template (whose text holds its
    special tokens already, so none are added unless asked)."""
    if state.tokenizer.chat_template is None:
        raise ApiError(400, f"the model {state.model_id} has no chat template, so it cannot "
                       "answer chat messages; use /v1/completions with a prompt",
                       param="messages")
    conversation = [m.as_template_input() for m in messages]

    def render() -> list[int]:
        text = state.tokenizer.apply_chat_template(
            conversation, add_generation_prompt=add_generation_prompt, tokenize=False)
        return state.tokenizer.encode(text, add_special_tokens=add_special_tokens)

    try:
        return await asyncio.to_thread(render)
    except WxbError as err:
        raise ApiError(400, str(err), param="messages") from None


def check_ids(state: Served, ids: list[int], param: str) -> None:
    if not ids:
        raise ApiError(400, "the prompt is empty after tokenization", param=param)
    bad = next((i for i in ids if not 0 <= i < state.vocab_size), None)
    if bad is not None:
        raise ApiError(400, f"token id {bad} is outside the vocabulary (0 to "
                       f"{state.vocab_size - 1})", param=param)


def token_budget(state: Served, ids: list[int], asked: int | None, default: int | None,
                 param: str) -> int:
    """max_tokens for a prompt: as asked (prompt + answer within the context) or the
    default (the rest of the context where ``default`` is None)."""
    room = state.context - len(ids)
    if asked is None:
        if room < 1:
            raise ApiError(400, f"the prompt is {len(ids)} tokens and fills the model's "
                           f"context of {state.context} tokens", param=param,
                           code="context_length_exceeded")
        return room if default is None else min(default, room)
    if asked > room:
        raise ApiError(400, f"the prompt ({len(ids)} tokens) plus max_tokens ({asked}) is "
                       f"more than the model's context of {state.context} tokens; lower "
                       "max_tokens or shorten the prompt", param="max_tokens",
                       code="context_length_exceeded")
    return asked


def choice_seed(seed: int | None, index: int) -> int | None:
    """Each choice's own seed, so one ``seed`` reproduces every choice of a request."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def submit(state: Served, body: Sampling, prompts: list[list[int]], budgets: list[int], *,
           logprobs: int | None, prompt_logprobs: int | None = None) -> list[Choice]:
    """One engine request per choice: prompt p's choices are indices p*n .. p*n + n - 1."""
    if len(prompts) * body.n > state.settings.max_queue:
        raise ApiError(400, f"this request asks for {len(prompts) * body.n} completions "
                       f"(prompts x n); this server takes at most {state.settings.max_queue} "
                       "at once", param="n")
    choices: list[Choice] = []
    try:
        for p, (ids, budget) in enumerate(zip(prompts, budgets, strict=True)):
            for j in range(body.n):
                params = SamplingParams(
                    max_tokens=budget, temperature=body.temperature, top_p=body.top_p,
                    top_k=max(body.top_k, 0), min_p=body.min_p,
                    repetition_penalty=body.repetition_penalty,
                    presence_penalty=body.presence_penalty,
                    frequency_penalty=body.frequency_penalty, seed=choice_seed(body.seed, j),
                    logprobs=logprobs, prompt_logprobs=prompt_logprobs,
                    stop_token_ids=tuple(sorted(state.eos_ids)))
                request = state.engine.submit(ids, params)
                choices.append(Choice(p * body.n + j, request, state.tokenizer,
                                      eos_ids=state.eos_ids, stop=body.stop))
    except QueueFull:
        for choice in choices:
            choice.request.cancel()
        raise ApiError(429, "the server is busy (its queue is full); retry shortly",
                       type="rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": "1"}) from None
    return choices


async def generation_request(request: Request, schema: type) -> tuple[Served, Any]:
    """The served state and the checked body of a chat or completion request: its fields,
    its limits (choices, stop strings) and the model it names."""
    state = served(request)
    body = parse(await request.body(), schema)
    limits = state.settings
    check_limits(body, max_n=limits.max_n, max_stop=limits.max_stop,
                 max_stop_length=limits.max_stop_length)
    language_model(state, body.model)
    return state, body


# ----------------------------------------------------------------------------- chat


async def with_retrieval(state: Served, messages: list[Message]
                         ) -> tuple[list[Message], list[dict[str, Any]]]:
    """The conversation with the passages retrieved for its last user turn in its system
    message, and their sources (texts included)."""
    from wxb.rag.prompt import with_passages

    turns = [m.as_template_input() for m in messages]
    query = next((t["content"] for t in reversed(turns) if t["role"] == "user"), None)
    if query is None or not query.strip():
        raise ApiError(400, "this server retrieves passages for the last user message, and "
                       "the conversation has none with text", param="messages")
    settings = state.settings
    try:
        result = await state.worker.call(
            lambda: state.retriever.search(query, settings.rag_k, settings.rag_method))
    except WxbError as err:
        raise ApiError(400, str(err), param="messages") from None
    turns, prompt = with_passages(turns, result.hits)
    return [Message.model_validate(t) for t in turns], prompt.sources


async def chat_completions(request: Request) -> Response:
    state, body = await generation_request(request, ChatRequest)
    messages, sources = body.messages, None
    if state.retriever is not None:
        messages, sources = await with_retrieval(state, body.messages)
    ids = await chat_prompt(state, messages)
    check_ids(state, ids, "messages")
    budget = token_budget(state, ids, body.token_limit, None, "messages")
    top = (body.top_logprobs or 0) if body.logprobs else None
    choices = submit(state, body, [ids], [budget], logprobs=top)
    head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
            "model": state.model_id}
    if body.stream:
        return event_stream(chat_chunks(state, body, choices, head, len(ids), sources))
    if not await wait_unless_gone(drain(choices), request):
        return Response(status_code=499)
    return JSONResponse({
        **head, "object": "chat.completion",
        "choices": [{"index": c.index, "message": {"role": "assistant", "content": c.text},
                     "logprobs": chat_logprobs(state, c.tokens) if top is not None else None,
                     "finish_reason": c.finish_reason} for c in choices],
        "usage": usage(len(ids), choices),
        **({"wxb_sources": sources} if sources is not None else {})})


async def chat_chunks(state: Served, body: ChatRequest, choices: list[Choice],
                      head: dict[str, Any], prompt_tokens: int,
                      sources: list[dict[str, Any]] | None = None) -> AsyncIterator[dict]:
    head = {**head, "object": "chat.completion.chunk"}
    extra = {"usage": None} if body.include_usage else {}

    def chunk(index: int, delta: dict, logprobs: dict | None = None,
              finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                     "finish_reason": finish}], **extra}

    for choice in choices:
        yield chunk(choice.index, {"role": "assistant", "content": ""})
    async for choice, delta in merged(choices):
        if delta.text or (body.logprobs and delta.tokens):
            yield chunk(choice.index, {"content": delta.text},
                        chat_logprobs(state, delta.tokens) if body.logprobs else None)
        if delta.finish_reason is not None:
            yield chunk(choice.index, {}, finish=delta.finish_reason)
    retrieved = {"wxb_sources": sources} if sources is not None else {}
    if body.include_usage:
        yield {**head, "choices": [], "usage": usage(prompt_tokens, choices), **retrieved}
    elif retrieved:
        yield {**head, "choices": [], **retrieved}


# ----------------------------------------------------------------------------- completions


async def completions(request: Request) -> Response:
    state, body = await generation_request(request, CompletionRequest)
    prompts, texts = [], []
    for prompt in body.prompt:
        if isinstance(prompt, str):
            ids = await asyncio.to_thread(state.tokenizer.encode, prompt)
        else:
            ids = prompt
        check_ids(state, ids, "prompt")
        prompts.append(ids)
        texts.append(prompt if isinstance(prompt, str) else state.tokenizer.decode(ids))
    # OpenAI's default for this route is 16 tokens.
    budgets = [token_budget(state, ids, body.max_tokens, 16, "prompt") for ids in prompts]
    scoring = body.logprobs if body.echo else None
    choices = submit(state, body, prompts, budgets, logprobs=body.logprobs,
                     prompt_logprobs=scoring)
    head = {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
            "created": int(time.time()), "model": state.model_id}
    prompt_tokens = sum(map(len, prompts))
    if body.stream:
        return event_stream(completion_chunks(state, body, choices, head, prompts, texts))
    if not await wait_unless_gone(drain(choices), request):
        return Response(status_code=499)
    answers = []
    for c in choices:
        p = c.index // body.n
        logprobs = None
        if body.logprobs is not None:
            build = CompletionLogprobs(state, 0 if body.echo else len(texts[p]))
            parts = [build.prompt(prompts[p], c.prompt_logprobs, texts[p])] if body.echo else []
            parts.append(build.tokens(c.tokens))
            logprobs = {key: [v for part in parts for v in part[key]] for key in parts[0]}
        answers.append({"index": c.index, "text": texts[p] + c.text if body.echo else c.text,
                        "logprobs": logprobs, "finish_reason": c.finish_reason})
    return JSONResponse({**head, "choices": answers, "usage": usage(prompt_tokens, choices)})


async def completion_chunks(state: Served, body: CompletionRequest, choices: list[Choice],
                            head: dict[str, Any], prompts: list[list[int]],
                            texts: list[str]) -> AsyncIterator[dict]:
    extra = {"usage": None} if body.include_usage else {}
    builders: dict[int, CompletionLogprobs] = {}

    def chunk(choice: Choice, text: str, logprobs: dict | None,
              finish: str | None) -> dict[str, Any]:
        return {**head, "choices": [{"index": choice.index, "text": text, "logprobs": logprobs,
                                     "finish_reason": finish}], **extra}

    for choice in choices:
        p = choice.index // body.n
        builders[choice.index] = CompletionLogprobs(state, 0 if body.echo else len(texts[p]))
    echoed: set[int] = set()
    async for choice, delta in merged(choices):
        build = builders[choice.index]
        if body.echo and choice.index not in echoed:
            # The prompt goes first; its scores came before the choice's first delta.
            echoed.add(choice.index)
            p = choice.index // body.n
            yield chunk(choice, texts[p], None if body.logprobs is None else
                        build.prompt(prompts[p], choice.prompt_logprobs, texts[p]), None)
        logprobs = None if body.logprobs is None else build.tokens(delta.tokens)
        yield chunk(choice, delta.text, logprobs, delta.finish_reason)
    if body.include_usage:
        yield {**head, "choices": [], "usage": usage(sum(map(len, prompts)), choices)}


# ----------------------------------------------------------------------------- embeddings


async def embeddings(request: Request) -> dict[str, Any]:
    state = served(request)
    body = parse(await request.body(), EmbeddingRequest)
    if state.embedder is None:
        raise ApiError(404, "this server serves no embedding model (start it with one)",
                       param="model", code="model_not_found")
    if body.model is not None and body.model != state.embedding_id:
        raise ApiError(404, f"The model `{body.model}` does not exist; this server embeds "
                       f"with `{state.embedding_id}`", param="model", code="model_not_found")
    embedder = state.embedder

    def embed() -> tuple[Any, int]:  # on the engine's thread, one batch at a time
        counted = embedder.tokenizer(body.input, truncation=True,
                                     max_length=embedder.max_length)["input_ids"]
        return embedder(body.input).numpy(), sum(map(len, counted))

    vectors, prompt_tokens = await state.worker.call(embed)
    if body.encoding_format == "base64":
        data = [base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
    else:
        data = [v.tolist() for v in vectors]
    return {"object": "list", "model": state.embedding_id,
            "data": [{"object": "embedding", "index": i, "embedding": e}
                     for i, e in enumerate(data)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}}


# ----------------------------------------------------------------------------- vLLM's extras


async def tokenize(request: Request) -> dict[str, Any]:
    state = served(request)
    body = parse(await request.body(), TokenizeRequest)
    language_model(state, body.model)
    if (body.prompt is None) == (body.messages is None):
        raise ApiError(400, "give either prompt or messages", param="prompt")
    if body.messages is not None:
        ids = await chat_prompt(state, body.messages,
                                add_generation_prompt=body.add_generation_prompt,
                                add_special_tokens=body.add_special_tokens is True)
    else:
        ids = await asyncio.to_thread(state.tokenizer.encode, body.prompt,
                                      add_special_tokens=body.add_special_tokens is not False)
    return {"count": len(ids), "max_model_len": state.context, "tokens": ids,
            "token_strs": None}


async def detokenize(request: Request) -> dict[str, str]:
    state = served(request)
    body = parse(await request.body(), DetokenizeRequest)
    language_model(state, body.model)
    if body.tokens:
        check_ids(state, body.tokens, "tokens")
    return {"prompt": state.tokenizer.decode(body.tokens)}


ROUTES = [("GET", "/v1/models", list_models),
          ("POST", "/v1/chat/completions", chat_completions),
          ("POST", "/v1/completions", completions),
          ("POST", "/v1/embeddings", embeddings),
          ("POST", "/tokenize", tokenize),
          ("POST", "/detokenize", detokenize)]


def add_routes(app: FastAPI) -> None:
    for method, path, endpoint in ROUTES:
        app.add_api_route(path, endpoint, methods=[method])
