"""The IPEX bf16 TorchScript variant: written only where IPEX is installed and it measurably helps.

"Helps" is measured, not assumed: the variant is kept when its median latency beats both eager fp32
and the fp32 TorchScript by at least `MIN_SPEEDUP` on this CPU; otherwise the card says why it was
not kept. bf16 is not held to the fp32 tolerance; its difference from fp32 is reported instead.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import torch

from denas.export.formats import max_abs_diff, trace
from denas.export.load import Trained
from denas.export.timing import measure_interleaved

MIN_SPEEDUP = 1.1
FILE = "model.ipex-bf16.torchscript.pt"


def available() -> bool:
    return importlib.util.find_spec("intel_extension_for_pytorch") is not None


def ipex_traced(trained: Trained) -> torch.jit.ScriptModule:
    import intel_extension_for_pytorch as ipex

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ipex.optimize(trained.wrapped(), dtype=torch.bfloat16, inplace=False)
        example = trained.sample_inputs(batch_size=2)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            traced = torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
            for _ in range(2):  # the profiling executor specialises on the first runs
                traced(*example)
    return traced


def export_ipex_variant(
    trained: Trained, out: Path, inputs: tuple[torch.Tensor, ...], expected: torch.Tensor, batch: tuple
) -> dict[str, Any]:
    """Measure eager fp32, fp32 TorchScript and IPEX bf16 on ``batch``; keep the variant if it wins."""
    if not available():
        return {"kept": False, "reason": "intel-extension-for-pytorch is not installed"}
    eager = trained.wrapped()
    fp32 = trace(trained)
    variant = ipex_traced(trained)
    ms = measure_interleaved(
        {
            "eager": lambda: eager(*batch),
            "torchscript": lambda: fp32(*batch),
            "ipex_bf16": lambda: variant(*batch),
        }
    )
    speedup = min(ms["eager"], ms["torchscript"]) / ms["ipex_bf16"]
    with torch.no_grad():
        diff = max_abs_diff(variant(*inputs), expected)
    result = {
        "latency_ms": ms,
        "speedup_vs_best_fp32": round(speedup, 3),
        "max_abs_diff_vs_fp32": diff,
        "min_speedup": MIN_SPEEDUP,
    }
    if speedup < MIN_SPEEDUP:
        return {**result, "kept": False, "reason": f"{speedup:.2f}x is below the {MIN_SPEEDUP}x threshold"}
    path = out / FILE
    variant.save(str(path))
    return {
        **result,
        "kept": True,
        "files": [FILE],
        "bytes": path.stat().st_size,
        "needs": "import intel_extension_for_pytorch before torch.jit.load",
    }
