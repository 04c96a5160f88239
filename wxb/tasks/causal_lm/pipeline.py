"""Text completion and chat over any causal language model folder.

The folder holds the model (``config.json`` + weights) and its tokenizer files, as
``wxb.from_pretrained`` and ``wxb.load_tokenizer`` read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from wxb.errors import ConfigError
from wxb.generation import TextStreamer, generate, stream
from wxb.models.decoder import CausalLMBase

# A conversation format for tokenizers without a chat template (a model pretrained here).
PLAIN_CHAT = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def load_causal_lm(folder: str | Path) -> tuple[CausalLMBase, Any]:
    """The model and tokenizer of a folder, in eval mode."""
    import wxb

    model = wxb.from_pretrained(folder)
    if not isinstance(model, CausalLMBase):
        raise ConfigError(f"{folder} holds a {type(model).__name__}, not a causal language "
                          "model (gpt2, llama)")
    return model.eval(), wxb.load_tokenizer(folder)


def _prompt_ids(tokenizer: Any, prompt: str, add_special_tokens: bool = True) -> torch.Tensor:
    ids = tokenizer.encode(prompt, add_special_tokens=add_special_tokens)
    if not ids:
        raise ConfigError("the prompt is empty after tokenization; give some text")
    return torch.tensor([ids])


@torch.no_grad()
def complete(model: CausalLMBase, tokenizer: Any, prompt: str, **settings: Any) -> str:
    """The text the model writes after ``prompt`` (``settings``: GenerationConfig fields)."""
    ids = _prompt_ids(tokenizer, prompt)
    out = generate(model, ids, tokenizer=tokenizer, **settings)
    return tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True)


def stream_completion(model: CausalLMBase, tokenizer: Any, prompt: str, *,
                      add_special_tokens: bool = True, **settings: Any) -> Iterator[str]:
    """Like ``complete``, as pieces of text while they are generated."""
    ids = _prompt_ids(tokenizer, prompt, add_special_tokens)
    with torch.no_grad():
        steps = stream(model, ids, tokenizer=tokenizer, **settings)
        yield from TextStreamer(tokenizer, skip_special_tokens=True)(s[0] for s in steps)


class Chat:
    """A conversation with history: ``reply(message)`` streams the answer and remembers it."""

    def __init__(self, model: CausalLMBase, tokenizer: Any, system: str | None = None,
                 **settings: Any) -> None:
        self.model, self.tokenizer, self.system = model, tokenizer, system
        self.settings = settings
        self.template = tokenizer.chat_template or PLAIN_CHAT
        self.reset()

    def reset(self) -> None:
        self.messages: list[dict[str, str]] = (
            [{"role": "system", "content": self.system}] if self.system else [])

    def reply(self, message: str) -> Iterator[str]:
        self.messages.append({"role": "user", "content": message})
        prompt = self.tokenizer.apply_chat_template(self.messages, add_generation_prompt=True,
                                                    tokenize=False, chat_template=self.template)
        # A model without a chat template answers on one line (the plain format's turn).
        stop = ["\n"] if self.template is PLAIN_CHAT else None
        pieces = []
        # The rendered template holds its own special tokens (as in transformers).
        for piece in stream_completion(self.model, self.tokenizer, prompt, stop_strings=stop,
                                       add_special_tokens=False, **self.settings):
            pieces.append(piece)
            yield piece
        answer = "".join(pieces).strip()
        self.messages.append({"role": "assistant", "content": answer})


class TextGenerator:
    """``generator(prompts, max_new_tokens=50)`` -> ``[{"generated_text": prompt +
    continuation}]`` per prompt, as ``transformers``' text-generation pipeline answers (with
    ``return_full_text=False``, the continuation alone). ``generate_kwargs`` given here are
    defaults for every call."""

    def __init__(self, folder: str | Path, device: str | torch.device | None = None,
                 **generate_kwargs: Any) -> None:
        model, self.tokenizer = load_causal_lm(folder)
        self.model = model.to(device or "cpu")
        self.defaults = generate_kwargs

    def __call__(self, prompts: str | list[str], *, return_full_text: bool = True,
                 **generate_kwargs: Any) -> list[dict[str, str]] | list[list[dict[str, str]]]:
        single = isinstance(prompts, str)
        answers = []
        for prompt in [prompts] if single else prompts:
            text = complete(self.model, self.tokenizer, prompt,
                            **{**self.defaults, **generate_kwargs})
            answers.append([{"generated_text": prompt + text if return_full_text else text}])
        return answers[0] if single else answers
