"""Continuous batching: one decoding loop over every active request.

    waiting queue (bounded) -> the requests joining prefilled together (left-padded)
      -> their caches join the batch
      -> every step: one forward pass of all active rows (their last token each)
      -> each row sampled with its own settings and generator -> events to its stream
      -> a finished or cancelled row leaves the batch at the token boundary

The batch's KV cache is left-padded (``wxb.serve.batch``): rows of different lengths share one
tensor per layer, the padding masked, so a greedy answer under concurrency is token-identical
to the same request served alone.

The loop runs in a thread of its own (torch releases the GIL in its kernels); requests come in
from the HTTP server's event loop through ``submit`` and their tokens go back to it through
``loop.call_soon_threadsafe``. Every other piece of torch work of the server (loading the
model, embeddings) runs on the same thread through ``call``: each thread that runs torch
operators gets an OpenMP pool of its own, and once libgomp manages more threads than there are
CPUs it stops spin-waiting, so every small operator of a decoding step waits for its workers to
wake (measured on 2 cores, a 10M-parameter LLaMA: 1.9 ms a step with one pool, 7.0 ms when a
second thread had run torch work before).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import torch

from wxb.generation.config import GenerationConfig
from wxb.generation.logits import build_processors
from wxb.serve.batch import BatchCache


class QueueFull(Exception):
    """The waiting queue holds ``max_queue`` requests already: the server answers 429."""


@dataclasses.dataclass
class SamplingParams:
    """How one request decodes (OpenAI's fields, and vLLM's extensions top_k, min_p and
    repetition_penalty). ``temperature`` 0 is greedy. ``logprobs``: how many alternatives per
    generated token to report with its own log-probability (None: none); ``prompt_logprobs``
    the same for the prompt's tokens (echo). ``seed`` makes sampling reproducible."""

    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    stop_token_ids: tuple[int, ...] = ()


@dataclasses.dataclass
class Token:
    """One generated token: its id, its log-probability under the model (log-softmax of the raw
    logits) and, when asked, the ``top`` alternatives as (id, log-probability)."""

    id: int
    logprob: float
    top: list[tuple[int, float]] | None = None


@dataclasses.dataclass
class PromptLogprobs:
    """The prompt's tokens scored by the model: ``logprobs[i]`` of token i given the ones
    before it (None for the first), ``top[i]`` its alternatives."""

    logprobs: list[float | None]
    top: list[list[tuple[int, float]] | None]


@dataclasses.dataclass
class Finished:
    """The end of a request: ``reason`` "stop" (an end-of-sequence token), "length"
    (max_tokens) or "abort" (cancelled, or ``error``)."""

    reason: str
    error: str | None = None


class Request:
    """One request's state: prompt, settings, generator, tokens so far, and the stream of
    events the HTTP side reads (``events``)."""

    ids = itertools.count()

    def __init__(self, prompt_ids: list[int], params: SamplingParams,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.id = next(self.ids)
        self.prompt_ids, self.params = list(prompt_ids), params
        self.output_ids: list[int] = []
        self.queue: asyncio.Queue = asyncio.Queue()
        self.loop = loop
        self.cancelled = False
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        seed = params.seed if params.seed is not None else int.from_bytes(os.urandom(6), "big")
        self.generator = torch.Generator().manual_seed(seed)
        greedy = params.temperature == 0
        config = GenerationConfig(
            do_sample=not greedy, temperature=1.0 if greedy else params.temperature,
            top_k=params.top_k or None, top_p=params.top_p,
            min_p=params.min_p or None, repetition_penalty=params.repetition_penalty)
        self.processors = build_processors(config, prompt_length=len(prompt_ids),
                                           eos_token_id=None, padding_lengths=None)

    def emit(self, event: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, event)

    def cancel(self) -> None:
        """Stop generating (the client went away): the slot is freed at the next step."""
        self.cancelled = True

    async def events(self) -> AsyncIterator[Any]:
        """PromptLogprobs (when asked), Token ... until Finished."""
        while True:
            event = await self.queue.get()
            yield event
            if isinstance(event, Finished):
                return


@dataclasses.dataclass
class Stats:
    """What /metrics reports."""

    requests: int = 0
    finished: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    ttft_sum: float = 0.0
    ttft_count: int = 0
    ttft_buckets: dict[float, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys((0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), 0))
    busy_seconds: float = 0.0

    def first_token(self, seconds: float) -> None:
        self.ttft_sum += seconds
        self.ttft_count += 1
        for bound in self.ttft_buckets:
            if seconds <= bound:
                self.ttft_buckets[bound] += 1


class Engine:
    """The scheduler: ``submit`` a prompt with its settings, read its ``events``.

    ``max_concurrency`` rows decode together; up to ``max_queue`` more wait, and a request
    beyond that is refused (``QueueFull``) rather than left hanging.
    """

    def __init__(self, model: Any = None, *, max_concurrency: int = 16,
                 max_queue: int = 64) -> None:
        self.max_concurrency, self.max_queue = max_concurrency, max_queue
        if model is not None:
            self.attach(model)
        self.calls: deque[tuple[Callable[[], Any], asyncio.Future]] = deque()
        self.waiting: deque[Request] = deque()
        self.active: list[Request] = []
        self.stats = Stats()
        self.lock = threading.Condition()
        self.running = False
        self.thread: threading.Thread | None = None
        self.batch = BatchCache()  # the active rows' keys and values

    def attach(self, model: Any) -> None:
        """The model to decode with (a server loads it on this engine's thread first)."""
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.context = model.config.max_position_embeddings
        self.vocab_size = model.config.vocab_size

    # ------------------------------------------------------------------------- the HTTP side

    async def call(self, function: Callable[[], Any]) -> Any:
        """Run ``function()`` on the engine's thread, between two decoding steps, and return
        its result (or raise its exception) here."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self.lock:
            self.calls.append((function, future))
            self.lock.notify()
        return await future

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> Request:
        """Queue a request (call from the event loop); ``QueueFull`` when the queue is full."""
        request = Request(prompt_ids, params, asyncio.get_running_loop())
        with self.lock:
            if len(self.waiting) >= self.max_queue:
                raise QueueFull(f"{len(self.waiting)} requests are waiting already")
            self.waiting.append(request)
            self.stats.requests += 1
            self.stats.prompt_tokens += len(prompt_ids)
            self.lock.notify()
        return request

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    def start(self) -> None:
        self.running = True
        self.thread = threading.Thread(target=self._loop, name="wxb-engine", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self.lock:
            self.running = False
            self.lock.notify()
        if self.thread is not None:
            self.thread.join()

    # ------------------------------------------------------------------------- the loop

    def _loop(self) -> None:
        while True:
            with self.lock:
                while self.running and not self.waiting and not self.active and not self.calls:
                    self.lock.wait()
                if not self.running:
                    break
                calls = list(self.calls)
                self.calls.clear()
                joining = []
                while self.waiting and len(self.active) + len(joining) < self.max_concurrency:
                    joining.append(self.waiting.popleft())
            for function, future in calls:
                _run_call(function, future)
            start = time.perf_counter()
            try:
                with torch.inference_mode():
                    if joining:
                        self._prefill(joining)
                    joining = []
                    self._drop_finished()
                    if self.active:
                        self._decode_step()
                        self._drop_finished()
            except Exception as err:  # a failure ends the requests in flight, not the server
                # (the HTTP side checks prompts first, so a bad one does not end its fellows)
                for request in dict.fromkeys([*joining, *self.active]):  # each once
                    self._finish(request, "abort", f"{type(err).__name__}: {err}")
                self.active, self.batch = [], BatchCache()
            self.stats.busy_seconds += time.perf_counter() - start
        for request in [*self.active, *self.waiting]:
            self._finish(request, "abort", "the server is shutting down")
        for _, future in self.calls:
            future.get_loop().call_soon_threadsafe(_settle, future, None,
                                                   RuntimeError("the engine stopped"))

    def _finish(self, request: Request, reason: str, error: str | None = None) -> None:
        request.emit(Finished(reason, error))
        self.stats.finished += 1

    def _prefill(self, requests: list[Request]) -> None:
        """Run the joining prompts together (left-padded), emit each one's first token, and
        put their caches into the batch."""
        for request in requests:
            if request.cancelled:
                self._finish(request, "abort")
        requests = [r for r in requests if not r.cancelled]
        if not requests:
            return
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.zeros(len(requests), width, dtype=torch.long)
        mask = torch.zeros(len(requests), width, dtype=torch.long)
        for row, request in enumerate(requests):
            ids[row, width - len(request.prompt_ids):] = torch.tensor(request.prompt_ids)
            mask[row, width - len(request.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        scored = any(r.params.prompt_logprobs is not None for r in requests)
        out = self.model(ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(0),
                         use_cache=True, logits_to_keep=0 if scored else 1)
        self.batch.add(out.past_key_values, mask)
        self.active += requests
        for row, request in enumerate(requests):
            logits = out.logits[row].float()
            if request.params.prompt_logprobs is not None:
                start = width - len(request.prompt_ids)
                request.emit(_prompt_logprobs(logits[start:-1], request.prompt_ids,
                                              request.params.prompt_logprobs))
            if request.params.max_tokens > 0:  # max_tokens 0 scores the prompt only (echo)
                self._choose(request, logits[-1])

    def _decode_step(self) -> None:
        """One token for every active row."""
        tokens = torch.tensor([[r.output_ids[-1]] for r in self.active], device=self.device)
        positions = torch.tensor([[len(r.prompt_ids) + len(r.output_ids) - 1]
                                  for r in self.active], device=self.device)
        out = self.model(tokens, attention_mask=self.batch.step(), position_ids=positions,
                         past_key_values=self.batch.cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1].float()
        for request, row in zip(self.active, logits, strict=True):
            self._choose(request, row)

    def _choose(self, request: Request, logits: torch.Tensor) -> None:
        """Sample (or pick) the request's next token from ``logits`` (vocab,), emit it, and
        note whether the request is done."""
        params = request.params
        history = torch.tensor([request.prompt_ids + request.output_ids], device=logits.device)
        scores = request.processors(history, logits[None])[0]
        if params.presence_penalty or params.frequency_penalty:
            scores = _penalize(scores, request.output_ids, params)
        if params.temperature == 0:
            token = int(scores.argmax())
        else:
            probs = torch.softmax(scores, dim=-1).cpu()
            token = int(torch.multinomial(probs, 1, generator=request.generator))
        logprobs = torch.log_softmax(logits, dim=-1)
        top = None
        if params.logprobs:
            values, ids = logprobs.topk(params.logprobs)
            top = list(zip(ids.tolist(), values.tolist(), strict=True))
        request.output_ids.append(token)
        self.stats.generated_tokens += 1
        if request.first_token_at is None:
            request.first_token_at = time.perf_counter()
            self.stats.first_token(request.first_token_at - request.submitted)
        request.emit(Token(token, float(logprobs[token]), top))

    def _done(self, request: Request) -> str | None:
        if request.cancelled:
            return "abort"
        if request.output_ids and request.output_ids[-1] in request.params.stop_token_ids:
            return "stop"
        if len(request.output_ids) >= request.params.max_tokens:
            return "length"
        return None

    # ------------------------------------------------------------------------- leaving

    def _drop_finished(self) -> None:
        """End the finished and cancelled rows, then cut the batch down to the rest."""
        keep = []
        for i, request in enumerate(self.active):
            reason = self._done(request)
            if reason is None:
                keep.append(i)
            else:
                self._finish(request, reason)
        if len(keep) == len(self.active):
            return
        self.active = [self.active[i] for i in keep]
        self.batch.keep(keep)


def _run_call(function: Callable[[], Any], future: asyncio.Future) -> None:
    try:
        result, error = function(), None
    except Exception as err:  # handed to the caller, which raises it
        result, error = None, err
    future.get_loop().call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _penalize(scores: torch.Tensor, generated: list[int],
              params: SamplingParams) -> torch.Tensor:
    """OpenAI's penalties on the tokens generated so far: ``frequency_penalty`` times each
    token's count, plus ``presence_penalty`` once for every token that appeared."""
    if not generated:
        return scores
    ids = torch.tensor(generated, device=scores.device)
    counts = torch.zeros_like(scores).index_add_(0, ids, torch.ones_like(ids, dtype=scores.dtype))
    return scores - params.frequency_penalty * counts - params.presence_penalty * (counts > 0)


def _prompt_logprobs(logits: torch.Tensor, ids: list[int], k: int) -> PromptLogprobs:
    """Each prompt token's log-probability given the tokens before it; ``logits`` (len - 1,
    vocab) are the predictions after each of the first len - 1 tokens."""
    logprobs = torch.log_softmax(logits, dim=-1)
    chosen = logprobs.gather(1, torch.tensor(ids[1:], device=logits.device)[:, None])[:, 0]
    top: list[list[tuple[int, float]] | None] = [None]
    if k:
        values, indices = logprobs.topk(k, dim=-1)
        top += [list(zip(i.tolist(), v.tolist(), strict=True))
                for i, v in zip(indices, values, strict=True)]
    else:
        top += [None] * len(chosen)
    return PromptLogprobs([None, *chosen.tolist()], top)
