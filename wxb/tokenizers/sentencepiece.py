"""T5's tokenizer: a SentencePiece Unigram model plus ``<extra_id_*>`` sentinels.

T5 (and mT5, Flan-T5) splits text with a SentencePiece *Unigram* model: every piece has a
log-probability and a word is cut into the pieces of highest total score (Viterbi). Words
start with ``▁`` (U+2581, SentencePiece's visible space). On top of the pieces come the
sentinels ``<extra_id_0>`` .. ``<extra_id_{n-1}>`` that mark the spans T5's span-corruption
objective masks out. As in ``transformers``, they follow the vocabulary counting *down*:
in t5-small (32000 pieces, 100 sentinels) ``<extra_id_0>`` is 32099 and ``<extra_id_99>``
is 32000.

Three ways in, one class out (``T5Tokenizer``, an ``HFTokenizer`` that knows its sentinels):

- a folder with ``tokenizer.json`` (``load_tokenizer``; the file's own pipeline is used);
- a folder with only ``spiece.model`` (the original T5 layout): ``from_sentencepiece`` reads
  the model proto and builds the same ``tokenizers`` pipeline ``transformers``' T5Tokenizer
  builds from it;
- texts: ``train_t5_unigram`` trains a Unigram model with the ``tokenizers`` library.

``save`` writes ``tokenizer.json`` and a ``tokenizer_config.json`` naming ``T5Tokenizer``, so
``transformers.AutoTokenizer`` loads the folder as T5's tokenizer with the same ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wxb.errors import ConfigError, DataError
from wxb.tokenizers.base import Tokenizer
from wxb.tokenizers.hf import HFTokenizer

T5_SPECIALS = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"}  # ids 0, 1, 2, in this order
SPACE = "▁"
# What transformers writes in tokenizer_config.json for T5; wxb's loader reads them back from
# the vocabulary instead, so they are not options of the class.
HF_ONLY_KEYS = ("tokenizer_class", "extra_ids", "additional_special_tokens")


def sentinel(index: int) -> str:
    """The ``index``-th sentinel token: ``sentinel(0) == "<extra_id_0>"``."""
    return f"<extra_id_{index}>"


def sentinel_ids(tokenizer: Tokenizer) -> list[int]:
    """Ids of ``<extra_id_0>``, ``<extra_id_1>``, ... in that order, for any wxb tokenizer
    (empty when the vocabulary has none)."""
    ids: list[int] = []
    while (found := tokenizer.token_to_id(sentinel(len(ids)))) is not None:
        ids.append(found)
    return ids


class T5Tokenizer(HFTokenizer):
    """An ``HFTokenizer`` for T5: ``</s>`` ends every sequence, ``<pad>`` pads, and the
    sentinels are special tokens (matched whole in text, dropped by
    ``decode(..., skip_special_tokens=True)``), as in ``transformers``."""

    kind = "t5"

    def __init__(self, backend: Any, **kwargs: Any) -> None:
        # T5's defaults for the roles a tokenizer_config.json leaves out (transformers' too).
        kwargs["special_tokens"] = {**T5_SPECIALS, **(kwargs.get("special_tokens") or {})}
        super().__init__(backend, **kwargs)
        self.extra_ids = len(sentinel_ids(self))

    @classmethod
    def from_sentencepiece(cls, path: str | Path, *, extra_ids: int = 100,
                           **kwargs: Any) -> T5Tokenizer:
        """Convert a SentencePiece ``spiece.model`` as ``transformers`` does, adding
        ``extra_ids`` sentinels after its pieces."""
        proto = read_sentencepiece_model(path)
        pieces = [(p.piece, p.score) for p in proto.pieces]
        backend = t5_backend(pieces, extra_ids=extra_ids, unk_id=proto.trainer_spec.unk_id,
                             precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap)
        return cls(backend, **kwargs)

    def get_sentinel_tokens(self) -> list[str]:
        """``["<extra_id_0>", ...]``, in index order (transformers' method of that name)."""
        return [sentinel(i) for i in range(self.extra_ids)]

    def get_sentinel_token_ids(self) -> list[int]:
        """The ids of ``get_sentinel_tokens()``, in the same order."""
        return sentinel_ids(self)

    @property
    def all_special_ids(self) -> list[int]:
        return sorted({*super().all_special_ids, *sentinel_ids(self)})

    def options(self) -> dict[str, Any]:
        # The HF-only keys make transformers build its T5Tokenizer (with these sentinels as
        # additional special tokens) from the folder; _from_files drops them again.
        return {**super().options(), "tokenizer_class": "T5Tokenizer",
                "extra_ids": self.extra_ids,
                "additional_special_tokens": self.get_sentinel_tokens()}

    @classmethod
    def _from_files(cls, folder: Path, options: dict[str, Any]) -> T5Tokenizer:
        options = {k: v for k, v in options.items() if k not in HF_ONLY_KEYS}
        return super()._from_files(folder, options)


def read_sentencepiece_model(path: str | Path) -> Any:
    """The ``ModelProto`` of a SentencePiece ``.model`` file (pieces, scores, normalizer)."""
    path = Path(path)
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as err:  # sentencepiece, or the protobuf package it parses with
        raise ConfigError(f"reading {path.name} needs the sentencepiece and protobuf packages "
                          f"({err}); pip install 'wxb[text]'") from None
    if not path.is_file():
        raise DataError(f"{path} does not exist; give a SentencePiece .model file")
    proto = sentencepiece_model_pb2.ModelProto()
    try:
        proto.ParseFromString(path.read_bytes())
    except Exception as err:  # protobuf's DecodeError and friends
        raise DataError(f"{path} is not a SentencePiece model ({err})") from None
    if not proto.pieces:
        raise DataError(f"{path} is not a SentencePiece model (it holds no pieces)")
    spec = sentencepiece_model_pb2.TrainerSpec
    if proto.trainer_spec.model_type != spec.UNIGRAM:
        kind = spec.ModelType.Name(proto.trainer_spec.model_type)
        raise DataError(f"{path} is a SentencePiece {kind} model; wxb reads Unigram models "
                        "(T5's) from spiece.model")
    return proto


def t5_backend(pieces: list[tuple[str, float]], *, extra_ids: int, unk_id: int = 2,
               precompiled_charsmap: bytes = b"",
               specials: dict[str, str] | None = None) -> Any:
    """A ``tokenizers.Tokenizer`` equal to the one ``transformers``' T5Tokenizer (5.x) builds.

    ``pieces`` are (piece, log-probability) in id order; ``specials`` (default
    ``T5_SPECIALS``) name the pad, eos and unk pieces among them. The pipeline is
    transformers': SentencePiece's precompiled normalization table (NFKC and its whitespace
    rules) when the model has one; words split at whitespace, each given a leading ``▁`` (so
    runs of spaces, tabs and newlines all read as one word boundary, as SentencePiece's
    ``remove_extra_whitespaces`` does); ``</s>`` appended by the post-processor.
    """
    from tokenizers import AddedToken, decoders, models, normalizers, processors
    from tokenizers import Tokenizer as Backend

    specials = specials or T5_SPECIALS
    if extra_ids < 0:
        raise ConfigError(f"extra_ids must be >= 0, got {extra_ids}")
    vocab = [*pieces, *((sentinel(i), 0.0) for i in reversed(range(extra_ids)))]
    backend = Backend(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    missing = [t for t in specials.values() if backend.token_to_id(t) is None]
    if missing:
        raise DataError(f"the vocabulary lacks the special token {missing[0]!r}; a T5 "
                        f"tokenizer needs {', '.join(specials.values())}")
    if precompiled_charsmap:
        backend.normalizer = normalizers.Precompiled(precompiled_charsmap)
    backend.pre_tokenizer = _words_with_space()
    backend.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always", split=True)
    # Special tokens match the raw text whole (normalized=False), before the Unigram model.
    names = [*specials.values(), *(sentinel(i) for i in reversed(range(extra_ids)))]
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names])
    eos = specials["eos"]
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", eos], pair=["$A", eos, "$B", eos],
        special_tokens=[(eos, backend.token_to_id(eos))])
    return backend


def train_t5_unigram(texts: Iterable[str], *, vocab_size: int = 8000, extra_ids: int = 100,
                     special_tokens: dict[str, str] | None = None) -> T5Tokenizer:
    """Train a T5-style tokenizer on ``texts`` with the ``tokenizers`` library's Unigram
    trainer: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2, at most ``vocab_size`` pieces in
    all, then ``extra_ids`` sentinels (so the model's vocabulary is ``vocab_size +
    extra_ids``, as t5-small's 32000 + 100).

    ``special_tokens`` may rename the pad, eos and unk tokens; their ids stay 0, 1, 2, which
    T5 and transformers' T5Tokenizer assume. There is no normalizer: transformers'
    T5Tokenizer keeps only a SentencePiece precompiled one, so any other would make the two
    disagree.
    """
    from tokenizers import Tokenizer as Backend
    from tokenizers import models, trainers

    specials = dict(T5_SPECIALS)
    for role, token in (special_tokens or {}).items():
        if role not in specials:
            raise ConfigError(f"a unigram tokenizer's special tokens are "
                              f"{', '.join(specials)}; got {role!r}")
        specials[role] = token
    if vocab_size <= len(specials):
        raise ConfigError(f"vocab_size must be > {len(specials)}, got {vocab_size}")
    trainee = Backend(models.Unigram())
    # The trainer sees the words as the finished tokenizer will cut them (t5_backend's).
    trainee.pre_tokenizer = _words_with_space()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(specials.values()),
                                      unk_token=specials["unk"], show_progress=False)
    trainee.train_from_iterator(texts, trainer)
    pieces = [(piece, score) for piece, score in json.loads(trainee.to_str())["model"]["vocab"]]
    backend = t5_backend(pieces, extra_ids=extra_ids, unk_id=2, specials=specials)
    return T5Tokenizer(backend, special_tokens=specials)


def _words_with_space() -> Any:
    """Split at whitespace, then prefix each word with ``▁``: T5's pre-tokenizer."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always", split=True)])
