"""What the encoder-decoder tasks share (translation, summarization): the ``model`` section,
the tokenizers and the model it builds, the folder they are saved in and loaded from, the
``generation`` section and batched decoding of texts.

A folder holds the model (config.json + model.safetensors) and its tokenizers: one, shared by
both sides, in the folder itself; or two, in ``source_tokenizer/`` and ``target_tokenizer/``.
Nothing here trains, so the pipelines load folders with it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from wxb.config import check_known_keys
from wxb.errors import ConfigError
from wxb.models import registry
from wxb.tasks.sections import Section, at_least

if TYPE_CHECKING:
    from wxb.models.base import PreTrainedModel
    from wxb.tokenizers.base import Tokenizer

MODEL_TYPES = ("seq2seq", "transformer", "marian", "t5")
# Families whose encoder and decoder share one embedding table, so one vocabulary.
ONE_VOCABULARY = ("t5",)
TOKENIZER_KEYS = ("tokenizer", "source_tokenizer", "target_tokenizer")
# The special tokens of a tokenizer trained here: padding first, so both sides pad with id 0.
VOCAB_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "eos": "[EOS]"}
BPE_SPECIALS = {"pad": "<pad>", "eos": "</s>"}
TOKENIZER_KINDS = ("char", "word", "bpe", "unigram")
# Special tokens by kind; unigram (T5's SentencePiece model) keeps T5's <pad>=0, </s>=1, <unk>=2.
KIND_SPECIALS = {"bpe": BPE_SPECIALS, "unigram": None}
SOURCE_TOKENIZER_DIR, TARGET_TOKENIZER_DIR = "source_tokenizer", "target_tokenizer"
SCORED_SPLITS = (("validation", "eval"), ("test", "test"))  # split -> its metrics' prefix


@dataclasses.dataclass
class ModelSection(Section):
    """``type`` (seq2seq, transformer, marian, t5) and the tokenizers: ``source_tokenizer``
    and ``target_tokenizer`` (folders, or settings such as ``{kind: bpe, vocab_size: 8000}``
    trained on the training pairs), or one ``tokenizer`` for both languages; the other keys
    are fields of the family's config. Or ``pretrained``: a folder holding an
    encoder-decoder and its tokenizer(s) (a Hugging Face T5 or Marian folder, or one a run
    saved), fine-tuned from there."""

    extra_fields = True
    type: str | None = None
    tokenizer: str | dict | None = None
    source_tokenizer: str | dict | None = None
    target_tokenizer: str | dict | None = None
    pretrained: str | None = None

    def check(self) -> None:
        if self.pretrained is not None:
            given = [k for k in ("type", *TOKENIZER_KEYS) if getattr(self, k) is not None]
            if given or self.extra:
                raise ConfigError(f"model.pretrained brings its own architecture and "
                                  f"tokenizer; drop {', '.join(given + list(self.extra))}")
            return
        if self.type not in MODEL_TYPES:
            raise ConfigError(f"model.type must be one of {', '.join(MODEL_TYPES)}; got "
                              f"{self.type!r}")
        check_known_keys(registry.model_class(self.type).config_class, self.extra,
                         f"{self.type} config field")
        given = [k for k in TOKENIZER_KEYS if getattr(self, k) is not None]
        if given not in (["tokenizer"], ["source_tokenizer", "target_tokenizer"]):
            raise ConfigError("model needs source_tokenizer and target_tokenizer (folders or "
                              "settings such as {kind: bpe, vocab_size: 8000}), or one "
                              "tokenizer for both languages")
        if self.type in ONE_VOCABULARY and self.tokenizer is None:
            raise ConfigError(f"a {self.type} model has one embedding table for both sides: "
                              "give model.tokenizer instead of source_tokenizer and "
                              "target_tokenizer")

    def to_dict(self) -> dict[str, Any]:
        # The tokenizer keys not given stay out: a shared tokenizer excludes the other two.
        return {k: v for k, v in super().to_dict().items()
                if k not in (*TOKENIZER_KEYS, "pretrained", "type") or v is not None}


def build_tokenizers(section: ModelSection,
                     pairs: list[tuple[str, str]]) -> tuple[Tokenizer, Tokenizer]:
    """The source and target tokenizers: folders, or trained on the training pairs; with
    ``tokenizer`` one vocabulary for both sides, trained on both."""
    if section.tokenizer is not None:
        shared = _tokenizer(section.tokenizer, [t for pair in pairs for t in pair],
                            "model.tokenizer")
        return shared, shared
    source = _tokenizer(section.source_tokenizer, [s for s, _ in pairs],
                        "model.source_tokenizer")
    target = _tokenizer(section.target_tokenizer, [t for _, t in pairs],
                        "model.target_tokenizer")
    if source.pad_token_id != target.pad_token_id:
        raise ConfigError(f"the source tokenizer pads with id {source.pad_token_id} and the "
                          f"target tokenizer with {target.pad_token_id}; the model has one "
                          "pad_token_id, so both need the same")
    return source, target


def _tokenizer(spec: str | dict, texts: list[str], field: str) -> Tokenizer:
    from wxb.tokenizers.train import tokenizer_from_settings

    kind = spec.get("kind") if isinstance(spec, dict) else None
    if isinstance(spec, dict) and kind not in TOKENIZER_KINDS:
        raise ConfigError(f"{field} is a folder or settings with kind one of "
                          f"{', '.join(TOKENIZER_KINDS)}; got {spec!r}")
    tokenizer = tokenizer_from_settings(spec, texts, field=field,
                                        special_tokens=KIND_SPECIALS.get(kind, VOCAB_SPECIALS))
    for role in ("pad", "eos"):
        if getattr(tokenizer, f"{role}_token_id") is None:
            raise ConfigError(f"{field} has no {role} token; translation needs one")
    return tokenizer


def build_encoder_decoder(section: ModelSection, source: Tokenizer, target: Tokenizer,
                            *, seed: int) -> PreTrainedModel:
    """The configured model, sized to the tokenizers; it starts decoding from the pad token
    (Marian's and T5's convention) and stops at the target's eos."""
    cls = registry.model_class(section.type)
    fields = section.extra
    values = {"vocab_size": source.vocab_size, "decoder_vocab_size": target.vocab_size,
              "pad_token_id": source.pad_token_id, "eos_token_id": target.eos_token_id,
              "decoder_start_token_id": target.pad_token_id}
    if section.type in ONE_VOCABULARY:
        del values["decoder_vocab_size"]
    if cls.config_class.model_type == "marian":
        values["share_encoder_decoder_embeddings"] = source is target
        if fields.get("share_encoder_decoder_embeddings") and source is not target:
            raise ConfigError("share_encoder_decoder_embeddings needs one vocabulary: give "
                              "model.tokenizer instead of source_tokenizer and target_tokenizer")
    torch.manual_seed(seed)
    return cls(cls.config_class.from_dict({**values, **fields}, strict=True))


def model_and_tokenizers(section: ModelSection, pairs: list[tuple[str, str]], *, seed: int
                         ) -> tuple[PreTrainedModel, Tokenizer, Tokenizer]:
    """The model to train and its source and target tokenizers: the ``pretrained`` folder's,
    or a new model sized to tokenizers built from (or trained on) the training pairs."""
    if section.pretrained is not None:
        model, source, target = load_encoder_decoder(section.pretrained)
        return model.train(), source, target
    source, target = build_tokenizers(section, pairs)
    return build_encoder_decoder(section, source, target, seed=seed), source, target


def save_encoder_decoder(model: PreTrainedModel, source: Tokenizer, target: Tokenizer,
                           folder: Path) -> Path:
    """The model and its tokenizers in one folder (one tokenizer, or one folder per side)."""
    model_dir = model.save_pretrained(folder)
    if source is target:
        source.save(model_dir)
    else:
        source.save(model_dir / SOURCE_TOKENIZER_DIR)
        target.save(model_dir / TARGET_TOKENIZER_DIR)
    return model_dir


def load_encoder_decoder(folder: str | Path) -> tuple[PreTrainedModel, Tokenizer, Tokenizer]:
    """What ``save_encoder_decoder`` wrote: the model (in eval mode) and its tokenizers."""
    from wxb.hub import from_pretrained, resolve
    from wxb.tokenizers.load import load_tokenizer

    folder = resolve(folder)
    model = from_pretrained(folder)
    if not getattr(model.config, "is_encoder_decoder", False):
        raise ConfigError(f"{folder} holds a {model.config.model_type} model; this task needs "
                          "an encoder-decoder (seq2seq, transformer, marian, t5)")
    if (folder / SOURCE_TOKENIZER_DIR).is_dir():
        source = load_tokenizer(folder / SOURCE_TOKENIZER_DIR)
        target = load_tokenizer(folder / TARGET_TOKENIZER_DIR)
    else:
        source = target = load_tokenizer(folder)
    return model.eval(), source, target


@dataclasses.dataclass
class GenerationSection(Section):
    """How the validation and test sources are decoded: ``generate``'s settings, and how
    many sources are decoded at once."""

    num_beams: int = 1
    max_new_tokens: int = 64
    length_penalty: float = 1.0
    batch_size: int = 64

    def check(self) -> None:
        for key in ("num_beams", "max_new_tokens", "batch_size"):
            at_least(f"generation.{key}", getattr(self, key), 1)

    def generate_kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k != "batch_size"}


@torch.no_grad()
def decode_texts(model: Any, source_tokenizer: Any, target_tokenizer: Any,
                    texts: Sequence[str], *, batch_size: int = 64,
                    max_source_length: int | None = None, **generate_kwargs: Any) -> list[str]:
    """Translate ``texts`` in batches (sorted by length, so little padding is decoded) and
    return them in the order given; ``generate_kwargs`` are ``generate``'s (``num_beams``,
    ``max_new_tokens``, ...)."""
    from wxb.generation.generate import generate

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[str] = [""] * len(texts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = source_tokenizer([texts[i] for i in chunk], padding=True,
                                 truncation=max_source_length is not None,
                                 max_length=max_source_length, return_tensors="pt")
        sequences = generate(model, batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device),
                             **generate_kwargs)
        # The first column is the decoder's start token.
        for i, text in zip(chunk, target_tokenizer.batch_decode(
                sequences[:, 1:].tolist(), skip_special_tokens=True), strict=True):
            out[i] = text.strip()
    return out


def score_splits(trainer: Any, encoded: dict[str, Any], splits: dict[str, Any],
                 score: Callable[[Any, str], tuple[dict[str, float], list[dict[str, str]]]]
                 ) -> tuple[dict[str, float], dict[str, list[dict[str, str]]]]:
    """The validation and test splits that exist, scored after training: each one's loss,
    and what ``score(pairs, name)`` measures on its decoded texts (metrics, samples), the
    metrics named ``eval_*`` and ``test_*``."""
    trainer.model.eval()
    metrics: dict[str, float] = {}
    samples: dict[str, list[dict[str, str]]] = {}
    for name, prefix in SCORED_SPLITS:
        if name in splits:
            metrics[f"{prefix}_loss"] = trainer.evaluate(encoded[name])["eval_loss"]
            scores, samples[name] = score(splits[name], name)
            metrics.update({f"{prefix}_{k}": v for k, v in scores.items()})
    return metrics, samples


def headline(metric: str, splits: dict[str, Any]) -> str | None:
    """``metric`` of the last split scored (test, if given), e.g. ``test_bleu``."""
    return next((f"{p}_{metric}" for n, p in reversed(SCORED_SPLITS) if n in splits), None)
