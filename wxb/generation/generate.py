"""generate() and stream(): the two ways to decode with any decoder-only wxb model."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from wxb.errors import ConfigError
from wxb.generation.beam import beam_search
from wxb.generation.config import GenerationConfig
from wxb.generation.decoding import Decoding, prepare, sample_steps
from wxb.generation.encoder_decoder import decoder_view
from wxb.generation.logits import LogitsProcessor
from wxb.models.outputs import ModelOutput

SPECIAL_TOKENS = ("eos_token_id", "pad_token_id", "bos_token_id")


@dataclass
class GenerateOutput(ModelOutput):
    """What ``generate(..., return_dict_in_generate=True)`` returns (indexed as any output:
    ``out[0]`` is ``sequences``).

    ``sequences`` (batch * num_return_sequences, prompt + new); ``sequences_scores``
    (batch * num_return_sequences,), beam search only: each hypothesis' length-penalised
    log-probability.
    """

    sequences: torch.Tensor
    sequences_scores: torch.Tensor | None = None


def generate(model: Any, input_ids: Any = None,
             generation_config: GenerationConfig | None = None, *,
             attention_mask: torch.Tensor | None = None, tokenizer: Any = None,
             decoder_input_ids: Any = None, logits_processor: list[LogitsProcessor] | None = None,
             **kwargs: Any) -> torch.Tensor | GenerateOutput:
    """Continue each prompt; same settings, same tokens as transformers' ``model.generate``.

    For an encoder-decoder model (``config.is_encoder_decoder``: the Transformer, Seq2Seq, T5,
    Whisper), ``input_ids`` (batch, src) is the source, right-padded with ``attention_mask``
    (Whisper: log-mel features (batch, mels, frames)), and the output starts with the decoder's
    prompt: the start token, or ``decoder_input_ids`` (batch, n) or (n,).

    ``input_ids`` (batch, seq) token ids, left-padded with ``attention_mask`` (batch, seq)
    when prompts differ in length (a 1-D prompt counts as batch 1; None starts from the bos
    token). Settings come from ``generation_config`` updated by ``kwargs`` (its field names:
    ``max_new_tokens=50, do_sample=True, top_p=0.9, num_beams=4, ...``); special token ids
    left unset come from ``model.config``, and ``eos_token_id=None`` turns eos off.
    ``tokenizer`` is needed only for ``stop_strings``. ``logits_processor``: processors of
    one's own (``wxb.generation.logits``), applied after those the settings ask for, as in
    transformers. Prompt + new tokens must fit the model's context window, else ConfigError
    (``truncate_prompt=True`` drops the prompt's oldest tokens instead).

    Returns a LongTensor (batch * num_return_sequences, prompt + new), prompts included, rows
    that finished early padded with ``pad_token_id``; or a ``GenerateOutput`` with
    ``return_dict_in_generate=True``.
    """
    model, d = _prepare(model, input_ids, generation_config, attention_mask, tokenizer,
                        decoder_input_ids, logits_processor, kwargs)
    scores = None
    if d.config.num_beams > 1:
        sequences, scores = beam_search(model, d)
    else:
        sequences = _new_buffer(d)
        steps = sum(1 for _ in sample_steps(model, d, sequences))
        sequences = sequences[:, :d.input_ids.shape[1] + steps]
    if d.config.return_dict_in_generate:
        return GenerateOutput(sequences=sequences, sequences_scores=scores)
    return sequences


def stream(model: Any, input_ids: Any = None,
           generation_config: GenerationConfig | None = None, *,
           attention_mask: torch.Tensor | None = None, tokenizer: Any = None,
           decoder_input_ids: Any = None, logits_processor: list[LogitsProcessor] | None = None,
           **kwargs: Any) -> Iterator[torch.Tensor]:
    """Yield each step's new tokens (batch * num_return_sequences,) as soon as they exist.

    The same loop as ``generate``, so the tokens are exactly those ``generate`` returns after
    the prompt (with the same seed). Beam search cannot stream: its best hypothesis is known
    only at the end. Turn tokens into text with ``TextStreamer``.
    """
    model, d = _prepare(model, input_ids, generation_config, attention_mask, tokenizer,
                        decoder_input_ids, logits_processor, kwargs)
    if d.config.num_beams > 1:
        raise ConfigError("stream() cannot do beam search (num_beams > 1): the best beam is "
                          "known only at the end; use generate() instead")
    return sample_steps(model, d, _new_buffer(d))


def _prepare(model: Any, input_ids: Any, generation_config: GenerationConfig | None,
             attention_mask: torch.Tensor | None, tokenizer: Any, decoder_input_ids: Any,
             logits_processor: list[LogitsProcessor] | None,
             kwargs: dict[str, Any]) -> tuple[Any, Decoding]:
    """The model the loops call (an encoder-decoder's decoder over its encoded source) and
    the prepared request."""
    if getattr(model.config, "is_encoder_decoder", False):
        model, input_ids, attention_mask = decoder_view(model, input_ids, attention_mask,
                                                        decoder_input_ids)
    elif decoder_input_ids is not None:
        raise ConfigError("decoder_input_ids are for encoder-decoder models; a decoder-only "
                          "model continues input_ids")
    # As transformers: special token ids the config leaves unset come from the model's config,
    # then keyword arguments override, so generate(..., eos_token_id=None) turns eos off.
    config = generation_config or GenerationConfig()
    from_model = {name: getattr(model.config, name, None) for name in SPECIAL_TOKENS
                  if getattr(config, name) is None and name not in kwargs}
    config = config.updated(**from_model, **kwargs)
    return model, prepare(model, input_ids, config, attention_mask, tokenizer,
                          logits_processor)


def _new_buffer(d: Decoding) -> torch.Tensor:
    """(rows, max_length) token buffer holding the prompts; the loop fills the rest."""
    rows, prompt = d.input_ids.shape
    sequences = d.input_ids.new_empty(rows, d.max_length)
    sequences[:, :prompt] = d.input_ids
    return sequences
