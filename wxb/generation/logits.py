"""Logits processors: small functions of (tokens so far, next-token scores) -> new scores.

Each class computes exactly what the transformers class of the same name computes (the tests
compare them on random scores), and ``build_processors`` puts them in the order transformers'
``generate`` applies them. All take ``input_ids`` (rows, seq) and ``scores`` (rows, vocab) and
return new scores without changing their inputs.

Banning a token means setting its score to -inf: its probability becomes 0 after softmax.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from wxb.generation.config import GenerationConfig


class LogitsProcessor(Protocol):
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor: ...


class LogitsProcessorList(list[LogitsProcessor]):
    """Processors applied one after another."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class TemperatureLogitsWarper:
    """Divide by the temperature: below 1 sharpens the distribution, above 1 flattens it."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores / self.temperature


class TopKLogitsWarper:
    """Keep the k highest scores (and every score tied with the k-th); ban the rest."""

    def __init__(self, top_k: int, filter_value: float = -math.inf,
                 min_tokens_to_keep: int = 1) -> None:
        self.top_k = max(top_k, min_tokens_to_keep)
        self.filter_value = filter_value

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, scores.shape[-1])
        kth_best = torch.topk(scores, k)[0][..., -1, None]
        return scores.masked_fill(scores < kth_best, self.filter_value)


class TopPLogitsWarper:
    """Nucleus sampling: keep the fewest most-probable tokens whose probabilities sum to top_p."""

    def __init__(self, top_p: float, filter_value: float = -math.inf,
                 min_tokens_to_keep: int = 1) -> None:
        self.top_p = float(top_p)
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        # Sorted ascending, the tokens to drop are a prefix: those whose cumulative probability
        # stays within the (1 - top_p) tail.
        sorted_scores, order = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cumulative <= (1 - self.top_p)
        drop_sorted[..., -self.min_tokens_to_keep:] = False
        drop = drop_sorted.scatter(1, order, drop_sorted)
        return scores.masked_fill(drop, self.filter_value)


class MinPLogitsWarper:
    """Keep tokens at least min_p times as probable as the most probable one."""

    def __init__(self, min_p: float, filter_value: float = -math.inf,
                 min_tokens_to_keep: int = 1) -> None:
        self.min_p = min_p
        self.filter_value = filter_value
        self.min_tokens_to_keep = min_tokens_to_keep

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(scores, dim=-1)
        drop = probs < self.min_p * probs.amax(dim=-1, keepdim=True)
        keep = torch.topk(probs, min(self.min_tokens_to_keep, probs.shape[-1]), dim=-1).indices
        drop = drop.scatter(-1, keep, False)
        return scores.masked_fill(drop, self.filter_value)


class RepetitionPenaltyLogitsProcessor:
    """CTRL's penalty on every token already in the sequence, prompt included.

    A seen token's score is divided by ``penalty`` when positive and multiplied when negative,
    so penalty > 1 always makes it less likely. ``prompt_ignore_length`` (an int, or one per
    row) skips that many leading tokens: ``generate`` passes each row's left padding.
    """

    def __init__(self, penalty: float,
                 prompt_ignore_length: int | torch.Tensor | None = None) -> None:
        self.penalty = penalty
        self.prompt_ignore_length = prompt_ignore_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        skip = self.prompt_ignore_length
        if isinstance(skip, int):
            input_ids = input_ids[:, skip:]
        elif isinstance(skip, torch.Tensor):
            # Skipped positions point at a spare column past the vocabulary, dropped at the end.
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            input_ids = input_ids.masked_fill(positions[None, :] < skip[:, None], vocab)
        input_ids = input_ids.clamp(max=vocab)
        padded = torch.nn.functional.pad(scores, (0, 1))
        seen = torch.gather(padded, 1, input_ids)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return padded.scatter(1, input_ids, seen)[..., :vocab]


class NoRepeatNGramLogitsProcessor:
    """Ban any token that would complete an n-gram already present in the sequence."""

    def __init__(self, ngram_size: int) -> None:
        self.ngram_size = ngram_size

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        n, length = self.ngram_size, input_ids.shape[-1]
        if length < n:
            return scores
        # The next token completes an n-gram whose first n-1 tokens are the current suffix; every
        # earlier window that starts with that suffix bans its own last token.
        suffix = input_ids[:, length + 1 - n:]
        windows = input_ids.unfold(dimension=1, size=n, step=1)
        matches = (windows[..., :-1] == suffix.unsqueeze(1)).all(dim=-1)
        vocab = scores.shape[-1]
        banned = scores.new_zeros((scores.shape[0], vocab + 1), dtype=torch.bool)
        banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=vocab), vocab), True)
        return scores.masked_fill(banned[:, :vocab], -math.inf)


class NoRepeatWindowLogitsProcessor:
    """The course's trick: ban every token generated within the last ``window`` steps.

    Only generated tokens count (positions from ``prompt_length`` on), so a prompt's words stay
    allowed, and left padding never matters.
    """

    def __init__(self, window: int, prompt_length: int) -> None:
        self.window = window
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        recent = input_ids[:, max(self.prompt_length, input_ids.shape[1] - self.window):]
        if recent.shape[1] == 0:
            return scores
        return scores.scatter(1, recent, -math.inf)


class MinNewTokensLengthLogitsProcessor:
    """Ban the end-of-sequence tokens until ``min_new_tokens`` tokens have been generated."""

    def __init__(self, prompt_length_to_skip: int, min_new_tokens: int,
                 eos_token_id: int | list[int] | torch.Tensor) -> None:
        self.prompt_length_to_skip = prompt_length_to_skip
        self.min_new_tokens = min_new_tokens
        self.eos_token_id = torch.as_tensor(eos_token_id).reshape(-1)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] - self.prompt_length_to_skip >= self.min_new_tokens:
            return scores
        # A mask over the vocabulary, not an index: an eos id beyond it is simply never banned.
        vocab = torch.arange(scores.shape[-1], device=scores.device)
        return scores.masked_fill(torch.isin(vocab, self.eos_token_id.to(scores.device)),
                                  -math.inf)


class SuppressTokensLogitsProcessor:
    """Never generate the given token ids (ids beyond the vocabulary are ignored)."""

    def __init__(self, suppress_tokens: list[int]) -> None:
        self.suppress_tokens = torch.tensor(sorted(set(suppress_tokens)), dtype=torch.long)
        self.mask: torch.Tensor | None = None  # (vocab,) built on the first call, then reused

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab, device = scores.shape[-1], scores.device
        if self.mask is None or self.mask.shape[0] != vocab or self.mask.device != device:
            ids = self.suppress_tokens.to(device)
            self.mask = torch.isin(torch.arange(vocab, device=device), ids)
        return scores.masked_fill(self.mask, -math.inf)


class SuppressTokensAtBeginLogitsProcessor:
    """Never generate the given ids as the first new token (the one after ``begin_index``
    tokens): Whisper's ``begin_suppress_tokens``, a blank or <|endoftext|> to open with."""

    def __init__(self, begin_suppress_tokens: list[int], begin_index: int) -> None:
        self.suppress = SuppressTokensLogitsProcessor(begin_suppress_tokens)
        self.begin_index = begin_index

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[-1] != self.begin_index:
            return scores
        return self.suppress(input_ids, scores)


class WhisperTimeStampLogitsProcessor:
    """Whisper's timestamp rules (openai's ``ApplyTimestampRules``, transformers' processor of
    this name), which keep timestamp tokens well formed.

    Whisper's vocabulary ends with <|notimestamps|> and then the timestamps <|0.00|>,
    <|0.02|>, ... (ids from ``no_timestamps_token_id + 1`` on); every text token comes before
    <|endoftext|> (``eos_token_id``). With timestamps on, a transcript reads
    ``<|0.00|> text <|2.40|><|2.40|> text <|5.00|><|endoftext|>``: segments of text, each
    between its start and end time. At each step, counting only the new tokens:

    1. <|notimestamps|> is never generated (it belongs in the prompt, if anywhere);
    2. timestamps come in pairs: after a pair (or at the start) comes text, so a timestamp
       after a timestamp is banned; after one lone timestamp (a segment's end) comes its
       pair (the next start) or <|endoftext|>, so text is banned;
    3. time never goes back: a timestamp below the last one is banned, and below the last one
       + 1 too unless it completes a pair, so every segment lasts at least one step;
    4. the first new token is a timestamp, at most ``max_initial_timestamp_index`` steps in;
    5. when the timestamps' probabilities together beat the most probable text token, the
       next token is a timestamp (all text is banned).
    """

    def __init__(self, no_timestamps_token_id: int, eos_token_id: int, begin_index: int,
                 max_initial_timestamp_index: int | None = None) -> None:
        self.no_timestamps_token_id = no_timestamps_token_id
        self.timestamp_begin = no_timestamps_token_id + 1
        self.eos_token_id = eos_token_id
        self.begin_index = begin_index
        self.max_initial_timestamp_index = max_initial_timestamp_index

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        first, eos = self.timestamp_begin, self.eos_token_id
        scores = scores.clone()
        scores[:, self.no_timestamps_token_id] = -math.inf  # 1.
        new = input_ids[:, self.begin_index:]
        rows, count = new.shape
        is_time = new >= first
        no = torch.zeros(rows, dtype=torch.bool, device=new.device)
        last = is_time[:, -1] if count >= 1 else no
        before_last = is_time[:, -2] if count >= 2 else ~no  # the start counts as a pair
        scores[last & before_last, first:] = -math.inf  # 2. a pair is complete: text next
        scores[last & ~before_last, :eos] = -math.inf  # 2. a segment ended: no text
        # 3. The last timestamp so far (the latest position holding one), or none.
        position = torch.arange(1, count + 1, device=new.device)
        latest = (is_time * position).argmax(dim=1, keepdim=True) if count else None
        if latest is not None:
            last_time = new.gather(1, latest).squeeze(1)
            floor = torch.where(last & ~before_last, last_time, last_time + 1)
            floor = torch.where(is_time.any(dim=1), floor, first)
            vocab = torch.arange(scores.shape[-1], device=scores.device)
            scores.masked_fill_((vocab >= first) & (vocab < floor[:, None]), -math.inf)
        if count == 0:  # 4.
            scores[:, :first] = -math.inf
            if self.max_initial_timestamp_index is not None:
                scores[:, first + self.max_initial_timestamp_index + 1:] = -math.inf
        # 5. The timestamps' total log-probability against the best text token's.
        logprobs = torch.log_softmax(scores.float(), dim=-1)
        time_mass = logprobs[:, first:].logsumexp(dim=-1)
        best_text = logprobs[:, :first].max(dim=-1).values
        scores[time_mass > best_text, :first] = -math.inf
        return scores


def build_processors(config: GenerationConfig, *, prompt_length: int,
                     eos_token_id: torch.Tensor | None,
                     padding_lengths: torch.Tensor | None) -> LogitsProcessorList:
    """The processors ``config`` asks for, in transformers' order (``_get_logits_processor``).

    First the penalties and bans that apply to every strategy, then, when sampling, the warpers
    (temperature, top-k, top-p, min-p) that reshape the distribution. ``padding_lengths``
    (rows,) is each row's left padding, which the repetition penalty skips.
    """
    processors = LogitsProcessorList()
    if config.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(
            config.repetition_penalty, prompt_ignore_length=padding_lengths))
    if config.no_repeat_ngram_size > 0:
        processors.append(NoRepeatNGramLogitsProcessor(config.no_repeat_ngram_size))
    if config.no_repeat_window > 0:
        processors.append(NoRepeatWindowLogitsProcessor(config.no_repeat_window, prompt_length))
    if config.min_new_tokens and eos_token_id is not None:
        processors.append(MinNewTokensLengthLogitsProcessor(
            prompt_length, config.min_new_tokens, eos_token_id))
    # bad_token_ids is the course's name for the same ban; one processor serves both.
    banned = (config.suppress_tokens or []) + (config.bad_token_ids or [])
    if banned:
        processors.append(SuppressTokensLogitsProcessor(banned))
    if config.do_sample:
        # Beam sampling must leave each beam a token besides the end-of-sequence ones.
        keep = 1 if config.num_beams == 1 else 1 + (
            1 if eos_token_id is None else eos_token_id.numel())
        if config.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(config.temperature))
        if config.top_k:
            processors.append(TopKLogitsWarper(config.top_k, min_tokens_to_keep=keep))
        if config.top_p is not None and config.top_p < 1.0:
            processors.append(TopPLogitsWarper(config.top_p, min_tokens_to_keep=keep))
        if config.min_p is not None:
            processors.append(MinPLogitsWarper(config.min_p, min_tokens_to_keep=keep))
    return processors
