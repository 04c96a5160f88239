"""A retrieval-augmented chat assistant: the course's customer-service assistant (2023 day 27)
on any index and any wxb chat model.

Every user turn is answered with a system prompt rebuilt for that turn: the ``template`` (the
course's "你是客服人員… 專業、簡短且易懂…") with the ``k`` passages that best match the
user's *last* turn numbered ``[1]..[k]`` in its ``{passages}``. The conversation before it
follows, each turn in its own role: the course stored the user's words as the assistant's turn,
here the history a reply returns holds the user's words as ``user`` and the answer as
``assistant``, so passing it back carries the conversation on correctly.

    assistant = Assistant(Retriever("faq-index"), model, tokenizer, template, k=10)
    turn = assistant.reply([], "YouBike 服務中心幾點開門？")
    turn.text, turn.sources        # the answer; the passages it was given ([1]..[k], texts too)
    turn = assistant.reply(turn.history, "那星期一有開嗎？")   # the next turn

``prepare`` retrieves and builds the prompt without answering; ``turn.stream()`` then yields the
answer in pieces (``wxb rag chat`` prints them as they come). When the system prompt with ``k``
passages, the history and ``max_new_tokens`` would overflow the model's context window, the
lowest-ranked passages are left out (``turn.dropped`` counts them); when even none fits, the
error says to start a new conversation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from wxb.errors import ConfigError
from wxb.rag.prompt import SYSTEM_TEMPLATE, Prompt, check_template, system_prompt
from wxb.rag.retrieve import Hit, Retriever

Message = dict[str, str]


@dataclasses.dataclass
class Turn:
    """One answered (or prepared) user turn: the ``system`` prompt it was given, the
    ``sources`` of its passages, how many retrieved passages were ``dropped`` to fit the
    context, whether the query was ``truncated`` for the embedder; once streamed, the answer's
    ``text`` and the ``history`` to pass back (user and assistant turns, no system prompt)."""

    system: str
    sources: list[dict[str, Any]]
    dropped: int
    truncated: bool
    chat: Any = dataclasses.field(repr=False)
    user_text: str = ""
    text: str | None = None

    def stream(self) -> Iterator[str]:
        """The answer in pieces as the model writes it; sets ``text`` and ``history``."""
        pieces = []
        for piece in self.chat.reply(self.user_text):
            pieces.append(piece)
            yield piece
        self.text = "".join(pieces).strip()

    @property
    def history(self) -> list[Message]:
        """The conversation so far without the system prompt (this turn included once
        answered)."""
        return [dict(m) for m in self.chat.messages[1:]]


class Assistant:
    """A chat model answering from the passages a retriever finds for each user turn.

    ``template`` is the system prompt with ``{passages}`` where the numbered passages go;
    ``method`` the retrieval (dense, bm25, hybrid); ``settings`` are generation settings
    (GenerationConfig fields) besides ``max_new_tokens``.
    """

    def __init__(self, retriever: Retriever, model: Any, tokenizer: Any,
                 template: str = SYSTEM_TEMPLATE, *, k: int = 10, method: str = "dense",
                 max_new_tokens: int = 256, **settings: Any) -> None:
        if k < 1:
            raise ConfigError(f"k (passages a turn) must be at least 1, got {k}")
        self.retriever, self.model, self.tokenizer = retriever, model, tokenizer
        self.template = check_template(template)
        self.k, self.method = k, method
        self.settings = {"max_new_tokens": max_new_tokens, **settings}

    def prepare(self, history: Sequence[Message], user_text: str) -> Turn:
        """Retrieve for ``user_text`` and build the turn's prompt (nothing is generated)."""
        from wxb.tasks.causal_lm.pipeline import Chat

        for number, message in enumerate(history):
            if message.get("role") not in ("user", "assistant") or not isinstance(
                    message.get("content"), str):
                raise ConfigError(f"history[{number}] must be a user or assistant turn "
                                  f"{{role, content}}, got {message!r}")
        result = self.retriever.search(user_text, self.k, self.method)
        chat = Chat(self.model, self.tokenizer, **self.settings)
        prompt, dropped = self._fit(chat, result.hits, list(history), user_text)
        chat.system = prompt.text
        chat.reset()
        chat.messages += [dict(m) for m in history]
        return Turn(prompt.text, prompt.sources, dropped, result.truncated, chat, user_text)

    def reply(self, history: Sequence[Message], user_text: str) -> Turn:
        """The turn answered to the end (``turn.text``, ``turn.sources``, ``turn.history``)."""
        turn = self.prepare(history, user_text)
        for _ in turn.stream():
            pass
        return turn

    def _fit(self, chat: Any, hits: Sequence[Hit], history: list[Message],
             user_text: str) -> tuple[Prompt, int]:
        """The system prompt with as many of the best hits as fit the context window with
        the history, the user's turn and ``max_new_tokens``; and how many were left out."""
        window = self.model.config.max_position_embeddings
        room = window - self.settings["max_new_tokens"]
        for used in range(len(hits), -1, -1):
            prompt = system_prompt(hits[:used], self.template, text_sources=True)
            messages = [{"role": "system", "content": prompt.text}, *history,
                        {"role": "user", "content": user_text}]
            text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                      tokenize=False,
                                                      chat_template=chat.template)
            tokens = len(self.tokenizer.encode(text, add_special_tokens=False))
            if tokens <= room:
                return prompt, len(hits) - used
        raise ConfigError(f"the conversation ({tokens} tokens with no passage) and "
                          f"max_new_tokens {self.settings['max_new_tokens']} do not fit the "
                          f"model's context window of {window} tokens; start a new "
                          "conversation or ask for fewer new tokens")
