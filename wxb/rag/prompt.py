"""The prompt of a retrieval-augmented answer: the passages numbered ``[1]..[k]``, then the
question; and the answer streamed by a chat model, with the sources the numbers stand for.

    prompt = build_prompt("When is the office open?", hits)
    prompt.text      # instruction, "[1] passage", "[2] passage", ..., "Question: ..."
    prompt.sources   # [{"number": 1, "chunk_id", "document_id", "start", "end", "score"}, ...]
    for piece in stream_answer(prompt, model, tokenizer, max_new_tokens=200): ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from wxb.rag.retrieve import Hit

INSTRUCTION = ("Answer the question using only the numbered passages below, citing the "
               "passages you use by their numbers, like [1]. If the passages do not hold the "
               "answer, say that you do not know.")


@dataclass
class Prompt:
    """``text``: the prompt; ``sources[n - 1]``: where passage ``[n]`` comes from."""

    text: str
    sources: list[dict[str, Any]]


def build_prompt(question: str, hits: Sequence[Hit], instruction: str = INSTRUCTION) -> Prompt:
    """The instruction, the hits' passages as ``[1] text`` .. ``[k] text``, then the question."""
    passages = "\n\n".join(f"[{n}] {hit.chunk.text}" for n, hit in enumerate(hits, start=1))
    text = f"{instruction}\n\n{passages}\n\nQuestion: {question}"
    sources = [{"number": n, "chunk_id": hit.chunk.id, "document_id": hit.chunk.document_id,
                "start": hit.chunk.start, "end": hit.chunk.end, "score": hit.score}
               for n, hit in enumerate(hits, start=1)]
    return Prompt(text, sources)


def stream_answer(prompt: Prompt, model: Any, tokenizer: Any, **settings: Any) -> Iterator[str]:
    """The chat model's answer to the prompt (one user turn, the tokenizer's chat template or
    a plain one), in pieces as it is written; ``settings``: GenerationConfig fields."""
    from wxb.tasks.causal_lm.pipeline import Chat

    yield from Chat(model, tokenizer, **settings).reply(prompt.text)
