"""How a generation is answered: all at once (waiting, unless the client leaves) or as
Server-Sent Events, with usage and logprobs in OpenAI's two formats (chat's ``content`` list
and the legacy completions' ``tokens`` / ``token_logprobs`` / ``top_logprobs`` /
``text_offset``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from wxb.serve.choices import Choice, GenerationError, merged
from wxb.serve.engine import PromptLogprobs, Token
from wxb.serve.schemas import ApiError
from wxb.serve.state import Served

LOWEST_LOGPROB = -9999.0  # OpenAI's stand-in for a log-probability too low to write


def usage(prompt_tokens: int, choices: list[Choice]) -> dict[str, int]:
    completion = sum(len(c.tokens) for c in choices)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion}


def server_error(err: GenerationError) -> ApiError:
    return ApiError(500, f"the generation failed: {err}", type="server_error")


async def wait_unless_gone(work: Awaitable[Any], request: Request) -> bool:
    """Run ``work``; False (and ``work`` cancelled) if the client disconnects first."""

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    task, watcher = asyncio.ensure_future(work), asyncio.ensure_future(gone())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # the choices cancel their requests as they close
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return False
    try:
        task.result()
    except GenerationError as err:
        raise server_error(err) from None
    return True


async def drain(choices: list[Choice]) -> None:
    async for _ in merged(choices):
        pass


def event_stream(events: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def lines() -> AsyncIterator[str]:
        try:
            async for event in events:
                yield f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
        except GenerationError as err:
            yield f"data: {json.dumps(server_error(err).body(), ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def logprob(value: float) -> float:
    return value if value > LOWEST_LOGPROB else LOWEST_LOGPROB  # also catches NaN


def chat_logprobs(state: Served, tokens: list[Token]) -> dict[str, Any]:
    def entry(token_id: int, value: float) -> dict[str, Any]:
        text = state.token_text(token_id)
        return {"token": text, "logprob": logprob(value), "bytes": list(text.encode())}

    return {"content": [{**entry(t.id, t.logprob),
                         "top_logprobs": [entry(i, v) for i, v in t.top or []]}
                        for t in tokens]}


class CompletionLogprobs:
    """The legacy ``logprobs`` object for one choice, built piece by piece (streaming)
    or at once; ``text_offset`` counts characters of the prompt + completion text."""

    def __init__(self, state: Served, offset: int) -> None:
        self.state, self.offset = state, offset

    def __call__(self, entries: list[tuple[int, float | None, list | None]]) -> dict[str, Any]:
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                "text_offset": []}
        for token_id, value, top in entries:
            text = self.state.token_text(token_id)
            out["tokens"].append(text)
            out["text_offset"].append(self.offset)
            if token_id not in self.state.eos_ids:  # an end-of-sequence token has no text
                self.offset += len(text)
            out["token_logprobs"].append(None if value is None else logprob(value))
            if value is None:
                out["top_logprobs"].append(None)
                continue
            alternatives: dict[str, float] = {}
            for other, other_value in top or []:
                alternatives.setdefault(self.state.token_text(other), logprob(other_value))
            alternatives.setdefault(text, logprob(value))  # the chosen token is always listed
            out["top_logprobs"].append(alternatives)
        return out

    def prompt(self, ids: list[int], scored: PromptLogprobs | None, text: str) -> dict:
        """The echoed prompt's tokens (``text``); the completion's offsets follow it."""
        scored = scored or PromptLogprobs([None] * len(ids), [None] * len(ids))
        out = self(list(zip(ids, scored.logprobs, scored.top, strict=True)))
        self.offset = len(text)
        return out

    def tokens(self, tokens: list[Token]) -> dict[str, Any]:
        return self([(t.id, t.logprob, t.top) for t in tokens])
