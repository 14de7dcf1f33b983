"""Which compute path a training process uses: IPEX and/or bf16 autocast, or stock fp32 PyTorch.

``spec.hardware.ipex`` and ``spec.hardware.bf16`` are ``auto`` | ``on`` | ``off``. ``auto`` uses a
feature when it is installed and the CPU supports it; ``on`` fails clearly when it cannot be used.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# CPU flags (as /proc/cpuinfo spells them) with native bf16 arithmetic; without them bf16 is emulated
# and slower than fp32.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class ComputePath:
    ipex: bool
    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        """Short label for logs and metrics.json: ``ipex-bf16``, ``ipex-fp32``, ``stock-bf16`` or ``stock-fp32``."""
        return f"{'ipex' if self.ipex else 'stock'}-{'bf16' if self.bf16 else 'fp32'}"


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS)


def ipex_installed() -> bool:
    return importlib.util.find_spec("intel_extension_for_pytorch") is not None


def choose_compute_path(ipex: str = "auto", bf16: str = "auto") -> ComputePath:
    """Resolve the ``auto``/``on``/``off`` settings against this machine."""
    for field, value in (("spec.hardware.ipex", ipex), ("spec.hardware.bf16", bf16)):
        if value not in ("auto", "on", "off"):
            raise ValueError(f"{field}: Unsupported value: {value!r}: supported values: auto, on, off")
    reasons = []
    has_ipex = ipex_installed()
    if ipex == "on" and not has_ipex:
        raise RuntimeError(
            "spec.hardware.ipex is 'on' but intel_extension_for_pytorch is not installed; "
            "install the 'xeon' extra or set it to 'auto'"
        )
    use_ipex = ipex == "on" or (ipex == "auto" and has_ipex)
    reasons.append("ipex " + ("requested" if ipex == "on" else "installed" if use_ipex else f"{ipex}/absent"))

    native = cpu_has_native_bf16()
    if bf16 == "on" and not native:
        log.warning("bf16 requested on a CPU without AMX/AVX512-BF16: it will be emulated and slow")
    use_bf16 = bf16 == "on" or (bf16 == "auto" and native)
    reasons.append("bf16 " + ("requested" if bf16 == "on" else "native on this CPU" if use_bf16 else bf16))
    if bf16 == "auto" and not native:
        reasons[-1] = "bf16 off: no AMX/AVX512-BF16 on this CPU"
    return ComputePath(ipex=use_ipex, bf16=use_bf16, reason="; ".join(reasons))


def optimize(
    model: nn.Module, optimizer: torch.optim.Optimizer, path: ComputePath
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Apply IPEX's training optimisations (before DDP wraps the model, as IPEX requires)."""
    if not path.ipex:
        return model, optimizer
    import intel_extension_for_pytorch as ipex

    dtype = torch.bfloat16 if path.bf16 else torch.float32
    model, optimizer = ipex.optimize(model, optimizer=optimizer, dtype=dtype)
    return model, optimizer


def autocast(path: ComputePath) -> contextlib.AbstractContextManager:
    """bf16 autocast on the CPU when the path uses bf16, otherwise a no-op."""
    if path.bf16:
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
