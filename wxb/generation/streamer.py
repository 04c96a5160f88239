"""Turn a stream of token ids into printable pieces of text.

Decoding token by token breaks text that a tokenizer splits inside a character: a byte-level
BPE may spend three tokens on one Chinese character, and each alone decodes to U+FFFD. So we
decode everything since the last line break and hand out only the text that is new and does
not end in an unfinished character.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

REPLACEMENT = "\ufffd"


class TextStreamer:
    """Feed token ids with ``put``; each call returns the text that became ready ("" if none).

    >>> streamer = TextStreamer(tokenizer)
    >>> for piece in streamer(stream(model, ids, max_new_tokens=50)):
    ...     print(piece, end="", flush=True)
    """

    def __init__(self, tokenizer: Any, skip_special_tokens: bool = False) -> None:
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []  # tokens since the last line break
        self.printed = 0  # characters of their text already handed out

    def put(self, token_id: int | torch.Tensor) -> str:
        self.ids.append(int(token_id))
        text = self._decode()
        if text.endswith(REPLACEMENT):
            return ""
        piece = text[self.printed:]
        if text.endswith("\n"):
            # Start afresh after a line break, so decoding stays short on long outputs.
            self.ids, self.printed = [], 0
        else:
            self.printed = len(text)
        return piece

    def end(self) -> str:
        """Whatever is still held back (an unfinished character stays as U+FFFD)."""
        piece = self._decode()[self.printed:]
        self.ids, self.printed = [], 0
        return piece

    def __call__(self, tokens: Iterable[int | torch.Tensor]) -> Iterator[str]:
        """Text pieces for a token stream (e.g. ``stream(...)`` with one prompt)."""
        for token in tokens:
            piece = self.put(token)
            if piece:
                yield piece
        piece = self.end()
        if piece:
            yield piece

    def _decode(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=self.skip_special_tokens)
