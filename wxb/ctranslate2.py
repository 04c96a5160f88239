"""CTranslate2 Whisper models (what faster-whisper runs) as Hugging Face Whisper folders.

A CTranslate2 model is a folder: ``model.bin`` (every weight, in CTranslate2's own binary
layout), ``config.json`` (Whisper's decoding lists: suppressed tokens, language ids, alignment
heads), ``vocabulary.json`` or ``vocabulary.txt`` (the token of each id) and, in faster-whisper's
folders, the Hugging Face ``tokenizer.json``. Importing one takes four steps:

    model.bin: header, variables (name, shape, dtype, bytes), aliases    -> arrays (read here)
    int8 / int16 weights with their saved scales, float16 / bfloat16       -> float32
    encoder/layer_N/self_attention/linear_0 (q, k and v fused), ...       -> model.encoder.layers.N
                                                                             .self_attn.q_proj, ...
    CTranslate2's config.json, the vocabulary, tokenizer.json             -> config.json,
        generation_config.json, tokenizer.json + tokenizer_config.json, preprocessor_config.json

The layout of ``model.bin`` (little-endian; ``ctranslate2/specs/model_spec.py`` writes it and
``src/models/model.cc`` reads it)::

    uint32 binary version (6 today)
    string spec name ("WhisperSpec"), uint32 spec revision (3)            binary version >= 2
    uint32 number of variables; each: string name, uint8 rank, uint32 x rank dims,
        uint8 dtype id (float32 int8 int16 int32 float16 bfloat16), uint32 byte count, bytes
    uint32 number of aliases; each: string alias, string variable        binary version >= 3
    a string: uint16 length including a final NUL, the UTF-8 bytes, the NUL

Hyper-parameters are variables too, of rank 0 (``encoder/num_heads``, ``decoder/pre_norm``). A
variable equal to an earlier one in name order is saved once and aliased (the output projection
is the token embedding's alias: Whisper ties them); an alias of a weight also names its scale.

What is exact and what is lossy: float32 files import bit for bit, float16 and bfloat16 ones
are widened exactly. An int8 file stores each weight row as ``q = round(w * 127 / max|row|)``
with ``scale = 127 / max|row|`` (int16: one scale per matrix); it imports as ``q / scale``, the
very weight CTranslate2 holds, but each value is up to half a step (``max|row| / 254``) off the
original, and CTranslate2's own int8 run also quantizes activations, so its outputs differ from
the dequantized float32 model's a little more.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wxb.errors import CheckpointError
from wxb.io import atomic_dir, atomic_save, atomic_write_json, read_json_object

__all__ = ["SUPPORTED_SPECS", "ModelBin", "SpecialTokens", "convert_ctranslate2", "dequantize",
           "is_ctranslate2_model", "preprocessor_config", "read_model_bin", "read_vocabulary",
           "whisper_config", "whisper_generation_config", "whisper_state_dict",
           "whisper_tokenizer_files"]

MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")
TOKENIZER_FILE = "tokenizer.json"
SUPPORTED_SPECS = ("WhisperSpec",)
# Version 4 gave each variable a dtype id and a byte count (older files name only an item
# size); Whisper came to CTranslate2 (3.0) with version 6, still the current one in 4.x.
BINARY_VERSIONS = (4, 5, 6)
WHISPER_REVISION = 3  # ctranslate2's WhisperSpec.revision; newer ones may move variables
# The dtype id is the index (CTranslate2's DataType enum); bfloat16 is read as its 16 raw bits.
STORED_TYPES = (("float32", np.float32), ("int8", np.int8), ("int16", np.int16),
                ("int32", np.int32), ("float16", np.float16), ("bfloat16", np.uint16))
# ctranslate2.specs.common_spec.Activation.GELU; revisions 1 and 2 (before CTranslate2 3.5
# numbered the GELU variants) stored 1 for it.
GELU = {1: 1, 2: 1, 3: 3}
# The flags a Whisper decoder has (CTranslate2's generic Transformer decoder can be otherwise).
WHISPER_FLAGS = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
# OpenAI's rule: the multilingual vocabulary has one token more than the English-only one
# (51864), large-v3's one more again. (CTranslate2 4.8 looks for the empty token at 50256 that
# only the multilingual vocabulary has.)
MULTILINGUAL_VOCAB = 51865


# ---------------------------------------------------------------- model.bin

@dataclass
class ModelBin:
    """The contents of one ``model.bin``: each variable as saved (an array over the file's
    memory map, dtype as stored) and the aliases (alias -> the variable it repeats)."""

    path: Path
    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(repr=False)
    dtypes: dict[str, str] = field(repr=False)
    aliases: dict[str, str] = field(repr=False)

    def resolve(self, name: str) -> str:
        """The variable ``name`` stands for (itself, or what it aliases)."""
        return self.aliases.get(name, name)

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) in self.variables

    def scalar(self, name: str, default: Any = None) -> Any:
        """A rank-0 variable (a hyper-parameter such as ``encoder/num_heads``) as a number."""
        if name not in self:
            return default
        return self.variables[self.resolve(name)].reshape(()).item()

    def tensors(self) -> list[str]:
        """The names of the weights (aliases included), without scalars and scales."""
        names = [*self.variables, *self.aliases]
        return sorted(n for n in names if self.variables[self.resolve(n)].ndim > 0
                      and not n.endswith("_scale"))

    def float32(self, name: str) -> np.ndarray:
        """The weight ``name`` as float32 (a fresh array), its scale applied if quantized."""
        target = self.resolve(name)
        dtype = self.dtypes[target]
        scale = self.variables.get(target + "_scale")
        if dtype in ("int8", "int16") and scale is None:
            raise CheckpointError(f"{self.path} has {dtype} {name} but no {target}_scale; the "
                                  "file is incomplete")
        if f"{target}_zero" in self.variables:
            raise CheckpointError(f"{self.path} quantizes {name} with a zero point (AWQ / "
                                  "GPTQ); wxb reads float32, float16, bfloat16, int8 and int16 "
                                  "CTranslate2 models")
        return dequantize(self.variables[target], dtype, scale, f"{self.path}: {name}")


def dequantize(values: np.ndarray, dtype: str, scale: np.ndarray | None = None,
               source: str = "CTranslate2 variable") -> np.ndarray:
    """One variable's stored values as float32.

    ``values``: the array as saved (bfloat16 as uint16 bits). int8 and int16 weights come with
    ``scale``: one per output row (int8; a conv kernel's rows are its output channels) or one
    for the tensor (int16), and ``w = q / scale``. Floats are widened, which is exact.
    """
    if dtype in ("int8", "int16"):
        s = np.asarray(scale, dtype=np.float32)
        s = s.reshape(s.shape + (1,) * (values.ndim - s.ndim))
        return values.astype(np.float32) / s
    if dtype in ("float32", "float16", "bfloat16"):
        from wxb.gguf import dequantize as widen  # the same widening as GGUF's F32/F16/BF16

        return widen(values, {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}[dtype])
    raise CheckpointError(f"{source} is {dtype}, which no Whisper weight is; wxb reads float32, "
                          "float16, bfloat16, int8 and int16 weights")


class _Cursor:
    """Reads ``model.bin``'s fields in order, with a clear error where the file ends early."""

    def __init__(self, data: np.ndarray, path: Path) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, size: int, what: str) -> np.ndarray:
        if self.pos + size > len(self.data):
            raise CheckpointError(
                f"{self.path} is truncated: {what} at byte {self.pos} needs {size} bytes, but "
                f"the file has {len(self.data)}; copy or download the model again")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what).tobytes(), "little")

    def string(self, what: str) -> str:
        raw = self.take(self.uint(2, what), what).tobytes()
        if not raw.endswith(b"\0"):
            raise CheckpointError(f"{self.path} is not a CTranslate2 model.bin: {what} at byte "
                                  f"{self.pos - len(raw)} is not a NUL-terminated string")
        return raw[:-1].decode("utf-8", errors="replace")


def _model_file(path: str | Path) -> Path:
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no {MODEL_FILE}" if path.is_dir() else f"{path} does not exist"
        raise CheckpointError(f"{where}; a CTranslate2 model is a folder with {MODEL_FILE}, "
                              f"{CONFIG_FILE} and {' or '.join(VOCABULARY_FILES)}")
    return file


def _header(cursor: _Cursor) -> tuple[int, str, int]:
    version = cursor.uint(4, "the binary version")
    if version not in BINARY_VERSIONS:
        raise CheckpointError(f"{cursor.path} is not a CTranslate2 model.bin wxb reads (binary "
                              f"version {version}; wxb reads versions "
                              f"{BINARY_VERSIONS[0]} to {BINARY_VERSIONS[-1]})")
    return version, cursor.string("the spec name"), cursor.uint(4, "the spec revision")


def read_model_bin(path: str | Path, specs: tuple[str, ...] = SUPPORTED_SPECS) -> ModelBin:
    """Read a ``model.bin`` (or the one in a folder); the tensors stay on the file's memory map.

    Only models of ``specs`` are read past the header: another spec is refused in one line.
    """
    file = _model_file(path)
    empty = file.stat().st_size == 0  # numpy cannot map an empty file
    data = np.zeros(0, np.uint8) if empty else np.memmap(file, dtype=np.uint8, mode="r")
    cursor = _Cursor(data, file)
    version, spec, revision = _header(cursor)
    if spec not in specs:
        raise CheckpointError(f"{file} is a CTranslate2 model of spec {spec or '(none)'}; wxb "
                              f"imports {', '.join(specs)}")
    if spec == "WhisperSpec" and revision > WHISPER_REVISION:
        raise CheckpointError(f"{file} is WhisperSpec revision {revision}; wxb reads revisions "
                              f"up to {WHISPER_REVISION} (a newer CTranslate2 wrote it)")
    variables, dtypes = {}, {}
    for i in range(cursor.uint(4, "the number of variables")):
        name = cursor.string(f"the name of variable {i}")
        rank = cursor.uint(1, f"the rank of {name}")
        shape = tuple(cursor.uint(4, f"the shape of {name}") for _ in range(rank))
        type_id = cursor.uint(1, f"the dtype of {name}")
        if type_id >= len(STORED_TYPES):
            raise CheckpointError(f"{file}: {name} has dtype id {type_id}, which CTranslate2 "
                                  f"does not define (0 to {len(STORED_TYPES) - 1})")
        dtype, np_type = STORED_TYPES[type_id]
        size = cursor.uint(4, f"the byte count of {name}")
        if size != np.dtype(np_type).itemsize * int(np.prod(shape)):
            raise CheckpointError(f"{file}: {name} claims {size} bytes for shape {shape} of "
                                  f"{dtype}; the file is corrupt")
        variables[name] = cursor.take(size, f"the data of {name}").view(np_type).reshape(shape)
        dtypes[name] = dtype
    aliases = {}
    for i in range(cursor.uint(4, "the number of aliases")):
        alias = cursor.string(f"alias {i}")
        aliases[alias] = cursor.string(f"the variable alias {alias} names")
        if aliases[alias] not in variables:
            raise CheckpointError(f"{file}: alias {alias} names {aliases[alias]}, which the file "
                                  "does not hold; the file is corrupt")
    if cursor.pos != len(data):
        raise CheckpointError(f"{file} has {len(data) - cursor.pos} bytes after its last alias; "
                              "it is corrupt or not a CTranslate2 model.bin")
    return ModelBin(file, version, spec, revision, variables, dtypes, aliases)


def is_ctranslate2_model(path: str | Path) -> bool:
    """Whether ``path`` is a CTranslate2 model: a folder (or the file itself) whose
    ``model.bin`` opens with CTranslate2's header, of any spec (an unsupported one is then
    refused by name). Hugging Face folders name their weights otherwise."""
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if file.name != MODEL_FILE or not file.is_file():
        return False
    with open(file, "rb") as f:
        head = np.frombuffer(f.read(4 + 2 + 256), dtype=np.uint8)
    try:
        _header(_Cursor(head, file))
    except CheckpointError:
        return False
    return True


def read_vocabulary(folder: str | Path) -> list[str]:
    """The token of each id: ``vocabulary.json`` (a JSON list) or, from older converters,
    ``vocabulary.txt`` (one token a line)."""
    folder = Path(folder)
    json_file, text_file = (folder / name for name in VOCABULARY_FILES)
    if json_file.is_file():
        tokens = json.loads(json_file.read_text(encoding="utf-8"))
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise CheckpointError(f"{json_file} must hold a JSON list of token strings")
        return tokens
    if text_file.is_file():
        return text_file.read_text(encoding="utf-8").removesuffix("\n").split("\n")
    raise CheckpointError(f"{folder} has no {' or '.join(VOCABULARY_FILES)}; a CTranslate2 "
                          "Whisper model keeps its tokens there")


# ---------------------------------------------------------------- weights: CTranslate2 -> HF

# CTranslate2 scope -> Hugging Face module, outside the layers
MODULES = {
    "encoder/conv1": "model.encoder.conv1", "encoder/conv2": "model.encoder.conv2",
    "encoder/position_encodings": "model.encoder.embed_positions",
    "encoder/layer_norm": "model.encoder.layer_norm",
    "decoder/embeddings": "model.decoder.embed_tokens",
    "decoder/position_encodings": "model.decoder.embed_positions",
    "decoder/layer_norm": "model.decoder.layer_norm",
    "decoder/projection": "proj_out",
}
# Within encoder/layer_N (the self-attention and ffn entries) or decoder/layer_N (all). A tuple
# is a fused matrix: its rows are the modules' rows, one after the other.
LAYER_MODULES = {
    "self_attention/layer_norm": "self_attn_layer_norm",
    "self_attention/linear_0": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
    "self_attention/linear_1": "self_attn.out_proj",
    "attention/layer_norm": "encoder_attn_layer_norm",
    "attention/linear_0": "encoder_attn.q_proj",
    "attention/linear_1": ("encoder_attn.k_proj", "encoder_attn.v_proj"),
    "attention/linear_2": "encoder_attn.out_proj",
    "ffn/layer_norm": "final_layer_norm",
    "ffn/linear_0": "fc1",
    "ffn/linear_1": "fc2",
}
LEAVES = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
          "encodings": "weight"}
LAYER = re.compile(r"(encoder|decoder)/layer_(\d+)/(.+)")


def whisper_state_dict(model: ModelBin) -> dict[str, torch.Tensor]:
    """The weights as float32 tensors under Hugging Face's ``WhisperForConditionalGeneration``
    names; ``proj_out.weight`` only when it is not the token embedding (Whisper ties them).

    The fused self-attention matrix splits back into q, k and v by rows, the cross-attention's
    into k and v. CTranslate2 fused a zero bias in for k (Hugging Face's k_proj has none); even a
    non-zero one would be dropped without loss: it adds ``q . b_k`` to every score of a query,
    the same for all keys, which the softmax cancels.
    """
    state: dict[str, torch.Tensor] = {}
    for name in model.tensors():
        scope, _, leaf = name.rpartition("/")
        layer = LAYER.fullmatch(scope)
        if layer:
            side, index, inner = layer.groups()
            prefix = f"model.{side}.layers.{index}."
            cross = inner.startswith("attention/")  # only decoder layers attend to the audio
            target = None if cross and side == "encoder" else LAYER_MODULES.get(inner)
        else:
            prefix, target = "", MODULES.get(scope)
        if target is None or leaf not in LEAVES:
            raise CheckpointError(f"{model.path} has a variable {name} that a Whisper model has "
                                  "no place for")
        if name == "decoder/projection/weight" and _tied(model):
            continue
        if name == "decoder/projection/bias":
            if np.any(model.float32(name)):
                raise CheckpointError(f"{model.path} has a non-zero decoder/projection/bias; a "
                                      "Whisper output projection has no bias")
            continue
        values = model.float32(name)
        if isinstance(target, str):
            state[f"{prefix}{target}.{LEAVES[leaf]}"] = torch.from_numpy(values)
            continue
        if values.shape[0] % len(target):
            raise CheckpointError(f"{model.path}: {name} has {values.shape[0]} rows, which do "
                                  f"not split into {len(target)} equal matrices")
        for part, piece in zip(target, np.split(values, len(target)), strict=True):
            if not (part.endswith("k_proj") and leaf == "bias"):  # copies: no shared storage
                state[f"{prefix}{part}.{LEAVES[leaf]}"] = torch.from_numpy(piece.copy())
    return state


def _tied(model: ModelBin) -> bool:
    """Whether the output projection is the token embedding (an alias, or equal values)."""
    projection, embedding = "decoder/projection/weight", "decoder/embeddings/weight"
    if projection not in model or model.resolve(projection) == model.resolve(embedding):
        return True
    return np.array_equal(model.float32(projection), model.float32(embedding))


def _layer_count(model: ModelBin, side: str) -> int:
    indices = {int(m[2]) for n in model.tensors() if (m := LAYER.fullmatch(n.rpartition("/")[0]))
               and m[1] == side}
    if indices != set(range(len(indices))) or not indices:
        raise CheckpointError(f"{model.path} has {side} layers {sorted(indices)}; a Whisper model "
                              "has layers 0 to N-1 on each side")
    return len(indices)


def _expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Hugging Face Whisper with ``config``, and its shape."""
    d, mels = config["d_model"], config["num_mel_bins"]
    shapes = {"model.encoder.conv1.weight": (d, mels, 3), "model.encoder.conv1.bias": (d,),
              "model.encoder.conv2.weight": (d, d, 3), "model.encoder.conv2.bias": (d,),
              "model.encoder.embed_positions.weight": (config["max_source_positions"], d),
              "model.decoder.embed_positions.weight": (config["max_target_positions"], d),
              "model.decoder.embed_tokens.weight": (config["vocab_size"], d)}
    if not config["tie_word_embeddings"]:
        shapes["proj_out.weight"] = (config["vocab_size"], d)
    for norm in ("model.encoder.layer_norm", "model.decoder.layer_norm"):
        shapes.update({f"{norm}.weight": (d,), f"{norm}.bias": (d,)})
    for side in ("encoder", "decoder"):
        ffn = config[f"{side}_ffn_dim"]
        modules = {"fc1": (ffn, d), "fc2": (d, ffn), "self_attn_layer_norm": (d,),
                   "final_layer_norm": (d,)}
        attentions = ("self_attn", "encoder_attn") if side == "decoder" else ("self_attn",)
        for attention in attentions:
            modules.update({f"{attention}.{p}": (d, d)
                            for p in ("q_proj", "k_proj", "v_proj", "out_proj")})
        if side == "decoder":
            modules["encoder_attn_layer_norm"] = (d,)
        for i in range(config[f"{side}_layers"]):
            for module, shape in modules.items():
                name = f"model.{side}.layers.{i}.{module}"
                shapes[f"{name}.weight"] = shape
                if not module.endswith("k_proj"):
                    shapes[f"{name}.bias"] = shape[:1]
    return shapes


# ---------------------------------------------------------------- configs


@dataclass
class SpecialTokens:
    """The ids of Whisper's control tokens in a vocabulary (English-only and multilingual
    vocabularies put them at different ids)."""

    eot: int
    sot: int
    translate: int | None
    transcribe: int | None
    prev: int | None
    no_timestamps: int
    languages: dict[str, int]  # "<|en|>" -> id: the tokens between sot and translate

    @classmethod
    def find(cls, vocabulary: list[str], source: str) -> SpecialTokens:
        ids = {t: i for i, t in enumerate(vocabulary) if t.startswith("<|") and t.endswith("|>")}
        for required in ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"):
            if required not in ids:
                raise CheckpointError(f"{source} has no {required}; it is not a Whisper "
                                      "vocabulary")
        sot, translate = ids["<|startoftranscript|>"], ids.get("<|translate|>")
        end = translate if translate is not None else ids["<|notimestamps|>"]
        languages = {t: i for t, i in ids.items() if sot < i < end
                     and re.fullmatch(r"<\|[a-z]{2,3}\|>", t)}
        return cls(ids["<|endoftext|>"], sot, translate, ids.get("<|transcribe|>"),
                   ids.get("<|startofprev|>"), ids["<|notimestamps|>"], languages)


def whisper_config(model: ModelBin, vocabulary: list[str]) -> dict[str, Any]:
    """The Hugging Face ``config.json`` of the model: sizes from the tensors, heads from the
    file's scalars, token ids from the vocabulary. CTranslate2's config.json (suppressed tokens,
    alignment heads) goes to the generation config: ``transformers`` 5 warns about generation
    settings in config.json."""
    flags = {**WHISPER_FLAGS, "decoder/activation": GELU.get(model.revision)}
    for flag, expected in flags.items():
        if model.scalar(flag, expected) != expected:
            raise CheckpointError(f"{model.path}: {flag} is {model.scalar(flag)}, not "
                                  f"{expected} as in Whisper; wxb imports Whisper models only")
    for name in ("decoder/embeddings/weight", "encoder/conv1/weight",
                 "encoder/position_encodings/encodings", "decoder/position_encodings/encodings",
                 "encoder/layer_0/ffn/linear_0/weight", "decoder/layer_0/ffn/linear_0/weight"):
        if name not in model:
            raise CheckpointError(f"{model.path} has no {name}; it is not a whole Whisper model")
    shape = {name: model.variables[model.resolve(name)].shape for name in model.tensors()}
    vocab_size, d_model = shape["decoder/embeddings/weight"]
    if len(vocabulary) != vocab_size:
        raise CheckpointError(f"{model.path.parent}'s vocabulary has {len(vocabulary)} tokens "
                              f"but the model {vocab_size}; they come from different models")
    tokens = SpecialTokens.find(vocabulary, str(model.path.parent))
    config = {
        "model_type": "whisper", "architectures": ["WhisperForConditionalGeneration"],
        "vocab_size": vocab_size, "d_model": d_model,
        "num_mel_bins": shape["encoder/conv1/weight"][1],
        "encoder_layers": _layer_count(model, "encoder"),
        "encoder_attention_heads": model.scalar("encoder/num_heads"),
        "encoder_ffn_dim": shape["encoder/layer_0/ffn/linear_0/weight"][0],
        "decoder_layers": _layer_count(model, "decoder"),
        "decoder_attention_heads": model.scalar("decoder/num_heads"),
        "decoder_ffn_dim": shape["decoder/layer_0/ffn/linear_0/weight"][0],
        "max_source_positions": shape["encoder/position_encodings/encodings"][0],
        "max_target_positions": shape["decoder/position_encodings/encodings"][0],
        "activation_function": "gelu", "scale_embedding": False,
        "tie_word_embeddings": _tied(model), "is_encoder_decoder": True, "use_cache": True,
        "bos_token_id": tokens.eot, "eos_token_id": tokens.eot, "pad_token_id": tokens.eot,
        "decoder_start_token_id": tokens.sot,
    }
    for heads in ("encoder_attention_heads", "decoder_attention_heads"):
        if not config[heads] or d_model % config[heads]:
            raise CheckpointError(f"{model.path}: {config[heads]} {heads.split('_')[0]} heads "
                                  f"do not divide d_model {d_model}")
    return config


def whisper_generation_config(config: dict[str, Any], ct2_config: dict[str, Any],
                              vocabulary: list[str]) -> dict[str, Any]:
    """``generation_config.json`` as ``transformers``' Whisper ``generate`` reads it: the
    start, end and no-timestamps tokens, suppression, alignment heads and, for a multilingual
    model, ``lang_to_id``/``task_to_id`` with task "transcribe" (OpenAI's default; the language
    is detected unless given)."""
    tokens = SpecialTokens.find(vocabulary, "the vocabulary")
    multilingual = config["vocab_size"] >= MULTILINGUAL_VOCAB
    values = {key: config[key] for key in ("decoder_start_token_id", "bos_token_id",
                                           "eos_token_id", "pad_token_id")}
    for ours, theirs in (("suppress_tokens", "suppress_ids"),
                         ("begin_suppress_tokens", "suppress_ids_begin")):
        if ct2_config.get(theirs) is not None:
            values[ours] = list(ct2_config[theirs])
    values.update({"max_length": config["max_target_positions"],
                   "no_timestamps_token_id": tokens.no_timestamps,
                   "max_initial_timestamp_index": 50, "return_timestamps": False,
                   "is_multilingual": multilingual})
    if tokens.prev is not None:
        values["prev_sot_token_id"] = tokens.prev
    if ct2_config.get("alignment_heads"):
        values["alignment_heads"] = [list(pair) for pair in ct2_config["alignment_heads"]]
    if multilingual:
        if tokens.translate is None or tokens.transcribe is None or not tokens.languages:
            raise CheckpointError("the vocabulary of this multilingual model lacks <|translate|>,"
                                  " <|transcribe|> or language tokens")
        values.update({"lang_to_id": tokens.languages, "task": "transcribe",
                       "task_to_id": {"transcribe": tokens.transcribe,
                                      "translate": tokens.translate}})
    return values


def preprocessor_config(num_mel_bins: int) -> dict[str, Any]:
    """``preprocessor_config.json`` of ``transformers``' WhisperFeatureExtractor: 16 kHz,
    30-second windows, n_fft 400, hop 160, ``num_mel_bins`` log-mel bins."""
    return {"feature_extractor_type": "WhisperFeatureExtractor",
            "processor_class": "WhisperProcessor", "feature_size": num_mel_bins,
            "sampling_rate": 16000, "hop_length": 160, "n_fft": 400, "chunk_length": 30,
            "n_samples": 480000, "nb_max_frames": 3000, "padding_side": "right",
            "padding_value": 0.0, "return_attention_mask": False}


# ---------------------------------------------------------------- tokenizer files

def whisper_tokenizer_files(tokenizer: dict[str, Any], vocabulary: list[str],
                            source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tokenizer.json`` and ``tokenizer_config.json`` for ``transformers``'
    WhisperTokenizer(Fast) and wxb: the model's tokenizer.json, checked against the vocabulary
    id by id, with the tokens only the vocabulary has (the timestamps ``<|0.00|>`` ...
    ``<|30.00|>``) added as ordinary added tokens, as the Hugging Face Hub's Whisper tokenizers
    carry them. ``transformers`` takes the id after the last special token for the first
    timestamp, so the special tokens end with ``<|notimestamps|>``."""
    known = dict(tokenizer.get("model", {}).get("vocab") or {})
    added = list(tokenizer.get("added_tokens") or [])
    known.update({token["content"]: token["id"] for token in added})
    by_id = {i: t for t, i in known.items()}
    for i, token in enumerate(vocabulary):
        if by_id.get(i, token) != token:
            raise CheckpointError(f"{source} does not belong to this model: id {i} is "
                                  f"{by_id[i]!r} there and {token!r} in the vocabulary")
    extra = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": False}
             for i, t in enumerate(vocabulary) if i not in by_id]
    special = [token["content"] for token in sorted(added, key=lambda t: t["id"])
               if token.get("special")]
    eot = "<|endoftext|>"
    config = {"tokenizer_class": "WhisperTokenizer", "processor_class": "WhisperProcessor",
              "bos_token": eot, "eos_token": eot, "unk_token": eot, "pad_token": eot,
              "additional_special_tokens": special, "add_prefix_space": False,
              "errors": "replace", "model_max_length": 1024,
              "clean_up_tokenization_spaces": False}
    return {**tokenizer, "added_tokens": added + extra}, config


# ---------------------------------------------------------------- entry point

def convert_ctranslate2(path: str | Path, out: str | Path, dtype: str | None = None) -> Path:
    """Write a CTranslate2 Whisper folder (faster-whisper's) as a Hugging Face Whisper folder:
    config.json, model.safetensors (float32, or ``dtype``: float16 / bfloat16),
    generation_config.json, tokenizer.json, tokenizer_config.json and preprocessor_config.json.

    The folder appears whole or not at all (written aside, then renamed into place).
    """
    from safetensors.torch import save_file

    from wxb.hub import DTYPES

    if dtype is not None and dtype not in DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}")
    folder, out = Path(path), Path(out)
    model = read_model_bin(folder)  # refuses another spec before anything else is read
    folder = model.path.parent
    if out.resolve() == folder.resolve():
        raise CheckpointError(f"{out} is the CTranslate2 folder itself; write the Hugging Face "
                              "folder elsewhere")
    ct2_config = read_json_object(folder / CONFIG_FILE, CheckpointError) if (
        folder / CONFIG_FILE).is_file() else {}
    vocabulary = read_vocabulary(folder)
    if not (folder / TOKENIZER_FILE).is_file():
        raise CheckpointError(f"{folder} has no {TOKENIZER_FILE}; faster-whisper folders carry "
                              "the Hugging Face tokenizer of their model: copy it in beside "
                              f"{MODEL_FILE}")
    tokenizer, tokenizer_config = whisper_tokenizer_files(
        read_json_object(folder / TOKENIZER_FILE, CheckpointError), vocabulary,
        str(folder / TOKENIZER_FILE))
    config = whisper_config(model, vocabulary)
    state = whisper_state_dict(model)
    expected = _expected_shapes(config)
    wrong = [f"{k} {tuple(state[k].shape)} vs {v}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != v]
    missing = sorted(set(expected) - set(state))
    if missing or wrong:
        detail = "; ".join(f"{label}: {', '.join(keys[:4])}" for label, keys in
                           (("missing", missing), ("shape (file vs config)", wrong)) if keys)
        raise CheckpointError(f"{model.path} does not hold the Whisper its sizes describe "
                              f"({detail})")
    if dtype is not None:
        state = {k: v.to(DTYPES[dtype]) for k, v in state.items()}
    config["dtype"] = dtype or "float32"
    generation = whisper_generation_config(config, ct2_config, vocabulary)
    with atomic_dir(out) as tmp:
        atomic_save(tmp / "model.safetensors",
                    lambda file: save_file(state, str(file), metadata={"format": "pt"}))
        atomic_write_json(tmp / "config.json", config)
        atomic_write_json(tmp / "generation_config.json", generation)
        atomic_write_json(tmp / "preprocessor_config.json",
                          preprocessor_config(config["num_mel_bins"]))
        atomic_write_json(tmp / "tokenizer.json", tokenizer)
        atomic_write_json(tmp / "tokenizer_config.json", tokenizer_config)
    return out
