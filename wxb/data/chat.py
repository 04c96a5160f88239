"""Instruction and chat data: JSONL (or JSON array) files -> conversations (``messages`` lists).

Three row formats are read, the ones LLaMA-Factory, TRL and the OpenAI API use::

    alpaca:   {"instruction": "...", "input": "" , "output": "...",
               "system": "..." (optional), "history": [["user", "assistant"], ...] (optional)}
    messages: {"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]}
    sharegpt: {"conversations": [{"from": "system" | "human" | "gpt", "value": "..."}, ...],
               "system": "..." (optional)}

An alpaca row's user turn is the instruction, then a line break and the input when there is one
(as LLaMA-Factory builds it). Every conversation must hold an assistant turn: that is what
supervised fine-tuning learns.

    conversations = read_conversations("alpaca_zh_demo.jsonl")   # format "auto" by default
    conversations[0]  # [{"role": "user", "content": ...}, {"role": "assistant", ...}]
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError, DataError

Message = dict[str, str]
FORMATS = ("auto", "alpaca", "messages", "sharegpt")
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant"}
ROLES = ("system", "user", "assistant")


def read_records(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """The JSON objects of a file, each with where it is (``"line 7"``, or ``"record 3"`` in a
    JSON array): one object per line (JSONL), or one JSON array of objects (LLaMA-Factory's
    ``.json`` files)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
        records = [(f"record {i + 1}", row) for i, row in enumerate(rows)]
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"line {number}", json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not a JSON object ({err.msg})") from None
    for where, row in records:
        if not isinstance(row, dict):
            raise DataError(f"{path}, {where}: expected a JSON object, got "
                            f"{type(row).__name__}")
    if not records:
        raise DataError(f"data file {path} is empty: it holds no rows")
    return records


def read_conversations(path: str | Path, format: str = "auto") -> list[list[Message]]:
    """Every row of ``path`` as a conversation: a list of ``{"role", "content"}`` messages."""
    if format not in FORMATS:
        raise ConfigError(f"unknown chat data format {format!r}; choose one of: "
                          f"{', '.join(FORMATS)}")
    conversations = []
    for where, row in read_records(path):
        try:
            messages = READERS[format if format != "auto" else row_format(row)](row)
            conversations.append(_checked(messages))
        except DataError as err:
            raise DataError(f"{path}, {where}: {err}") from None
    return conversations


def row_format(row: dict[str, Any]) -> str:
    """Which format a row is in, by its keys."""
    if "messages" in row:
        return "messages"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row or "output" in row:
        return "alpaca"
    raise DataError(f"unknown row format with keys {', '.join(map(repr, row)) or '(none)'}; a "
                    "row needs messages (OpenAI style), conversations (ShareGPT) or "
                    "instruction and output (Alpaca)")


def from_alpaca(row: dict[str, Any]) -> list[Message]:
    missing = [k for k in ("instruction", "output") if k not in row]
    if missing:
        raise DataError(f"an alpaca row needs instruction and output; {missing[0]!r} is missing")
    messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    history = row.get("history") or []
    if not isinstance(history, list) or not all(
            isinstance(turn, list) and len(turn) == 2 for turn in history):
        raise DataError("history must be a list of [user, assistant] pairs")
    for user, assistant in history:
        messages += [{"role": "user", "content": user},
                     {"role": "assistant", "content": assistant}]
    instruction, extra = row["instruction"], row.get("input") or ""
    for key, value in (("instruction", instruction), ("input", extra)):
        if not isinstance(value, str):
            raise DataError(f"{key} must be a string, got {type(value).__name__}")
    prompt = f"{instruction}\n{extra}" if extra else instruction
    return [*messages, {"role": "user", "content": prompt},
            {"role": "assistant", "content": row["output"]}]


def from_messages(row: dict[str, Any]) -> list[Message]:
    messages = row["messages"]
    if not isinstance(messages, list):
        raise DataError(f"messages must be a list, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not {"role", "content"} <= set(m):
            raise DataError(f"message {i} needs role and content, got {m!r:.80}")
    system = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    return [*system, *({"role": m["role"], "content": m["content"]} for m in messages)]


def from_sharegpt(row: dict[str, Any]) -> list[Message]:
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise DataError(f"conversations must be a list, got {type(turns).__name__}")
    messages = [{"role": "system", "content": row["system"]}] if row.get("system") else []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not {"from", "value"} <= set(turn):
            raise DataError(f"turn {i} needs from and value, got {turn!r:.80}")
        if turn["from"] not in SHAREGPT_ROLES:
            raise DataError(f"turn {i} is from {turn['from']!r}; the speakers are: "
                            f"{', '.join(SHAREGPT_ROLES)}")
        messages.append({"role": SHAREGPT_ROLES[turn["from"]], "content": turn["value"]})
    return messages


READERS: dict[str, Callable[[dict[str, Any]], list[Message]]] = {
    "alpaca": from_alpaca, "messages": from_messages, "sharegpt": from_sharegpt}


def _checked(messages: list[Message]) -> list[Message]:
    for i, m in enumerate(messages):
        if m["role"] not in ROLES:
            raise DataError(f"message {i} has role {m['role']!r}; the roles are: "
                            f"{', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise DataError(f"message {i} ({m['role']}) has content of type "
                            f"{type(m['content']).__name__}; it must be a string")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError("the conversation has no assistant turn: there is nothing to learn "
                        "from (supervised fine-tuning trains on the assistant's answers)")
    return messages
