"""Latency of a callable on this CPU, and what "this CPU" is (for the card and the benchmark)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def measure_ms(fn: Callable[[], Any], warmup: int = 3, repeat: int = 20) -> float:
    """Median wall time of ``fn()`` in milliseconds (median: robust on a shared, loaded machine)."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def measure_interleaved(
    fns: dict[str, Callable[[], Any]], warmup: int = 3, rounds: int = 30
) -> dict[str, float]:
    """Median milliseconds of each callable, timed round-robin (one call of each per round).

    On a shared machine the load drifts over seconds; interleaving exposes every variant to the
    same drift, so their ratios stay meaningful even when the absolute times do not.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(t) for name, t in times.items()}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The ISA features that decide bf16 speed (AVX-512 BF16, AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted(f for f in set(flags) if f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))


def hardware() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        # a loaded node inflates eager PyTorch most (many small parallel regions): say how loaded
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
        # the node measured on: the pod's spec.nodeName (downward API), else this host's name
        "node": os.environ.get("NODE_NAME") or os.environ.get("DENAS_NODE_NAME") or platform.node() or None,
    }
