"""Supervised fine-tuning (SFT) data: conversations -> token ids with the loss on the assistant.

A conversation is rendered with the tokenizer's chat template, as the model will see it when it
chats, and encoded once. Its labels are the ids themselves inside the assistant turns (the
answer and the template's end-of-turn marker, so the model learns to stop) and -100 everywhere
else: the model is not taught to write the user's questions or the system prompt.

    examples, stats = encode_conversations(conversations, tokenizer, max_length=512)
    batch = PaddingCollator(pad_id)(examples[:8])    # input_ids, attention_mask, labels
    blocks = pack(examples, 512)                      # optional: fewer, fuller rows

Where the assistant turns are is found from the template itself: turn i spans from the end of
the conversation before it rendered with ``add_generation_prompt=True`` to the end of the
conversation up to it. That holds for any template that renders a conversation as its
beginning plus more (ChatML, Llama-3, most others); one that rewrites earlier turns (dropping a
model's earlier reasoning, say) is refused with a clear error rather than trained wrongly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wxb.errors import ConfigError, DataError

IGNORE_INDEX = -100
Message = dict[str, str]
Example = dict[str, list[int]]  # {"input_ids": [...], "labels": [...]}, of equal length


def render_with_spans(tokenizer: Any, messages: list[Message],
                      chat_template: str | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The conversation rendered with the chat template, and the (start, end) character span
    of every assistant turn in it, end-of-turn marker included."""
    def render(part: list[Message], prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(part, add_generation_prompt=prompt, tokenize=False,
                                             chat_template=chat_template)

    text = render(messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(messages[:i], prompt=True), render(messages[:i + 1])
        if not (through.startswith(before) and text.startswith(through)):
            raise ConfigError(
                "the chat template does not render a conversation as its beginning plus the "
                f"next turn (turn {i}), so the assistant's tokens cannot be told apart; "
                "choose a template that does (chatml, llama3)")
        spans.append((len(before), len(through)))
    return text, spans


def encode_chat(tokenizer: Any, messages: list[Message],
                chat_template: str | None = None) -> Example:
    """``input_ids`` of the rendered conversation and ``labels``: the id on every token that
    overlaps an assistant span, -100 elsewhere (as ``transformers`` builds its
    ``assistant_masks``, a token that straddles a span's edge counts as inside)."""
    text, spans = render_with_spans(tokenizer, messages, chat_template)
    encoded = tokenizer([text], add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"][0], encoded["offset_mapping"][0]
    labels = [i if any(s < span_end and e > span_start and e > s
                       for span_start, span_end in spans) else IGNORE_INDEX
              for i, (s, e) in zip(ids, offsets, strict=True)]
    return {"input_ids": list(ids), "labels": labels}


@dataclass
class EncodingStats:
    """What truncation did to one split."""

    examples: int = 0           # conversations read
    kept: int = 0               # examples left (some assistant token survived truncation)
    truncated: int = 0          # examples cut to max_length
    dropped: int = 0            # examples with no assistant token left after the cut
    tokens_cut: int = 0         # tokens removed by truncation
    tokens: int = 0             # tokens kept
    assistant_tokens: int = 0   # tokens kept that carry a label
    longest: int = 0            # the longest example before truncation

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def encode_conversations(conversations: Sequence[list[Message]], tokenizer: Any, *,
                         max_length: int, chat_template: str | None = None
                         ) -> tuple[list[Example], EncodingStats]:
    """Encode every conversation, cut to ``max_length`` tokens (the end goes: the last
    answer's tail); an example left with no assistant token is dropped."""
    if max_length < 2:
        raise ConfigError(f"max_length must be at least 2, got {max_length}")
    stats, examples = EncodingStats(examples=len(conversations)), []
    for messages in conversations:
        example = encode_chat(tokenizer, messages, chat_template)
        length = len(example["input_ids"])
        stats.longest = max(stats.longest, length)
        if length > max_length:
            stats.truncated += 1
            stats.tokens_cut += length - max_length
            example = {k: v[:max_length] for k, v in example.items()}
        trained = sum(label != IGNORE_INDEX for label in example["labels"])
        if trained == 0:
            stats.dropped += 1
            continue
        stats.tokens += len(example["input_ids"])
        stats.assistant_tokens += trained
        examples.append(example)
    stats.kept = len(examples)
    if not examples:
        raise DataError(f"no example keeps an assistant token within max_length {max_length}; "
                        f"raise max_length (the longest example has {stats.longest} tokens)")
    return examples, stats


def pack(examples: Sequence[Example], block_size: int) -> list[Example]:
    """Whole examples laid back to back into rows of at most ``block_size`` tokens (first
    fit in data order, a row closed when the next example does not fit).

    Every example keeps its tokens and labels exactly, and no example is split, so nothing
    is lost at a row's edge; rows hold far less padding than one example per row. Within a
    row, attention is plain causal: a later example can attend to the earlier ones, as in
    TRL's and Hugging Face's ``packing=True`` without flash-attention's per-example masks.
    The loss is unaffected at the labels' positions but the context differs a little; the
    chat template's markers tell the model where one conversation ends.
    """
    rows: list[Example] = []
    for example in examples:
        if len(example["input_ids"]) > block_size:
            raise ConfigError(f"an example of {len(example['input_ids'])} tokens does not fit "
                              f"a packed row of {block_size}; truncate to that length first")
        if not rows or len(rows[-1]["input_ids"]) + len(example["input_ids"]) > block_size:
            rows.append({"input_ids": [], "labels": []})
        rows[-1]["input_ids"] += example["input_ids"]
        rows[-1]["labels"] += example["labels"]
    return rows


def end_of_turn_id(tokenizer: Any, chat_template: str | None = None) -> int | None:
    """The id of the special token that closes an assistant turn (ChatML's ``<|im_end|>``,
    Llama-3's ``<|eot_id|>``), where the template has one: generation stops there.

    Also checks that the tokenizer knows the template's own text: markers that encode to
    ``[UNK]`` would make every turn look the same to the model.
    """
    answer = "ok"
    messages = [{"role": "user", "content": ""}, {"role": "assistant", "content": answer}]
    text, [(start, end)] = render_with_spans(tokenizer, messages, chat_template)
    turn = text[start:end]
    tail = turn[turn.rindex(answer) + len(answer):]
    unk = tokenizer.unk_token_id
    if unk is not None and unk in tokenizer.encode(text[:start] + tail,
                                                   add_special_tokens=False):
        raise ConfigError(f"the tokenizer does not know all of the chat template's text "
                          f"({text!r} holds unknown tokens); train it with the template's "
                          "markers as added tokens, or choose another template")
    ids = tokenizer.encode(tail, add_special_tokens=False) if tail else []
    return ids[0] if ids and ids[0] in tokenizer.all_special_ids else None
