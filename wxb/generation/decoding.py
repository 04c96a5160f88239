"""What every decoding strategy shares, and the greedy / sampling loop itself.

The model interface (wxb's GPT-2 and LLaMA, or anything shaped like them)::

    out = model(input_ids=(rows, new), attention_mask=(rows, past + new) or None,
                position_ids=(rows, new), past_key_values=cache or None, use_cache=True)
    out.logits (rows, new, vocab); out.past_key_values: the cache, created on the first call
    cache.reorder(beam_idx)   # beam search: keep rows beam_idx, in place

The prompt goes through the model once (the "prefill"); after that each step feeds only the
newest token and the cache supplies the past. Prompts of different lengths are padded on the
left, so every row's next token lands in the same column.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from wxb.errors import ConfigError
from wxb.generation.config import GenerationConfig
from wxb.generation.logits import LogitsProcessor, LogitsProcessorList, build_processors
from wxb.generation.stopping import StopStrings

DEFAULT_NEW_TOKENS = 20  # transformers' default when neither max_new_tokens nor max_length is set


@dataclass
class Decoding:
    """One ``generate`` call, prepared: the inputs on the model's device and what to apply."""

    config: GenerationConfig
    input_ids: torch.Tensor  # (rows, prompt): each prompt repeated once per beam or sample
    attention_mask: torch.Tensor | None  # (rows, max_length), 0 on padding; None if none
    position_ids: torch.Tensor  # (rows, prompt)
    max_length: int  # prompt + new tokens
    processors: LogitsProcessorList
    eos_token_id: torch.Tensor | None  # (number of eos ids,)
    pad_token_id: int | None
    stop_strings: StopStrings | None
    logits_to_keep: bool  # the model can skip the logits of all but the last position


def prepare(model: Any, input_ids: Any, config: GenerationConfig,
            attention_mask: torch.Tensor | None, tokenizer: Any,
            extra_processors: list[LogitsProcessor] | None = None) -> Decoding:
    """Check the request against the model and build the tensors the decoding loops use;
    ``extra_processors`` run after the ones ``config`` asks for."""
    if config.seed is not None:
        torch.manual_seed(config.seed)
    device = next(model.parameters()).device
    eos, pad = config.eos_token_id, config.pad_token_id
    input_ids = _prompt(input_ids, config.bos_token_id, device)
    eos_ids = [eos] if isinstance(eos, int) else eos
    attention_mask = _attention_mask(input_ids, attention_mask, pad, eos_ids)
    vocab = model.config.vocab_size
    _check_prompt(input_ids, vocab)
    reachable = [i for i in eos_ids or [] if i < vocab]
    outside = [i for i in eos_ids or [] if i >= vocab]
    if outside and eos != getattr(model.config, "eos_token_id", None):
        # The model's own eos was reported when its config was read; a requested one is here.
        warnings.warn(f"eos_token_id {outside[0]} is outside the model's vocabulary of "
                      f"{vocab} tokens, so it never ends a sequence", stacklevel=4)
    if pad is None and eos_ids:
        # As transformers: finished rows are padded with the first eos (one that exists).
        pad = (reachable or eos_ids)[0]
    if pad is not None and pad >= vocab and config.num_beams == 1 and (
            reachable or config.stop_strings):
        raise ConfigError(f"pad_token_id {pad} is outside the model's vocabulary of {vocab} "
                          "tokens, and a row that finishes early is fed it while the others "
                          f"go on; set pad_token_id to an id below {vocab}")
    if config.stop_strings and tokenizer is None:
        raise ConfigError("stop_strings need the tokenizer to read the text: pass "
                          "generate(..., tokenizer=tok)")

    input_ids, attention_mask, max_length = _fit_context(model.config, input_ids,
                                                         attention_mask, config)
    copies = max(config.num_beams, config.num_return_sequences)
    if copies > 1:
        input_ids = input_ids.repeat_interleave(copies, dim=0)
        if attention_mask is not None:
            attention_mask = attention_mask.repeat_interleave(copies, dim=0)
    position_ids, attention_mask, padding = _positions(input_ids, attention_mask, max_length)
    eos_tensor = None if eos_ids is None else torch.tensor(eos_ids, device=device)
    forward = inspect.signature(getattr(model, "forward", model)).parameters
    processors = build_processors(config, prompt_length=input_ids.shape[1],
                                  eos_token_id=eos_tensor, padding_lengths=padding)
    processors.extend(extra_processors or [])
    return Decoding(
        config=config, input_ids=input_ids, attention_mask=attention_mask,
        position_ids=position_ids, max_length=max_length,
        processors=processors,
        eos_token_id=eos_tensor, pad_token_id=pad,
        stop_strings=StopStrings(tokenizer, config.stop_strings) if config.stop_strings else None,
        logits_to_keep="logits_to_keep" in forward)


def model_step(model: Any, d: Decoding, tokens: torch.Tensor, length: int,
               position_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    """Feed ``tokens`` (rows, new), the last of ``length`` tokens so far.

    Returns the next-token logits (rows, vocab) in float32, and the cache.
    """
    mask = None if d.attention_mask is None else d.attention_mask[:, :length]
    extra = {"logits_to_keep": 1} if d.logits_to_keep else {}
    out = model(input_ids=tokens, attention_mask=mask, position_ids=position_ids,
                past_key_values=cache, use_cache=True, **extra)
    return out.logits[:, -1, :].float(), out.past_key_values


def finished(d: Decoding, sequences: torch.Tensor) -> torch.Tensor:
    """(..., length) -> (...) bool: the last token is an eos or completes a stop string."""
    last = sequences[..., -1]
    done = torch.zeros_like(last, dtype=torch.bool)
    if d.eos_token_id is not None:
        done |= torch.isin(last, d.eos_token_id)
    if d.stop_strings is not None:
        done |= d.stop_strings(sequences.reshape(-1, sequences.shape[-1])).view(last.shape)
    return done


@torch.no_grad()
def sample_steps(model: Any, d: Decoding, sequences: torch.Tensor) -> Iterator[torch.Tensor]:
    """Greedy decoding, or sampling with ``do_sample``: one token per row per step.

    ``sequences`` (rows, max_length) starts with the prompts; each step writes its tokens into
    the next column and yields them (rows,). Stops at max_length, or when every row has
    finished (eos or stop string); a finished row gets the pad token from then on.
    """
    rows, length = d.input_ids.shape
    tokens, positions, cache = d.input_ids, d.position_ids, None
    can_finish = d.eos_token_id is not None or d.stop_strings is not None
    pad_finished = can_finish and d.pad_token_id is not None
    unfinished = torch.ones(rows, dtype=torch.bool, device=tokens.device)
    while length < d.max_length:
        logits, cache = model_step(model, d, tokens, length, positions, cache)
        scores = d.processors(sequences[:, :length], logits)
        if d.config.do_sample:
            tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        if pad_finished:
            tokens = torch.where(unfinished, tokens, d.pad_token_id)
        sequences[:, length] = tokens
        length += 1
        yield tokens
        if can_finish:
            unfinished &= ~finished(d, sequences[:, :length])
            if not unfinished.any():
                return
        tokens, positions = tokens[:, None], positions[:, -1:] + 1


def _prompt(input_ids: Any, bos: int | None, device: torch.device) -> torch.Tensor:
    if input_ids is None:
        if bos is None:
            raise ConfigError("no input_ids and no bos_token_id to start from; pass a prompt "
                              "or set bos_token_id")
        input_ids = [bos]
    ids = torch.as_tensor(input_ids, device=device)
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2 or ids.shape[1] == 0 or ids.dtype.is_floating_point:
        raise ConfigError(f"input_ids must be token ids of shape (batch, seq) with seq >= 1, "
                          f"got {ids.dtype} of shape {tuple(ids.shape)}")
    return ids.long()


def _attention_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                    pad: int | None, eos_ids: list[int] | None) -> torch.Tensor | None:
    if attention_mask is None:
        # As transformers: a pad token distinct from eos, found in the prompt, marks padding.
        if pad is not None and pad not in (eos_ids or []) and bool((input_ids == pad).any()):
            attention_mask = input_ids != pad
        else:
            return None
    attention_mask = torch.as_tensor(attention_mask, device=input_ids.device).long()
    if attention_mask.shape != input_ids.shape:
        raise ConfigError(f"attention_mask has shape {tuple(attention_mask.shape)} but "
                          f"input_ids has {tuple(input_ids.shape)}; they must match")
    if bool((attention_mask[:, -1] == 0).any()):
        raise ConfigError("attention_mask pads on the right; a decoder-only model continues "
                          "from the last column, so pad prompts on the left "
                          "(tokenizer padding_side='left')")
    return attention_mask


def _positions(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               max_length: int) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Position ids (rows, prompt); the mask grown to (rows, max_length), or None when nothing
    is padded; and each row's padding length (rows,), or None."""
    rows, prompt = input_ids.shape
    if attention_mask is None or bool(attention_mask.all()):
        # Nothing padded: spare the model its padding mask.
        return torch.arange(prompt, device=input_ids.device).expand(rows, prompt), None, None
    # Each row counts positions from its first real token, as if it had no padding.
    position_ids = (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    padding = attention_mask.int().argmax(dim=1)
    # One buffer for the whole run; each step passes a longer slice of it.
    full = attention_mask.new_ones(rows, max_length)
    full[:, :prompt] = attention_mask
    return position_ids, full, padding


def _check_prompt(input_ids: torch.Tensor, vocab: int) -> None:
    """Every prompt id (the bos or decoder start token included) indexes the embeddings."""
    top = int(input_ids.max())
    if top >= vocab:
        raise ConfigError(f"the prompt holds token id {top}, outside the model's vocabulary "
                          f"of {vocab} tokens; encode it with the model's own tokenizer")


def _fit_context(model_config: Any, input_ids: torch.Tensor,
                 attention_mask: torch.Tensor | None,
                 config: GenerationConfig) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Decide how many tokens to generate, and make prompt + new tokens fit the context window.

    Returns the (possibly left-truncated) prompt and mask, and max_length = prompt + new.
    """
    prompt = input_ids.shape[1]
    by_default = config.max_new_tokens is None and config.max_length is None
    if config.max_new_tokens is not None:
        new = config.max_new_tokens
    elif config.max_length is not None:
        new = config.max_length - prompt
        if new <= 0:
            raise ConfigError(f"the prompt has {prompt} tokens but max_length (prompt "
                              f"included) is {config.max_length}; set max_new_tokens instead")
    else:
        new = DEFAULT_NEW_TOKENS
    window = getattr(model_config, "max_position_embeddings", None) or getattr(
        model_config, "n_positions", None)
    if window is not None and prompt + new > window:
        if config.truncate_prompt:
            keep = window - new
            if keep < 1:
                raise ConfigError(f"{new} new tokens leave no room for a prompt in the model's "
                                  f"context window of {window}; ask for fewer")
            input_ids = input_ids[:, -keep:]
            attention_mask = None if attention_mask is None else attention_mask[:, -keep:]
        elif prompt >= window:
            raise ConfigError(f"the prompt has {prompt} tokens but the model's context window "
                              f"is {window}; shorten it, or pass truncate_prompt=True to keep "
                              "its last tokens")
        elif by_default:
            new = window - prompt  # transformers caps its default length at the window too
        else:
            raise ConfigError(f"the prompt ({prompt} tokens) and {new} new tokens exceed the "
                              f"model's context window of {window}; ask for at most "
                              f"{window - prompt} new tokens, or pass truncate_prompt=True")
    return input_ids, attention_mask, input_ids.shape[1] + new
