"""Which floating-point format the Trainer computes in, and whether bf16 would help here.

bf16 autocast pays off only where the hardware multiplies bf16 natively: CUDA GPUs from Ampere
on, and x86 CPUs with AVX512-BF16 or AMX-BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and later).
Elsewhere PyTorch emulates the bf16 matmuls in fp32 plus conversions, which is slower than plain
fp32: on a 2-core AMD EPYC with AVX2 only, a bf16 matmul ran 14x slower than fp32. So
``bf16: auto`` turns it on only where it is native, and an explicit ``bf16: true`` on a machine
without it warns (and is obeyed).

    resolve_precision("auto", fp16=False, device=torch.device("cpu"))
    -> Precision(name="fp32", reason="bf16: auto -> off (this CPU has no avx512_bf16/...)")
"""

from __future__ import annotations

import platform
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

# The x86 flags of native bf16 dot products; "bf16" is the Arm (FEAT_BF16) one in the
# "Features" line of an aarch64 /proc/cpuinfo.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (``flags``, on Arm ``Features``); empty where
    they cannot be read (not Linux). Tests monkeypatch this function."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bf16 matmuls natively (not emulated in fp32)."""
    return _bf16_support(torch.device(device))[0]


def _bf16_support(device: torch.device) -> tuple[bool, str]:
    """(native, why) for ``device``."""
    if device.type == "cuda":
        # including_emulation=False: a pre-Ampere GPU can hold bf16 tensors but not
        # multiply them fast. Older torch has no such argument, and its answer is the native one.
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:
            native = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(device)
        return native, f"{name} {'has' if native else 'has no'} native bf16"
    if device.type != "cpu":
        return False, f"native bf16 is not known for {device.type} devices"
    flags = cpu_flags()
    if not flags:
        # torch's own view of the CPU names its vector width (AVX2, AVX512, ...), which does
        # not tell whether bf16 is native: assume it is not, the safe side for speed.
        return False, (f"CPU flags unreadable on {platform.system()} (torch reports "
                       f"{torch.backends.cpu.get_cpu_capability()}); assuming bf16 is emulated")
    found = sorted(set(BF16_CPU_FLAGS) & flags)
    if found:
        return True, f"this CPU has {'/'.join(found)}"
    return False, ("this CPU has no avx512_bf16/amx_bf16; bf16 matmuls would be emulated, "
                   "slower than fp32")


@dataclass(frozen=True)
class Precision:
    """The resolved choice: ``name`` is "bf16", "fp16" or "fp32"; ``reason`` one log line."""

    name: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def fp16(self) -> bool:
        return self.name == "fp16"


def resolve_precision(bf16: bool | str, fp16: bool, device: torch.device | str) -> Precision:
    """Turn TrainingArguments' ``bf16`` (True, False or "auto") and ``fp16`` into the format
    training runs in on ``device``. An explicit ``bf16=True`` where bf16 is not native warns
    once and is obeyed; "auto" uses bf16 exactly where it is native (and never with fp16)."""
    device = torch.device(device)
    if fp16:
        return Precision("fp16", "fp16: on (autocast to float16 with a GradScaler)")
    if bf16 is False:
        return Precision("fp32", "bf16: off")
    native, why = _bf16_support(device)
    if bf16 == "auto":
        return Precision("bf16" if native else "fp32",
                         f"bf16: auto -> {'on' if native else 'off'} ({why})")
    if not native:
        warnings.warn(f"bf16: true on {device.type} without native bf16 ({why}); training may "
                      "run many times slower than fp32: set bf16: auto or false",
                      stacklevel=3)
    return Precision("bf16", f"bf16: on (asked for; {why})")
