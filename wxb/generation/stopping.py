"""Stop strings: end a sequence once its text contains one of them.

transformers' ``StopStringCriteria`` precomputes, for every token of the vocabulary, how it can
overlap each stop string, so the check is pure tensor arithmetic. Here we simply decode the last
few tokens: slower per step, but readable, and it works with any tokenizer that has ``decode``.
The semantics are the same: a row stops when a stop string occurs in its text *and ends inside
the last token*, so a stop string already in the prompt does not stop generation, while one
that a new token completes (even one that began in the prompt) does.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Decoder(Protocol):
    def decode(self, ids: list[int]) -> str: ...


class StopStrings:
    """Callable (rows, seq) token ids -> (rows,) bool: does a stop string end in the last token?"""

    def __init__(self, tokenizer: Decoder, stop_strings: list[str]) -> None:
        self.tokenizer = tokenizer
        self.stop_strings = list(stop_strings)
        # Every token carries at least one byte of text, so the tokens of an occurrence that ends
        # in the last token are among the last (bytes in the longest stop string) tokens.
        self.tail = max(len(s.encode("utf-8")) for s in self.stop_strings) + 1

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = input_ids[:, -self.tail:].tolist()
        return torch.tensor([self._ends_with_stop(row) for row in rows], dtype=torch.bool,
                            device=input_ids.device)

    def _ends_with_stop(self, ids: list[int]) -> bool:
        text = self.tokenizer.decode(ids)
        # The text before the last token, without the U+FFFD of a character it left unfinished
        # (byte-level tokens can split one character across several tokens).
        before = len(self.tokenizer.decode(ids[:-1]).rstrip("\ufffd"))
        return any(text.find(s, max(0, before - len(s) + 1)) >= 0 for s in self.stop_strings)
