"""Process-group setup for CPU training: who am I, how many threads may I use, and rendezvous.

Works the same for a single process (no environment), for ``torchrun`` (which sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``) and for a pod started with the bare
PyTorchJob variables and one process per pod.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessInfo:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    backend: str | None  # None: single process, no process group

    @property
    def is_master(self) -> bool:
        return self.rank == 0

    @property
    def nnodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def available_cpus() -> float:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota if one is set."""
    try:
        cpus: float = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return min(cpus, quota) if quota else cpus


def _cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The container's CPU limit in CPUs (cgroup v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        v2 = root / "cpu.max"
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.exists():
            quota_us = int(v1.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


def threads_per_process(local_world_size: int, cpus: float | None = None) -> int:
    """Intra-op threads for each of ``local_world_size`` processes sharing this node's CPUs."""
    cpus = available_cpus() if cpus is None else cpus
    return max(1, math.floor(cpus / max(1, local_world_size)))


def set_threads(local_world_size: int) -> int:
    """Give this process its share of the CPUs so local processes do not oversubscribe them.

    ``DENAS_THREADS`` overrides the share. ``OMP_NUM_THREADS`` is honoured only for a lone local
    process: with several, torchrun sets it to 1 on its own, which would starve big nodes.
    """
    n = threads_per_process(local_world_size)
    if os.environ.get("DENAS_THREADS"):
        n = int(os.environ["DENAS_THREADS"])
    elif local_world_size <= 1 and os.environ.get("OMP_NUM_THREADS", "").isdigit():
        n = int(os.environ["OMP_NUM_THREADS"])
    n = max(1, n)
    torch.set_num_threads(n)
    return n


def process_info() -> ProcessInfo:
    """Read rank and world size from the torchrun / PyTorchJob environment (defaults: 1 process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1" if "LOCAL_RANK" not in os.environ else world))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return ProcessInfo(rank, local_rank, world, local_world, None)


def init_distributed(backend: str = "gloo", timeout_s: float = 300.0) -> ProcessInfo:
    """Join the process group if the environment describes more than one process.

    A worker whose master never comes up fails after ``timeout_s`` with a message naming
    ``MASTER_ADDR:MASTER_PORT`` instead of waiting forever.
    """
    info = process_info()
    if info.world_size <= 1:
        return info
    if backend == "ccl":
        try:
            import oneccl_bindings_for_pytorch  # noqa: F401  (registers the "ccl" backend)
        except ImportError as exc:
            raise RuntimeError(
                "backend 'ccl' needs the oneccl_bindings_for_pytorch package; install it or use --backend gloo"
            ) from exc
    addr = os.environ.get("MASTER_ADDR", "127.0.0.1")
    port = os.environ.get("MASTER_PORT", "29500")
    try:
        dist.init_process_group(
            backend=backend,
            rank=info.rank,
            world_size=info.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    except (RuntimeError, ValueError, TimeoutError, OSError) as exc:
        raise RendezvousError(
            f"rank {info.rank}/{info.world_size} could not join the training group at master "
            f"{addr}:{port} within {timeout_s:g}s ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Check that the master pod is running and that MASTER_ADDR/MASTER_PORT point at it."
        ) from exc
    log.info("joined process group: rank %d of %d (backend %s)", info.rank, info.world_size, backend)
    return ProcessInfo(info.rank, info.local_rank, info.world_size, info.local_world_size, backend)


class RendezvousError(RuntimeError):
    """The process group could not be formed (master unreachable, wrong world size, timeout)."""


def barrier(info: ProcessInfo) -> None:
    if info.backend:
        dist.barrier()


def all_reduce_sum(values: list[float], info: ProcessInfo) -> list[float]:
    """Sum a few floats over all ranks (float64 so counts stay exact)."""
    if not info.backend:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def shutdown(info: ProcessInfo) -> None:
    if info.backend and dist.is_initialized():
        dist.destroy_process_group()
