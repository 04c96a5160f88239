"""What a pretrained language model writes: the ``samples`` section, drawing continuations of
its prompts with several decoding strategies, and the metrics computed on them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import torch

from wxb.errors import ConfigError
from wxb.tasks.sections import Section

DEFAULT_STRATEGIES = {"greedy": {}, "top_k": {"do_sample": True, "top_k": 10},
                      "top_p": {"do_sample": True, "top_p": 0.9}}

# One line of a Tang poem ends at a full-width comma, full stop, question or exclamation mark,
# or semicolon: "秦川雄帝宅，函谷壯皇居。" is two lines of five characters.
POEM_LINE_END = re.compile("[，。？！；]")


@dataclasses.dataclass
class SamplesSection(Section):
    """Each prompt continued with each of ``strategies`` (a name -> generate() settings)."""

    prompts: list[str] = dataclasses.field(default_factory=lambda: ["\n"])
    max_new_tokens: int = 100
    stop_token: str | None = None
    seed: int = 0
    strategies: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_STRATEGIES))

    def check(self) -> None:
        if not all(isinstance(v, dict) for v in self.strategies.values()):
            raise ConfigError("samples.strategies must map a name to generate() settings, e.g. "
                              "{top_p: {do_sample: true, top_p: 0.9}}")

    def fit(self, tokenizer: Any, context: int) -> None:
        """Check, before any training, that every prompt and its continuation fit the
        ``context`` and that the stop token is one token."""
        if self.stop_token is not None and tokenizer.token_to_id(self.stop_token) is None:
            raise ConfigError(f"samples.stop_token {self.stop_token!r} is not one token of the "
                              "tokenizer")
        longest = max((len(tokenizer.encode(p, add_special_tokens=False))
                       for p in self.prompts), default=0)
        if longest + self.max_new_tokens > context:
            raise ConfigError(f"samples: a prompt of {longest} tokens plus max_new_tokens "
                              f"{self.max_new_tokens} exceeds the model's context of "
                              f"{context}; lower samples.max_new_tokens")

    @torch.no_grad()
    def draw(self, model: torch.nn.Module, tokenizer: Any) -> list[dict[str, Any]]:
        """Continue every prompt with every strategy; each row is cut at the stop token."""
        from wxb.generation import generate

        stop_id = None if self.stop_token is None else tokenizer.token_to_id(self.stop_token)
        # The course's trick: never emit [PAD] or [UNK], which carry no text.
        banned = [i for i in (tokenizer.pad_token_id, tokenizer.unk_token_id)
                  if i is not None and i != stop_id]
        drawn = []
        for strategy, settings in self.strategies.items():
            for prompt in self.prompts:
                ids = tokenizer.encode(prompt, add_special_tokens=False)
                kwargs = {"max_new_tokens": self.max_new_tokens, "seed": self.seed,
                          "bad_token_ids": banned or None,
                          **({"eos_token_id": stop_id} if stop_id is not None else {}),
                          **settings}
                out = generate(model, torch.tensor([ids], device=model.device), **kwargs)
                for row in out.tolist():
                    new = row[len(ids):]
                    if stop_id is not None and stop_id in new:
                        new = new[:new.index(stop_id)]
                    drawn.append({"strategy": strategy, "prompt": prompt,
                                  "continuation": tokenizer.decode(new,
                                                                   skip_special_tokens=True)})
        return drawn


def is_regular_poem(body: str) -> bool:
    """Whether every line of ``body`` has 5 characters, or every line has 7 (at least two lines).

    Those are the regular forms of Tang verse (五言 and 七言). Text after the last line end is an
    unfinished line and counts as a line, so a poem cut off mid-line is not regular.
    """
    lines = POEM_LINE_END.split(body.strip())
    if lines and lines[-1] == "":
        lines.pop()
    return len(lines) >= 2 and (all(len(line) == 5 for line in lines)
                                or all(len(line) == 7 for line in lines))


def regular_poem_share(poems: list[str]) -> float:
    """The share of ``poems`` (bodies, or ``title：body``) whose lines all have 5 or all 7
    characters; 0.0 for no poems."""
    if not poems:
        return 0.0
    return sum(is_regular_poem(p.split("：", 1)[-1]) for p in poems) / len(poems)


# What a causal-lm config's ``sample_metrics`` may name: functions of the continuations.
SAMPLE_METRICS: dict[str, Callable[[list[str]], float]] = {
    "regular_poem_share": regular_poem_share,
}


def check_sample_metrics(names: Any) -> list[str]:
    """The ``sample_metrics`` of a config: a list of names of ``SAMPLE_METRICS``."""
    names = names or []
    if not isinstance(names, list):
        raise ConfigError(f"sample_metrics must be a list such as [regular_poem_share], got "
                          f"{names!r}")
    unknown = sorted(set(names) - set(SAMPLE_METRICS))
    if unknown:
        raise ConfigError(f"unknown sample metric {unknown[0]!r}; known: "
                          f"{', '.join(SAMPLE_METRICS)}")
    return names
