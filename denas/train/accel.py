"""Which compute path a training process uses: IPEX and/or bf16 autocast, or stock fp32 PyTorch.

``spec.hardware.ipex`` and ``spec.hardware.bf16`` are ``auto`` | ``on`` | ``off``; ``on`` fails clearly
when a feature cannot be used. ``auto`` follows what was measured on an AMX Xeon
(benchmarks/README_train.md), not what is merely available:

- bf16 autocast where the CPU has native bf16 *and* the model is a transformer (``vit``, ``bert``,
  ``asr``): x1.6 training throughput on a BERT-small-like model; on the small conv nets of ``cnn``
  and ``nb201`` bf16 was slower (x0.88), so they stay fp32.
- IPEX only when asked for (``on``): in training it gave no speed-up over stock PyTorch (x0.73-x0.99),
  its bf16 weights (``ipex.optimize(dtype=bfloat16)``) made a digits CNN diverge to NaN in one
  epoch, and IPEX is end-of-life upstream. Stock PyTorch is the path everywhere else.
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
# Domains whose training gets faster with bf16 autocast on such CPUs (large matmuls).
BF16_AUTO_DOMAINS = frozenset({"vit", "bert", "asr"})


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


def choose_compute_path(ipex: str = "auto", bf16: str = "auto", domain: str | None = None) -> ComputePath:
    """Resolve the ``auto``/``on``/``off`` settings against this machine and the model's domain."""
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
    use_ipex = ipex == "on"
    if ipex == "auto":
        reasons.append(
            "ipex auto: stock PyTorch (IPEX gave no training speed-up here; set hardware.ipex: on)"
        )
    else:
        reasons.append("ipex " + ("requested" if use_ipex else "off"))

    native = cpu_has_native_bf16()
    if bf16 == "on" and not native:
        log.warning("bf16 requested on a CPU without AMX/AVX512-BF16: it will be emulated and slow")
    helps = domain is None or domain in BF16_AUTO_DOMAINS
    use_bf16 = bf16 == "on" or (bf16 == "auto" and native and helps)
    if bf16 != "auto":
        reasons.append("bf16 " + ("requested" if use_bf16 else "off"))
    elif not native:
        reasons.append("bf16 off: no AMX/AVX512-BF16 on this CPU")
    elif not helps:
        reasons.append(f"bf16 auto: fp32 for {domain} (bf16 was slower on small conv nets)")
    else:
        reasons.append("bf16 native on this CPU")
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
