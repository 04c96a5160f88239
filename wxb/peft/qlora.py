"""QLoRA's 4-bit base weights (Dettmers et al. 2023): NormalFloat-4 with double quantization.

A frozen weight W (out, in) is cut into blocks of 64 consecutive values (row-major). Each block
keeps its absolute maximum, and each value the index of the nearest of 16 code values:

    code = argmin_j | w / absmax_block - NF4[j] |        w ~= NF4[code] * absmax_block

NF4's 16 values are quantiles of N(0, 1) scaled to [-1, 1]: pretrained weights are roughly
normal, so each code is used about equally often. Two codes share a byte (the first in the
high nibble). Double quantization then stores the absmax values themselves in 8 bits: their
mean is subtracted and the rest is quantized in blocks of 256 with bitsandbytes' 8-bit
dynamic map, leaving one float32 per 256 blocks plus the mean. Per weight that is

    4 + 8 / 64 + 32 / (64 * 256) = 4.127 bits        (fp32: 32 bits, so 0.129x)

``Linear4bit`` dequantizes W in its forward pass, for one matmul, and again in the backward
pass instead of keeping it: the dense weights never all live at once. LoRA's A and B sit on
top in full precision (``wxb.peft.lora``).

    quantize_model(model, skip=["classifier"])     every nn.Linear but lm_head and tied ones
    q = quantize_nf4(w); w_hat = dequantize_nf4(q)
    quantized_bytes(model)                         storage of the 4-bit layers

The layout (code book, nibble order, absmax codes, nested scales and offset) is that of
bitsandbytes' ``quantize_4bit(quant_type="nf4", compress_statistics=True)``; the tests check
it byte for byte. It is plain PyTorch, so it runs on CPU and on CUDA alike with no compiled
extension; bitsandbytes' fused CUDA kernels are faster but are not used here.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wxb.errors import ConfigError

NESTED_BLOCKSIZE = 256  # blocks of absmax values quantized together (the paper's choice)
STATS = ("absmax", "nested_absmax", "nested_offset")  # float32 scales; never cast to 16 bits


def normal_float_code(offset: float = 0.9677083) -> torch.Tensor:
    """NF4, built as in the QLoRA paper: 8 positive and 7 negative quantiles of N(0, 1), plus
    an exact zero, divided by the largest so they span [-1, 1]. (16,) float32, ascending.

    The quantiles are taken at probabilities evenly spaced from ``offset`` down to 1/2 (9
    points on the positive side, 8 on the negative, the 1/2 dropped: it is the zero). The
    outermost probability must stop short of 1, whose quantile is infinite; ``offset`` =
    1 - (1/32 + 1/30) / 2 = 0.9677083 is the paper's (and bitsandbytes') choice.
    """
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double())
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double())
    values = torch.cat([negative, torch.zeros(1, dtype=torch.float64), positive]).float()
    values = values.sort().values
    return values / values.max()


NF4 = normal_float_code()
"""The 16 NF4 code values (float32, ascending, from -1 to 1 with an exact 0): the quantiles
of N(0, 1) normalised to [-1, 1] of the QLoRA paper, equal to the constants bitsandbytes
publishes. Index 7 is 0."""


def dynamic_map() -> torch.Tensor:
    """bitsandbytes' signed 8-bit dynamic map (Dettmers 2015), which quantizes the absmax
    values in double quantization. (256,) float32, ascending, from -0.99297 to 1.

    A byte is a sign, a run of zero bits giving a decimal exponent 10^-6 ... 10^0, a one,
    and a linear fraction in the bits left: small magnitudes get fewer fraction bits. So for
    exponent 10^(e-6), e = 0..6, the 2^e values are the midpoints of 2^e equal bins of
    [0.1, 1], with both signs; 0 and 1 complete the 256.
    """
    values = [0.0, 1.0]
    for e in range(7):
        edges = torch.linspace(0.1, 1, 2**e + 1)
        mids = 10.0 ** (e - 6) * ((edges[:-1] + edges[1:]) / 2)
        values += mids.tolist() + (-mids).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)


DYNAMIC = dynamic_map()


@dataclass
class QuantizedTensor:
    """A tensor in 4-bit NF4. ``numel`` values in ``blocks = ceil(numel / blocksize)`` blocks.

    packed: (ceil(numel / 2),) uint8, two NF4 codes per byte, the first in the high nibble.
    absmax: (blocks,) float32 block maxima; or, double-quantized, (blocks,) uint8 codes into
        ``DYNAMIC`` of ``absmax - nested_offset``, scaled per 256 by ``nested_absmax``.
    nested_absmax: (ceil(blocks / 256),) float32, or None.
    nested_offset: () float32, the mean of the absmax values, or None.
    shape, dtype: those of the original tensor (what ``dequantize_nf4`` returns).
    """

    packed: torch.Tensor
    absmax: torch.Tensor
    shape: torch.Size
    dtype: torch.dtype
    blocksize: int = 64
    nested_absmax: torch.Tensor | None = None
    nested_offset: torch.Tensor | None = None

    @property
    def double_quant(self) -> bool:
        return self.nested_absmax is not None

    @property
    def nbytes(self) -> int:
        """Bytes of storage: codes and scales."""
        parts = (self.packed, self.absmax, self.nested_absmax, self.nested_offset)
        return sum(t.numel() * t.element_size() for t in parts if t is not None)


def _quantize_blocks(x: torch.Tensor, code: torch.Tensor,
                     blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax quantization of x (n,) float32 to the nearest value of ``code``
    (ascending). Returns the indices (n,) uint8 and the block maxima (blocks,) float32."""
    n = x.numel()
    blocks = math.ceil(n / blocksize)
    x = F.pad(x, (0, blocks * blocksize - n)).view(blocks, blocksize)  # zeros: absmax unchanged
    absmax = x.abs().amax(dim=1)
    # An all-zero block has absmax 0: scale by a huge number instead, and its zeros stay 0.
    inverse = 1.0 / absmax.clamp(min=torch.finfo(torch.float32).tiny)
    scaled = (x * inverse.unsqueeze(1)).clamp(-1, 1)
    # Nearest code value: the decision boundaries are the midpoints between neighbours
    # (a value exactly on one goes down, as in bitsandbytes).
    midpoints = (code[:-1] + code[1:]) / 2
    indices = torch.bucketize(scaled, midpoints.to(x.device))
    return indices.view(-1)[:n].to(torch.uint8), absmax


def _dequantize_blocks(indices: torch.Tensor, scales: torch.Tensor, code: torch.Tensor,
                       blocksize: int) -> torch.Tensor:
    """code[indices] * the block's scale: indices (n,) integer, scales (blocks,) -> (n,)
    float32."""
    values = code.to(indices.device)[indices.long()]
    return values * scales.repeat_interleave(blocksize)[:values.numel()]


def quantize_nf4(weight: torch.Tensor, blocksize: int = 64,
                 double_quant: bool = True) -> QuantizedTensor:
    """Quantize ``weight`` (any shape, float) to NF4 in blocks of ``blocksize`` values."""
    if blocksize <= 0:
        raise ConfigError(f"NF4 blocksize must be positive, got {blocksize}")
    flat = weight.detach().reshape(-1).float()
    codes, absmax = _quantize_blocks(flat, NF4, blocksize)
    codes = F.pad(codes, (0, codes.numel() % 2), value=7)  # an odd count: pad with code 0.0
    packed = (codes[0::2] << 4) | codes[1::2]
    nested_absmax = nested_offset = None
    if double_quant:
        # absmax values are all positive and similar: centring them on their mean lets the
        # signed 8-bit map spend its resolution on the differences.
        nested_offset = absmax.mean()
        absmax, nested_absmax = _quantize_blocks(absmax - nested_offset, DYNAMIC,
                                                 NESTED_BLOCKSIZE)
    return QuantizedTensor(packed, absmax, weight.shape, weight.dtype, blocksize,
                           nested_absmax, nested_offset)


def block_absmax(q: QuantizedTensor) -> torch.Tensor:
    """The absmax of each block, (blocks,) float32: stored, or decoded from 8 bits."""
    if not q.double_quant:
        return q.absmax
    return _dequantize_blocks(q.absmax, q.nested_absmax, DYNAMIC,
                              NESTED_BLOCKSIZE) + q.nested_offset


def dequantize_nf4(q: QuantizedTensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The tensor ``q`` stands for, of ``q.shape``, in ``dtype`` (default: the original
    dtype). Computed in float32, then cast, as bitsandbytes does."""
    numel = math.prod(q.shape)
    codes = torch.stack((q.packed >> 4, q.packed & 0xF), dim=-1).view(-1)[:numel]
    values = _dequantize_blocks(codes, block_absmax(q), NF4, q.blocksize)
    return values.view(q.shape).to(dtype or q.dtype)


class _Linear4bitFunction(torch.autograd.Function):
    """y = x W^T + b with W dequantized for the forward matmul and again for the backward one,
    so that autograd keeps the 4-bit W rather than a dense copy per layer."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, q: QuantizedTensor, bias: torch.Tensor | None,
                dtype: torch.dtype) -> torch.Tensor:
        ctx.q, ctx.x_dtype = q, x.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        return F.linear(x.to(dtype), dequantize_nf4(q, dtype),
                        None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ dequantize_nf4(ctx.q, grad.dtype)).to(ctx.x_dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0).to(ctx.bias_dtype)
        return grad_x, None, grad_bias, None


class Linear4bit(nn.Module):
    """A frozen linear layer whose weight is stored in NF4. (..., in) -> (..., out).

    The codes and scales are buffers (``packed``, ``absmax``, and with double quantization
    ``nested_absmax``, ``nested_offset``), so they are in ``state_dict()`` and move with
    ``.to(device)``; ``.to(dtype)`` leaves the float32 scales as they are. ``weight_dtype`` is
    the original weight's dtype; ``compute_dtype`` (default: the input's) is the dtype of
    the matmul, the output returning to the input's dtype.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 blocksize: int = 64, double_quant: bool = True,
                 compute_dtype: torch.dtype | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | None = None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.blocksize, self.double_quant = blocksize, double_quant
        self.compute_dtype, self.weight_dtype = compute_dtype, dtype
        self.bias = (nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device),
                                  requires_grad=False) if bias else None)
        self._store(quantize_nf4(torch.zeros(out_features, in_features, device=device),
                                 blocksize, double_quant))

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, blocksize: int = 64, double_quant: bool = True,
                    compute_dtype: torch.dtype | None = None) -> Linear4bit:
        """The 4-bit version of ``linear``, on its device; its bias is copied, frozen."""
        weight = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    blocksize=blocksize, double_quant=double_quant,
                    compute_dtype=compute_dtype, dtype=weight.dtype, device=weight.device)
        layer.requantize_(weight)
        if linear.bias is not None:
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    def _store(self, q: QuantizedTensor) -> None:
        for name in ("packed", *STATS):
            value = getattr(q, name)
            if value is not None:
                self.register_buffer(name, value)

    @property
    def weight_numel(self) -> int:
        """How many weights the packed codes hold (``num_parameters`` counts them: they are
        buffers, not parameters)."""
        return self.in_features * self.out_features

    @property
    def quantized(self) -> QuantizedTensor:
        """The stored weight as a ``QuantizedTensor`` (sharing the buffers)."""
        nested = (self.nested_absmax, self.nested_offset) if self.double_quant else (None, None)
        return QuantizedTensor(self.packed, self.absmax,
                               torch.Size((self.out_features, self.in_features)),
                               self.weight_dtype, self.blocksize, *nested)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W, (out, in), in ``dtype`` (default: the original weight's)."""
        return dequantize_nf4(self.quantized, dtype)

    @torch.no_grad()
    def requantize_(self, weight: torch.Tensor) -> None:
        """Replace the stored weight by the NF4 version of ``weight`` (out, in)."""
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"requantize_ needs a weight of shape ({self.out_features}, "
                             f"{self.in_features}), got {tuple(weight.shape)}")
        self._store(quantize_nf4(weight.to(self.packed.device), self.blocksize,
                                 self.double_quant))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _Linear4bitFunction.apply(x, self.quantized, self.bias,
                                        self.compute_dtype or x.dtype)
        return out.to(x.dtype)

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the dequantized weight (in the original dtype), frozen."""
        linear = nn.Linear(self.in_features, self.out_features, self.bias is not None,
                           device=self.packed.device, dtype=self.weight_dtype)
        with torch.no_grad():
            linear.weight.copy_(self.dequantize())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear.requires_grad_(False)

    def _apply(self, fn, recurse=True):
        # .half() / .to(torch.bfloat16) would round the float32 scales (and the 8-bit codes'
        # meaning with them): keep their dtype, follow only the device.
        stats = {name: getattr(self, name) for name in STATS if hasattr(self, name)}
        super()._apply(fn, recurse)
        for name, before in stats.items():
            after = getattr(self, name)
            if after.dtype != before.dtype:
                setattr(self, name, before.to(after.device))
        return self

    def extra_repr(self) -> str:
        bits = 8 * self.quantized.nbytes / (self.in_features * self.out_features)
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, nf4 blocksize={self.blocksize}, "
                f"double_quant={self.double_quant}, {bits:.3f} bits/weight, "
                f"weight_dtype={self.weight_dtype}")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether module ``name`` or one of its parents is in ``patterns``, exactly or as the
    last dotted parts (``"classifier"`` matches ``classifier.dense`` and
    ``model.classifier``)."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(p == pattern or p.endswith(f".{pattern}") for p in prefixes for pattern in patterns)


def quantizable_names(model: nn.Module, *, skip: Iterable[str] | None = None,
                      target: Iterable[str] | None = None) -> list[str]:
    """Names of the ``nn.Linear`` layers ``quantize_model`` replaces: those matching ``target``
    (default: all) but not ``skip``, never ``lm_head``, LoRA's own ``lora_A``/``lora_B``, nor
    a layer whose weight another module also holds (an output layer tied to the embeddings)."""
    skip, target = list(skip or ()), None if target is None else list(target)
    # Count every place a parameter is held, shared modules visited once per name.
    holders = Counter(id(p) for _, m in model.named_modules(remove_duplicate=False)
                      for p in m.parameters(recurse=False))
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear)
            and holders[id(m.weight)] == 1
            and name.rsplit(".", 1)[-1] not in ("lm_head", "lora_A", "lora_B")
            and not _matches(name, skip)
            and (target is None or _matches(name, target))]


def quantize_model(model: nn.Module, *, skip: Iterable[str] | None = None,
                   target: Iterable[str] | None = None, blocksize: int = 64,
                   double_quant: bool = True,
                   compute_dtype: torch.dtype | None = None) -> nn.Module:
    """Replace, in place, each linear layer ``quantizable_names`` selects by a frozen
    ``Linear4bit``; return ``model``. ``skip``/``target``: module names or name suffixes
    (``["classifier", "score"]``); a name covers the module's children."""
    names = quantizable_names(model, skip=skip, target=target)
    if not names:
        raise ConfigError(f"qlora: {type(model).__name__} has no linear layer to quantize "
                          f"(lm_head, tied and skipped layers {sorted(skip or [])} are kept); "
                          "use strategy lora for it")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, Linear4bit.from_linear(getattr(parent, child),
                                                      blocksize=blocksize,
                                                      double_quant=double_quant,
                                                      compute_dtype=compute_dtype))
    return model


def quantized_bytes(module: nn.Module) -> int:
    """Bytes held by the 4-bit layers in ``module``: codes, scales and biases."""
    return sum(t.numel() * t.element_size() for m in module.modules()
               if isinstance(m, Linear4bit) for t in (*m.buffers(), *m.parameters()))
