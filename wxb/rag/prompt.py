"""The prompt of a retrieval-augmented answer: the passages numbered ``[1]..[k]``, then the
question; and the answer streamed by a chat model, with the sources the numbers stand for.

    prompt = build_prompt("When is the office open?", hits)
    prompt.text      # instruction, "[1] passage", "[2] passage", ..., "Question: ..."
    prompt.sources   # [{"number": 1, "chunk_id", "document_id", "start", "end", "score"}, ...]
    for piece in stream_answer(prompt, model, tokenizer, max_new_tokens=200): ...

The same numbered passages can instead open a conversation as its system message (a chat
server's or an assistant's): ``system_prompt(hits, template)`` fills a template's
``{passages}``, and ``with_passages(messages, hits)`` puts them before a conversation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from wxb.errors import ConfigError
from wxb.rag.retrieve import Hit

INSTRUCTION = ("Answer the question using only the numbered passages below, citing the "
               "passages you use by their numbers, like [1]. If the passages do not hold the "
               "answer, say that you do not know.")


@dataclass
class Prompt:
    """``text``: the prompt; ``sources[n - 1]``: where passage ``[n]`` comes from."""

    text: str
    sources: list[dict[str, Any]]


def numbered_passages(hits: Sequence[Hit]) -> str:
    """The hits' passages as ``[1] text`` .. ``[k] text``, a blank line between two."""
    return "\n\n".join(f"[{n}] {hit.chunk.text}" for n, hit in enumerate(hits, start=1))


def passage_sources(hits: Sequence[Hit], *, text: bool = False) -> list[dict[str, Any]]:
    """Where each numbered passage comes from (with its ``text`` too when asked)."""
    return [{"number": n, "chunk_id": hit.chunk.id, "document_id": hit.chunk.document_id,
             "start": hit.chunk.start, "end": hit.chunk.end, "score": hit.score,
             **({"text": hit.chunk.text} if text else {})}
            for n, hit in enumerate(hits, start=1)]


def build_prompt(question: str, hits: Sequence[Hit], instruction: str = INSTRUCTION) -> Prompt:
    """The instruction, the hits' passages as ``[1] text`` .. ``[k] text``, then the question."""
    text = f"{instruction}\n\n{numbered_passages(hits)}\n\nQuestion: {question}"
    return Prompt(text, passage_sources(hits))


PASSAGES = "{passages}"
SYSTEM_TEMPLATE = f"{INSTRUCTION}\n\n{PASSAGES}"


def check_template(template: str, name: str = "system_prompt") -> str:
    """A system-prompt template: it must say where the passages go (``{passages}``)."""
    if PASSAGES not in template:
        raise ConfigError(f"{name} has no {PASSAGES}: write {PASSAGES} where the numbered "
                          "passages go")
    return template


def system_prompt(hits: Sequence[Hit], template: str = SYSTEM_TEMPLATE, *,
                  text_sources: bool = False) -> Prompt:
    """A system message with the numbered passages in the ``template``'s ``{passages}`` (the
    rest of the template is kept as written, braces included)."""
    return Prompt(check_template(template).replace(PASSAGES, numbered_passages(hits)),
                  passage_sources(hits, text=text_sources))


def with_passages(messages: Sequence[dict[str, str]], hits: Sequence[Hit],
                  template: str = SYSTEM_TEMPLATE) -> tuple[list[dict[str, str]], Prompt]:
    """The conversation with the passages in its system message: a first system message is
    kept and the passages follow it (after a blank line); without one, they open the
    conversation as one. Returns the new messages and the system prompt (with its sources,
    texts included)."""
    prompt = system_prompt(hits, template, text_sources=True)
    messages = [dict(m) for m in messages]
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{prompt.text}"
    else:
        messages.insert(0, {"role": "system", "content": prompt.text})
    return messages, prompt


def stream_answer(prompt: Prompt, model: Any, tokenizer: Any, **settings: Any) -> Iterator[str]:
    """The chat model's answer to the prompt (one user turn, the tokenizer's chat template or
    a plain one), in pieces as it is written; ``settings``: GenerationConfig fields."""
    from wxb.tasks.causal_lm.pipeline import Chat

    yield from Chat(model, tokenizer, **settings).reply(prompt.text)
