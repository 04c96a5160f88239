"""Summarizing with a decoder-only model: the document goes into a prompt, the summary is
what the model writes after it.

The prompt is ``prompt`` with ``{document}`` filled in (the document cut to
``max_source_length`` tokens first, so the instruction and the summary are never cut). A
tokenizer with a chat template gets it as the user's turn and the summary as the assistant's
(``wxb.align.sft``: the loss falls on the assistant's tokens only); one without gets the
prompt as plain text followed by the summary and the eos, the loss on those. Generation is
greedy or beam search over left-padded batches, ending at the eos (a chat model's end of
turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from wxb.align.sft import IGNORE_INDEX
from wxb.errors import ConfigError

DEFAULT_PROMPT = "Summarize the following text.\n\n{document}"


def holds_causal_lm(pretrained: str | Path) -> bool:
    """Whether ``pretrained`` is a GGUF checkpoint (a file, a folder of one, a packaged hub id)
    or a folder whose config.json names a causal LM (so a summarizer uses it with a prompt,
    not as an encoder-decoder)."""
    from wxb.models import registry
    from wxb.models.checkpoint import read_config_json
    from wxb.models.decoder import CausalLMBase
    from wxb.tokenizers.gguf import find_gguf

    if find_gguf(pretrained) is not None:
        return True
    config = Path(pretrained) / "config.json"
    if not config.is_file():
        return False
    values = read_config_json(config)
    cls = registry.model_class(values.get("model_type"), (values.get("architectures")
                                                         or [None])[0])
    return issubclass(cls, CausalLMBase)


def check_prompt(prompt: str) -> None:
    if "{document}" not in prompt:
        raise ConfigError(f"data.prompt must hold {{document}} where the document goes; got "
                          f"{prompt!r}")


def cut_document(tokenizer: Any, document: str, max_tokens: int) -> tuple[str, bool]:
    """The document's first ``max_tokens`` tokens as text, and whether it was cut."""
    ids = tokenizer.encode(document, add_special_tokens=False)
    if len(ids) <= max_tokens:
        return document, False
    return tokenizer.decode(ids[:max_tokens]), True


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """The ids the model reads before writing the summary."""
    if tokenizer.chat_template is not None:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             add_generation_prompt=True)
    return tokenizer.encode(prompt)


def encode_examples(pairs: Sequence[tuple[str, str]], tokenizer: Any, *, prompt: str,
                    max_source_length: int, max_target_length: int
                    ) -> tuple[list[dict[str, list[int]]], dict[str, int]]:
    """Training examples (``input_ids`` and ``labels``, -100 outside the summary) and how
    many documents and summaries were cut."""
    from wxb.align.sft import encode_chat

    examples, cut = [], {"source": 0, "target": 0}
    for document, summary in pairs:
        document, was_cut = cut_document(tokenizer, document, max_source_length)
        cut["source"] += was_cut
        summary, was_cut = cut_document(tokenizer, summary, max_target_length - 1)
        cut["target"] += was_cut
        text = prompt.format(document=document)
        if tokenizer.chat_template is not None:
            examples.append(encode_chat(tokenizer, [{"role": "user", "content": text},
                                                    {"role": "assistant", "content": summary}]))
            continue
        start = tokenizer.encode(text)
        answer = tokenizer.encode(summary, add_special_tokens=False)
        answer += [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        examples.append({"input_ids": start + answer,
                         "labels": [IGNORE_INDEX] * len(start) + answer})
    return examples, cut


@torch.no_grad()
def summarize_with_decoder(model: Any, tokenizer: Any, documents: Sequence[str], *,
                           prompt: str = DEFAULT_PROMPT, batch_size: int = 8,
                           max_source_length: int = 512, **generate_kwargs: Any) -> list[str]:
    """The summary the model writes after each document's prompt, in the order given."""
    from wxb.generation import generate
    from wxb.tasks.models import pad_id

    prompts = [prompt_ids(tokenizer, prompt.format(
        document=cut_document(tokenizer, d, max_source_length)[0])) for d in documents]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out = [""] * len(prompts)
    pad, device = pad_id(tokenizer), next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        # Left padding: every prompt ends where generation begins.
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in chunk],
                           device=device)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i])
                             for i in chunk], device=device)
        sequences = generate(model, ids, attention_mask=mask, pad_token_id=pad,
                             **generate_kwargs)
        for i, row in zip(chunk, sequences[:, width:].tolist(), strict=True):
            out[i] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return out
