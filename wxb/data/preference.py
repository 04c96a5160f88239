"""Preference pairs (a prompt, a chosen and a rejected response) for reward models and DPO.

One JSON object per line (a ``.json`` file holding one JSON array works too), in any of the
formats the field uses::

    {"prompt": "\\n\\nHuman: hi\\n\\nAssistant:", "chosen": " hello", "rejected": " go away"}
    {"prompt": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "..."}
    {"conversations": [{"from": "system" | "human" | "gpt", "value": ...}],     (sharegpt,
     "chosen": "hello" or {"from": "gpt", "value": "hello"}, "rejected": ...}    LLaMA-Factory)
    {"chosen": [{"role": "user", ...}, {"role": "assistant", ...}],             (TRL's
     "rejected": [{"role": "user", ...}, {"role": "assistant", ...}]}           conversational)

A prompt given as text is used as it is (HH-RLHF's "Human: ... Assistant:" transcript); one
given as messages is rendered with the chat template, ``add_generation_prompt=True``, and each
response is what the template adds for the assistant's turn (its end-of-turn marker
included). Without a chat template the messages' contents are joined by newlines. Every
response ends with the EOS token, as in TRL. A row may carry a number ``margin`` (how much
better the chosen response is), which a reward model's loss can use.

Encoded pairs keep the prompt and the two responses apart; ``PreferenceCollator`` builds
``chosen_input_ids`` / ``chosen_attention_mask`` / ``chosen_labels`` (the prompt's labels are
-100: only the response is scored) and the same for ``rejected``, padded on the right to one
common length so the two halves can be run as one batch of 2 x batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from wxb.data.chat import SHAREGPT_ROLES, read_records
from wxb.data.text import pad
from wxb.errors import ConfigError, DataError

Messages = list[dict[str, str]]
# What an encoded pair's item holds besides numbers.
SEQUENCE_KEYS = {f"{half}_{k}" for half in ("chosen", "rejected") for k in ("input_ids", "labels")}


@dataclass
class PreferencePair:
    """A prompt (raw text, or chat messages) and two responses to it, the first preferred."""

    prompt: str | Messages
    chosen: str
    rejected: str
    margin: float | None = None


def read_preferences(path: str | Path) -> list[PreferencePair]:
    """The preference pairs of a JSON-lines file (or a JSON array); a bad row is a DataError
    that names the file and the line."""
    return [preference_pair(row, f"{path}, {where}") for where, row in read_records(path)]


def preference_pair(row: Any, where: str) -> PreferencePair:
    """One row in any of the module's formats -> a PreferencePair; ``where`` (file and line)
    starts every error message."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = [k for k in ("chosen", "rejected") if row.get(k) in (None, "", [])]
    if missing:
        raise DataError(f"{where}: a preference row needs 'chosen' and 'rejected'; "
                        f"{' and '.join(repr(k) for k in missing)} missing (keys: "
                        f"{', '.join(row) or 'none'})")
    if "conversations" in row:
        prompt: str | Messages | None = _sharegpt(row["conversations"], where)
    else:
        prompt = row.get("prompt")
        if isinstance(prompt, list):
            prompt = _messages(prompt, where, "prompt")
        elif prompt is not None and not isinstance(prompt, str):
            raise DataError(f"{where}: 'prompt' must be text or a list of messages, got "
                            f"{type(prompt).__name__}")
    chosen, rejected = row["chosen"], row["rejected"]
    if prompt is None:  # TRL's implicit prompt: two whole conversations sharing all but the end
        if not (isinstance(chosen, list) and isinstance(rejected, list)):
            raise DataError(f"{where}: no prompt: give 'prompt' or 'conversations', or "
                            "'chosen' and 'rejected' as whole conversations (message lists)")
        chosen, rejected = _messages(chosen, where, "chosen"), _messages(rejected, where,
                                                                         "rejected")
        prompt = chosen[:-1]
        if rejected[:-1] != prompt:
            raise DataError(f"{where}: 'chosen' and 'rejected' conversations must share every "
                            "message but the last (the prompt)")
        chosen, rejected = chosen[-1:], rejected[-1:]
    margin = row.get("margin")
    if margin is not None and not isinstance(margin, (int, float)):
        raise DataError(f"{where}: 'margin' must be a number, got {margin!r}")
    return PreferencePair(prompt, _response(chosen, where, "chosen"),
                          _response(rejected, where, "rejected"),
                          None if margin is None else float(margin))


def _sharegpt(turns: Any, where: str) -> Messages:
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: 'conversations' must be a non-empty list of "
                        "{from, value} turns")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise DataError(f"{where}: conversations[{i}] must have 'from' and 'value'")
        if turn["from"] not in SHAREGPT_ROLES:
            raise DataError(f"{where}: conversations[{i}] is from {turn['from']!r}; known "
                            f"speakers: {', '.join(SHAREGPT_ROLES)}")
        messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": str(turn["value"])})
    return messages


def _messages(items: list, where: str, key: str) -> Messages:
    """OpenAI-style ``{role, content}`` messages (sharegpt's ``{from, value}`` accepted)."""
    out = []
    for i, m in enumerate(items):
        if isinstance(m, dict) and "role" in m and "content" in m:
            out.append({"role": str(m["role"]), "content": str(m["content"])})
        elif isinstance(m, dict) and m.get("from") in SHAREGPT_ROLES and "value" in m:
            out.append({"role": SHAREGPT_ROLES[m["from"]], "content": str(m["value"])})
        else:
            raise DataError(f"{where}: {key}[{i}] must be a message with 'role' and "
                            f"'content', got {m!r:.80}")
    if not out:
        raise DataError(f"{where}: {key} is an empty list of messages")
    return out


def _response(value: Any, where: str, key: str) -> str:
    """A response given as text, as one assistant message, or as a list ending with one."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        last = _messages(value, where, key)[-1]
        if last["role"] != "assistant":
            raise DataError(f"{where}: {key} must end with an assistant message, not "
                            f"{last['role']!r}")
        return last["content"]
    raise DataError(f"{where}: {key} must be text or an assistant message, got "
                    f"{type(value).__name__}")


# ----------------------------------------------------------------------------- encoding


@dataclass
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    margin: float | None = None


class PreferenceDataset(Dataset):
    """Encoded pairs; ``truncated`` counts the pairs whose prompt or responses were cut.
    ``columns`` are numbers per pair carried into every item (DPO's reference log-probs)."""

    def __init__(self, pairs: list[EncodedPair], truncated: int = 0,
                 columns: dict[str, list[float]] | None = None) -> None:
        self.pairs, self.truncated, self.columns = pairs, truncated, columns or {}

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        item: dict[str, Any] = {}
        for name in ("chosen", "rejected"):
            response = getattr(p, name)
            item[f"{name}_input_ids"] = p.prompt + response
            item[f"{name}_labels"] = [-100] * len(p.prompt) + response
        if p.margin is not None:
            item["margin"] = p.margin
        item.update({name: values[i] for name, values in self.columns.items()})
        return item

    def with_columns(self, **columns: list[float]) -> PreferenceDataset:
        """The same pairs with more per-pair numbers, one per pair in each column."""
        for name, values in columns.items():
            if len(values) != len(self.pairs):
                raise DataError(f"column {name!r} has {len(values)} values for "
                                f"{len(self.pairs)} preference pairs")
        return PreferenceDataset(self.pairs, self.truncated, {**self.columns, **columns})


def encode_preferences(pairs: Sequence[PreferencePair], tokenizer: Any, *, max_length: int,
                       max_prompt_length: int, chat_template: str | None = None,
                       margins: bool = False) -> PreferenceDataset:
    """Tokenize ``pairs``; ``chat_template`` (a Jinja template or a built-in name such as
    ``chatml``) replaces the tokenizer's own. A pair longer than ``max_length`` tokens has its
    prompt cut from the left to ``max_prompt_length`` (the end of the prompt is what the
    response answers), then its responses cut to fit. ``margins`` keeps the rows' margins."""
    if not 0 < max_prompt_length < max_length:
        raise ConfigError(f"max_prompt_length ({max_prompt_length}) must be at least 1 and "
                          f"less than max_length ({max_length}), leaving room for a response")
    template = chat_template or tokenizer.chat_template
    encoded, truncated = [], 0
    for pair in pairs:
        prompt, chosen, rejected = _render(pair, tokenizer, template)
        if len(prompt) + max(len(chosen), len(rejected)) > max_length:
            truncated += 1
            prompt = prompt[-max_prompt_length:]
            room = max_length - len(prompt)
            chosen, rejected = chosen[:room], rejected[:room]
        encoded.append(EncodedPair(prompt, chosen, rejected, pair.margin if margins else None))
    if margins and any(p.margin is None for p in encoded) and any(p.margin is not None
                                                                  for p in encoded):
        raise DataError("some preference rows have a 'margin' and others not; give every row "
                        "one, or none")
    return PreferenceDataset(encoded, truncated)


def _render(pair: PreferencePair, tokenizer: Any,
            template: str | None) -> tuple[list[int], list[int], list[int]]:
    """Prompt, chosen and rejected token ids (each response ending with EOS)."""
    eos = tokenizer.eos_token_id

    def ids(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    def ended(tokens: list[int]) -> list[int]:
        return tokens if eos is None or tokens[-1:] == [eos] else [*tokens, eos]

    if isinstance(pair.prompt, str) or template is None:
        prompt = pair.prompt if isinstance(pair.prompt, str) else \
            "".join(m["content"] + "\n" for m in pair.prompt)
        return ids(prompt), ended(ids(pair.chosen)), ended(ids(pair.rejected))
    prompt = tokenizer.apply_chat_template(pair.prompt, add_generation_prompt=True,
                                           tokenize=False, chat_template=template)

    def turn(response: str) -> list[int]:
        whole = tokenizer.apply_chat_template(
            [*pair.prompt, {"role": "assistant", "content": response}], tokenize=False,
            chat_template=template)
        if not whole.startswith(prompt):
            raise ConfigError("the chat template renders the conversation with the answer "
                              "differently from the prompt alone (add_generation_prompt=True); "
                              "the response cannot be separated: give another chat_template")
        return ended(ids(whole[len(prompt):]))

    return ids(prompt), turn(pair.chosen), turn(pair.rejected)


class PreferenceCollator:
    """Encoded pairs -> one batch: ``{chosen,rejected}_{input_ids,attention_mask,labels}``,
    all (batch, longest of the two halves), right-padded (ids with ``pad_token_id``, labels
    with -100), and every number an item carries (``margin``, a column) as (batch,)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e[f"{h}_input_ids"]) for e in examples for h in ("chosen", "rejected"))
        batch = {}
        for half in ("chosen", "rejected"):
            ids = [e[f"{half}_input_ids"] for e in examples]
            batch[f"{half}_input_ids"] = pad(ids, self.pad_token_id, width)
            batch[f"{half}_attention_mask"] = pad([[1] * len(i) for i in ids], 0, width)
            batch[f"{half}_labels"] = pad([e[f"{half}_labels"] for e in examples], -100, width)
        for key in sorted(examples[0].keys() - SEQUENCE_KEYS):
            batch[key] = torch.tensor([float(e[key]) for e in examples])
        return batch


def concatenated(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The chosen and rejected halves of a collated batch as one batch of 2 x batch rows
    (chosen first): input_ids, attention_mask, labels, each (2 * batch, seq); a single forward
    pass over both halves is cheaper than two."""
    return tuple(torch.cat([batch[f"chosen_{k}"], batch[f"rejected_{k}"]])
                 for k in ("input_ids", "attention_mask", "labels"))
