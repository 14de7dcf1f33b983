"""Measured inference latency on this machine, its hardware fingerprint, and a cache keyed by both.

Latency is a separate objective / constraint, never silently part of the DE-Score: its value is
machine-dependent. Units are explicit: milliseconds per forward pass of a batch of
``batch_size`` at ``threads`` torch threads, along a recorded execution ``path``:
``ipex-bf16``, ``ipex-fp32``, ``stock-bf16`` or ``stock-fp32``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import sqlite3
import statistics
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from denas.scores import _model

log = logging.getLogger(__name__)

RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
PATHS = ("ipex-bf16", "ipex-fp32", "stock-bf16", "stock-fp32")


#: a timing round whose median is this many times its fastest run was disturbed (on a quiet
#: machine a forward pass's median lies within a few percent of its fastest run): measure again
UNSTABLE_RATIO = 2.0
#: rounds at most (the first + re-measurements) before a measurement is kept and flagged
MAX_ROUNDS = 3
#: a single run this many times the round's median is counted as an outlier run
OUTLIER_RUN_RATIO = 3.0


@dataclass(frozen=True)
class LatencyResult:
    median_ms: float
    p90_ms: float
    path: str
    batch_size: int
    threads: int
    #: timing rounds taken (1 + re-measurements of disturbed rounds)
    rounds: int = 1
    #: runs of the kept round slower than OUTLIER_RUN_RATIO x its median (the median ignores them)
    outlier_runs: int = 0
    #: every round was disturbed: the value is the least disturbed round's median, to be treated with care
    unstable: bool = False

    @property
    def flag(self) -> str | None:
        """A human-readable warning when the measurement is doubtful, else None."""
        if not self.unstable:
            return None
        return (
            f"unstable: median {self.median_ms:.3f} ms is over {UNSTABLE_RATIO:g}x the fastest run in each of "
            f"{self.rounds} timing rounds (a busy machine?); p90 {self.p90_ms:.3f} ms"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ----- IPEX, imported lazily (slow and noisy to import) ---------------------------------------
_ipex_module: ModuleType | None | bool = False  # False: not tried yet


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: IPEX's C++ side prints kernel-override warnings at import."""
    try:
        saved = os.dup(2)
    except OSError:  # pragma: no cover - no stderr to silence
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_ipex() -> ModuleType | None:
    """intel_extension_for_pytorch, or None when it is not installed or fails to import."""
    global _ipex_module
    if _ipex_module is False:
        try:
            with warnings.catch_warnings(), _quiet_stderr():
                warnings.simplefilter("ignore")
                import intel_extension_for_pytorch as ipex  # noqa: PLC0415
            _ipex_module = ipex
        except Exception as exc:  # ImportError, or a version mismatch raised at import time
            log.info("IPEX unavailable, using stock PyTorch: %s", exc)
            _ipex_module = None
    return _ipex_module  # type: ignore[return-value]


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_supports_bf16() -> bool:
    return bool(_cpu_flags() & set(BF16_FLAGS))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class HardwareFingerprint:
    cpu_model: str
    flags: tuple[str, ...]
    cores: int
    torch: str
    ipex: str | None

    @property
    def id(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "id": self.id}


def hardware_fingerprint() -> HardwareFingerprint:
    """What latency depends on: CPU model, AMX/AVX512 flags, usable cores, torch/IPEX versions."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return HardwareFingerprint(
        cpu_model=_cpu_model(),
        flags=tuple(sorted(_cpu_flags() & set(RELEVANT_FLAGS))),
        cores=cores,
        torch=torch.__version__,
        ipex=_version("intel-extension-for-pytorch"),
    )


def _choice(value: str | bool, field: str) -> str:
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value not in ("auto", "on", "off"):
        raise ValueError(f"{field}: expected 'auto', 'on' or 'off', got {value!r}")
    return value


def resolve_path(ipex: str | bool = "auto", bf16: str | bool = "auto") -> str:
    """The execution path `measure_latency` will take with these settings on this machine."""
    ipex, bf16 = _choice(ipex, "ipex"), _choice(bf16, "bf16")
    use_ipex = ipex != "off" and import_ipex() is not None
    if ipex == "on" and not use_ipex:
        raise RuntimeError(
            "ipex='on' but intel_extension_for_pytorch is not importable; use ipex='auto' or 'off'"
        )
    use_bf16 = bf16 == "on" or (bf16 == "auto" and cpu_supports_bf16())
    return f"{'ipex' if use_ipex else 'stock'}-{'bf16' if use_bf16 else 'fp32'}"


def measure_latency(
    model: nn.Module,
    inputs: _model.Batch,
    threads: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    ipex: str | bool = "auto",
    bf16: str | bool = "auto",
) -> LatencyResult:
    """Median and p90 wall time (ms) of ``model(inputs)`` under ``torch.inference_mode``.

    ``warmup`` untimed runs, then ``repeats`` timed runs; the median ignores a few slow runs (they
    are counted in ``outlier_runs``).  A round whose median is over ``UNSTABLE_RATIO`` x its fastest
    run was disturbed (most runs slow: another process, a stall) and is measured again, up to
    ``MAX_ROUNDS`` rounds; the least disturbed round is kept and, if every round was disturbed,
    the result is marked ``unstable``.  Uses ``ipex.optimize`` when IPEX imports (unless ``ipex='off'``) and bf16 autocast when the
    CPU has AVX512-BF16 or AMX (unless ``bf16='off'``). The caller's model and thread count are
    left as they were.
    """
    if threads < 1 or repeats < 1 or warmup < 0:
        raise ValueError(
            f"threads and repeats must be >= 1 and warmup >= 0, got {threads}, {repeats}, {warmup}"
        )
    path = resolve_path(ipex, bf16)
    use_bf16 = path.endswith("bf16")
    runner = copy.deepcopy(model).eval()
    if path.startswith("ipex"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runner = import_ipex().optimize(runner, dtype=torch.bfloat16 if use_bf16 else torch.float32)
        except Exception as exc:  # some modules are not supported: time them on stock PyTorch
            log.warning("ipex.optimize failed (%s); timing stock PyTorch", exc)
            path = path.replace("ipex", "stock")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    kept: list[float] = []
    rounds = 0
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            for _ in range(warmup):
                _model.call(runner, inputs, owner=runner)
            while rounds < MAX_ROUNDS:
                if rounds:  # a re-measurement: one untimed run first, as after any pause
                    _model.call(runner, inputs, owner=runner)
                rounds += 1
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    _model.call(runner, inputs, owner=runner)
                    times.append((time.perf_counter() - start) * 1000.0)
                times.sort()
                if not kept or statistics.median(times) < statistics.median(kept):
                    kept = times
                if not _disturbed(times):
                    break
    finally:
        torch.set_num_threads(previous_threads)
    median = statistics.median(kept)
    p90 = kept[min(len(kept) - 1, int(round(0.9 * (len(kept) - 1))))]
    if rounds > 1:
        log.info("latency re-measured: %d timing rounds, kept median %.3f ms", rounds, median)
    return LatencyResult(
        median_ms=median,
        p90_ms=p90,
        path=path,
        batch_size=_model.batch_size(inputs),
        threads=threads,
        rounds=rounds,
        outlier_runs=sum(t > OUTLIER_RUN_RATIO * median for t in kept),
        unstable=_disturbed(kept),
    )


def _disturbed(sorted_times: list[float]) -> bool:
    return statistics.median(sorted_times) > UNSTABLE_RATIO * max(sorted_times[0], 1e-6)


class LatencyCache:
    """Measured latencies in an SQLite file, keyed by (structure hash, batch, threads, path,
    hardware fingerprint id): a result never leaks to another machine or another setting.
    Safe for several processes (SQLite locking) and threads (one lock per cache object)."""

    def __init__(self, path: str | os.PathLike[str], fingerprint: HardwareFingerprint | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint or hardware_fingerprint()
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS latency (key TEXT PRIMARY KEY, structure TEXT, batch INTEGER,"
                " threads INTEGER, path TEXT, fingerprint TEXT, result TEXT)"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def key(self, structure_hash: str, batch_size: int, threads: int, path: str) -> str:
        if path not in PATHS:
            raise ValueError(f"path: expected one of {PATHS}, got {path!r}")
        return f"{structure_hash}|b{batch_size}|t{threads}|{path}|{self.fingerprint.id}"

    def get(self, structure_hash: str, batch_size: int, threads: int, path: str) -> LatencyResult | None:
        key = self.key(structure_hash, batch_size, threads, path)
        with self._lock, self._connect() as db:
            row = db.execute("SELECT result FROM latency WHERE key = ?", (key,)).fetchone()
        return LatencyResult(**json.loads(row[0])) if row else None

    def put(self, structure_hash: str, result: LatencyResult, requested_path: str | None = None) -> None:
        """Store ``result`` under its own path's key and, when the measurement fell back to
        another path than the one asked for (``ipex.optimize`` failing, say), under the requested
        path's key too: the next ``measure`` with the same settings looks that key up first.
        The stored result always names the path that was really timed."""
        keys = {self.key(structure_hash, result.batch_size, result.threads, result.path)}
        if requested_path is not None:
            keys.add(self.key(structure_hash, result.batch_size, result.threads, requested_path))
        with self._lock, self._connect() as db:
            for key in sorted(keys):
                self._insert(db, key, structure_hash, result)

    def _insert(self, db: sqlite3.Connection, key: str, structure_hash: str, result: LatencyResult) -> None:
        db.execute(
            "INSERT OR REPLACE INTO latency VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                structure_hash,
                result.batch_size,
                result.threads,
                result.path,
                self.fingerprint.id,
                json.dumps(result.to_dict()),
            ),
        )

    def measure(
        self, structure_hash: str, model: nn.Module, inputs: _model.Batch, **options: Any
    ) -> LatencyResult:
        """The cached result for this structure and setting, measuring (and storing) on a miss."""
        path = resolve_path(options.get("ipex", "auto"), options.get("bf16", "auto"))
        cached = self.get(structure_hash, _model.batch_size(inputs), options.get("threads", 1), path)
        if cached is not None:
            return cached
        result = measure_latency(model, inputs, **options)
        self.put(structure_hash, result, requested_path=path)
        return result
