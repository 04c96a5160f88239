"""One choice of a completion: the engine's token events -> pieces of text.

    Token -> (an end-of-sequence id: no text) -> TextStreamer (never splits a character)
          -> the text so far -> a stop string in it? cut before it, cancel the request
          -> hold back a tail that could still begin a stop string -> a Delta to send

Streaming and non-streaming answers both read a choice through this, so their text, their
finish reason and their token count are the same by construction.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Collection
from typing import Any

from wxb.generation.streamer import TextStreamer
from wxb.serve.engine import Finished, PromptLogprobs, Request, Token


class GenerationError(Exception):
    """The engine ended a request with an error (the answer is a 500)."""


@dataclasses.dataclass
class Delta:
    """A piece of new text and the tokens it came from (their logprobs go with it)."""

    text: str
    tokens: list[Token]
    finish_reason: str | None = None


class Choice:
    """Read ``request``'s events with ``deltas()``; afterwards ``text``, ``tokens`` (every
    token counted, the end-of-sequence one included) and ``finish_reason`` hold the answer."""

    def __init__(self, index: int, request: Request, tokenizer: Any, *,
                 eos_ids: Collection[int], stop: list[str]) -> None:
        self.index, self.request = index, request
        self.streamer = TextStreamer(tokenizer, skip_special_tokens=True)
        self.eos_ids, self.stop = eos_ids, stop
        self.longest_stop = max(map(len, stop), default=0)
        self.text = ""
        self.sent = 0  # characters of text handed out in deltas
        self.tokens: list[Token] = []
        self.pending: list[Token] = []  # tokens whose text is not handed out yet
        self.prompt_logprobs: PromptLogprobs | None = None
        self.finish_reason: str | None = None

    async def deltas(self) -> AsyncIterator[Delta]:
        async for event in self.request.events():
            if isinstance(event, PromptLogprobs):
                self.prompt_logprobs = event
            elif isinstance(event, Token):
                if self.finish_reason is not None:
                    continue  # generated after a stop string, before the cancel took effect
                self.tokens.append(event)
                self.pending.append(event)
                if event.id not in self.eos_ids:
                    self.text += self.streamer.put(event.id)
                delta = self._advance(None)
                if delta is not None:
                    yield delta
            elif isinstance(event, Finished):
                if self.finish_reason is not None:
                    return
                if event.error is not None:
                    raise GenerationError(event.error)
                if event.reason == "abort":
                    raise GenerationError("the generation was cancelled")
                self.text += self.streamer.end()
                yield self._advance(event.reason)
                return

    def _advance(self, finish: str | None) -> Delta | None:
        """The delta the text now allows: up to a stop string (then the choice is done), else
        all but a tail that may begin one; ``finish`` closes the choice with that reason."""
        cut = min((i for i in (self.text.find(s, self.sent) for s in self.stop) if i >= 0),
                  default=-1)
        if cut >= 0:
            self.text, self.finish_reason = self.text[:cut], "stop"
            self.request.cancel()
            return self._delta(cut)
        if finish is not None:
            self.finish_reason = finish
            return self._delta(len(self.text))
        end = len(self.text) - self._held_back()
        return self._delta(end) if end > self.sent else None

    def _held_back(self) -> int:
        """How many final characters could be the start of a stop string."""
        for size in range(min(self.longest_stop - 1, len(self.text) - self.sent), 0, -1):
            tail = self.text[-size:]
            if any(s.startswith(tail) for s in self.stop):
                return size
        return 0

    def _delta(self, end: int) -> Delta:
        delta = Delta(self.text[self.sent:end], self.pending, self.finish_reason)
        self.sent, self.pending = end, []
        return delta


async def merged(choices: list[Choice]) -> AsyncIterator[tuple[Choice, Delta]]:
    """Every choice's deltas as they come; leaving early (an error, the client gone) cancels
    every request, so their slots in the batch are freed at the next step."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(choice: Choice) -> None:
        try:
            async for delta in choice.deltas():
                queue.put_nowait((choice, delta))
        except Exception as err:
            queue.put_nowait((choice, err))
        finally:
            queue.put_nowait((choice, None))

    tasks = [asyncio.create_task(pump(choice)) for choice in choices]
    try:
        running = len(tasks)
        while running:
            choice, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield choice, item
    finally:
        for choice, task in zip(choices, tasks, strict=True):
            choice.request.cancel()
            task.cancel()
