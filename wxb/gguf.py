"""GGUF checkpoints (llama.cpp's single-file format) as wxb models and Hugging Face folders.

A GGUF file holds a model's hyper-parameters and tokenizer as metadata and its tensors, often
quantized in blocks, under llama.cpp's names. Loading one takes four steps:

    metadata (llama.block_count, ...)        -> LlamaConfig
    each tensor: dequantize (Q4_0/Q4_1/Q8_0/F16/BF16/F32) -> float32 (out, in)
    blk.N.attn_q / attn_k rows               -> un-permuted (llama.cpp's rotary layout)
    blk.N.ffn_gate, token_embd, ...          -> model.layers.N.mlp.gate_proj, ... (HF names)

``from_gguf`` gives a ``LlamaForCausalLM`` (float32 unless asked otherwise) whose logits equal
``transformers``' own GGUF loading; ``convert_gguf`` writes it, with the tokenizer from the
same file (``wxb.tokenizers.gguf``), as an ordinary Hugging Face folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wxb.errors import CheckpointError, ConfigError
from wxb.models.checkpoint import save_pretrained
from wxb.models.llama import LlamaConfig, LlamaForCausalLM
from wxb.tokenizers.gguf import GGUFFile, find_gguf, open_gguf, tokenizer_from_metadata

__all__ = ["SUPPORTED_ARCHITECTURES", "SUPPORTED_TYPES", "convert_gguf", "dequantize",
           "find_gguf", "from_gguf", "gguf_config", "gguf_state_dict", "permute_rotary",
           "unpermute_rotary"]

SUPPORTED_ARCHITECTURES = ("llama",)
# ggml type name -> (values per block, bytes per block)
BLOCKS = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
          "Q8_0": (32, 34)}
SUPPORTED_TYPES = tuple(BLOCKS)
# llama.cpp's tensor names -> Hugging Face's (blk.N. -> model.layers.N.)
GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
                "output": "lm_head"}
LAYER_NAMES = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
               "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
               "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
               "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
LAYER_TENSOR = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)")


# ---------------------------------------------------------------- dequantization

def dequantize(data: np.ndarray, type_name: str) -> np.ndarray:
    """One tensor's raw data, as ``open_gguf`` maps it, as float32 values.

    ``data``: (..., row) float32/float16 for F32/F16, or (..., row_bytes) uint8 for the block
    types; returns (..., row) float32. Each block of 32 values shares its scale ``d`` (an f16):

    - Q8_0 (34 bytes): d, then 32 int8 q; value = d * q.
    - Q4_0 (18 bytes): d, then 16 bytes of 4-bit q; value = d * (q - 8).
    - Q4_1 (20 bytes): d, a minimum m (f16), 16 bytes of q; value = d * q + m.

    In the 4-bit types byte j holds value j in its low nibble and value j + 16 in its high one.
    """
    if type_name not in BLOCKS:
        raise CheckpointError(f"GGUF tensor type {type_name} is not supported; wxb reads "
                              f"{', '.join(SUPPORTED_TYPES)}")
    if type_name in ("F32", "F16"):  # a copy: the reader's array is the read-only file map
        return np.array(data, dtype=np.float32)
    if type_name == "BF16":  # the top half of a float32: shift it back into place
        halves = np.ascontiguousarray(data).view(np.uint16).astype(np.uint32)
        return (halves << 16).view(np.float32)
    values, size = BLOCKS[type_name]
    shape = (*data.shape[:-1], data.shape[-1] // size * values)
    blocks = np.ascontiguousarray(data).reshape(-1, size)
    d = blocks[:, :2].view(np.float16).astype(np.float32)
    if type_name == "Q8_0":
        out = d * blocks[:, 2:].view(np.int8).astype(np.float32)
    else:
        packed = blocks[:, 4:] if type_name == "Q4_1" else blocks[:, 2:]
        q = np.concatenate([packed & 0x0F, packed >> 4], axis=1).astype(np.float32)
        if type_name == "Q4_0":
            out = d * (q - np.float32(8))
        else:
            out = d * q + blocks[:, 2:4].view(np.float16).astype(np.float32)
    return out.reshape(shape)


# ---------------------------------------------------------------- llama.cpp's q/k row order

def permute_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's reordering of q/k rows (``convert_hf_to_gguf.py``): per head, the rows of
    the two rotated halves (HF's rotate_half layout) are interleaved as pairs (GGML's layout).

    w: (heads * head_dim, ...) -> same shape.
    """
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    """The inverse of ``permute_rotary``: GGUF's q/k rows back in Hugging Face's order."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, half, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------- config and tensors

def gguf_config(metadata: dict[str, Any], tensor_names: list[str],
                source: str = "GGUF file") -> LlamaConfig:
    """The ``LlamaConfig`` a file's metadata describes (llama.cpp's ``llama.*`` keys)."""
    arch = metadata.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ConfigError(f"{source}: GGUF architecture {arch!r} is not supported; wxb loads "
                          f"{', '.join(SUPPORTED_ARCHITECTURES)}")

    def key(name: str, default: Any = None) -> Any:
        value = metadata.get(f"{arch}.{name}", default)
        if value is None:
            raise CheckpointError(f"{source} has no {arch}.{name}; the file is incomplete")
        return value

    heads = key("attention.head_count")
    hidden = key("embedding_length")
    names = set(tensor_names)
    if "rope_freqs.weight" in names:  # per-frequency factors that LlamaConfig cannot express
        raise CheckpointError(f"{source} scales its rotary frequencies with a rope_freqs tensor "
                              "(Llama-3.1 style); wxb reads GGUF files with rope scaling type "
                              "none or linear")
    values = {
        "vocab_size": key("vocab_size", len(metadata.get("tokenizer.ggml.tokens") or []) or None),
        "hidden_size": hidden,
        "intermediate_size": key("feed_forward_length"),
        "num_hidden_layers": key("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": key("attention.head_count_kv", heads),
        # key_length is the head width; llama.cpp rotates all of it (rope.dimension_count)
        "head_dim": key("attention.key_length", key("rope.dimension_count", hidden // heads)),
        "max_position_embeddings": key("context_length", 2048),
        "rms_norm_eps": key("attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": key("rope.freq_base", 10000.0),
        "rope_scaling": _rope_scaling(metadata, arch, source),
        # llama.cpp writes no output.weight when the head reuses the embedding matrix
        "tie_word_embeddings": "output.weight" not in names,
        "attention_bias": any(n.endswith(".attn_q.bias") for n in names),
        "mlp_bias": any(n.endswith(".ffn_up.bias") for n in names),
    }
    for field, name in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id"),
                        ("pad_token_id", "padding_token_id")):
        values[field] = metadata.get(f"tokenizer.ggml.{name}")
    return LlamaConfig.from_dict(values)


def _rope_scaling(metadata: dict[str, Any], arch: str, source: str) -> dict | None:
    kind = metadata.get(f"{arch}.rope.scaling.type", "none")
    if kind == "none":
        return None
    if kind == "linear":
        return {"rope_type": "linear",
                "factor": float(metadata.get(f"{arch}.rope.scaling.factor", 1.0))}
    raise ConfigError(f"{source}: rope scaling type {kind!r} is not supported; wxb reads none "
                      "and linear")


def gguf_state_dict(reader: GGUFFile, config: LlamaConfig,
                    source: str = "GGUF file") -> dict[str, torch.Tensor]:
    """The file's tensors dequantized to float32, under Hugging Face's LLaMA names."""
    state = {}
    for tensor in reader.tensors:
        name = _hf_name(tensor.name, source)
        w = dequantize(tensor.data, tensor.tensor_type.name)
        if ".q_proj." in name:
            w = unpermute_rotary(w, config.num_attention_heads)
        elif ".k_proj." in name:  # K rows were permuted per KV head, not per query head
            w = unpermute_rotary(w, config.num_key_value_heads)
        state[name] = torch.from_numpy(np.ascontiguousarray(w))
    return state


def _hf_name(name: str, source: str) -> str:
    base, _, suffix = name.rpartition(".")
    if base in GLOBAL_NAMES:
        return f"{GLOBAL_NAMES[base]}.{suffix}"
    match = LAYER_TENSOR.fullmatch(name)
    if match and match[2] in LAYER_NAMES:
        return f"model.layers.{match[1]}.{LAYER_NAMES[match[2]]}.{match[3]}"
    raise CheckpointError(f"{source} has a tensor {name} that a LLaMA model has no place for; "
                          f"wxb maps {', '.join(GLOBAL_NAMES)} and blk.N.{{"
                          f"{', '.join(LAYER_NAMES)}}}")


# ---------------------------------------------------------------- entry points

def from_gguf(path: str | Path, dtype: torch.dtype | None = None,
              **config_overrides: Any) -> LlamaForCausalLM:
    """Load a GGUF file (or the one in a folder) as a ``LlamaForCausalLM``, float32 by default.

    Quantized weights are expanded: the model takes the memory of its float32 parameters
    (540 MB for a 135M model), and computes exactly what a float32 checkpoint would.
    ``config_overrides`` change config fields, as in ``wxb.from_pretrained``.
    """
    file = find_gguf(path) or Path(path)
    reader = open_gguf(file)
    model = _build(reader, file, config_overrides)
    return model.to(dtype) if dtype is not None else model


def _build(reader: GGUFFile, file: Path, config_overrides: dict[str, Any]) -> LlamaForCausalLM:
    unsupported = sorted({t.tensor_type.name for t in reader.tensors} - set(BLOCKS))
    if unsupported:  # checked up front: one line, before any tensor is expanded
        raise CheckpointError(f"{file.name} holds {', '.join(unsupported)} tensors; wxb "
                              f"dequantizes {', '.join(SUPPORTED_TYPES)} (choose a Q8_0, Q4_0, "
                              "Q4_1, F16 or BF16 file of the model)")
    config = gguf_config(reader.metadata, [t.name for t in reader.tensors], file.name)
    if config_overrides:
        config = LlamaConfig.from_dict({**config.to_dict(), **config_overrides})
    state = gguf_state_dict(reader, config, file.name)
    model = LlamaForCausalLM(config)
    expected = model.state_dict()
    tied = {"lm_head.weight"} if config.tie_word_embeddings else set()
    missing = sorted(set(expected) - set(state) - tied)
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(p.shape)}"
             for k, p in expected.items() if k in state and state[k].shape != p.shape]
    if missing or unexpected or wrong:
        detail = "; ".join(f"{label}: {', '.join(keys[:4])}" for label, keys in
                           (("missing", missing), ("unexpected", unexpected),
                            ("shape (file vs model)", wrong)) if keys)
        raise CheckpointError(f"{file} does not fit the LLaMA its metadata describes ({detail})")
    model.load_state_dict(state, strict=False)  # a tied lm_head is the embedding already
    return model


def convert_gguf(path: str | Path, out: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write a GGUF file as a Hugging Face folder: config.json, model.safetensors (float32, or
    ``dtype``), tokenizer.json and tokenizer_config.json with the chat template."""
    file = find_gguf(path) or Path(path)
    reader = open_gguf(file)
    tokenizer = tokenizer_from_metadata(reader.metadata, file.name)  # fails early, before weights
    model = _build(reader, file, {})
    out = save_pretrained(model.to(dtype) if dtype is not None else model, out)
    tokenizer.save(out)
    return out
