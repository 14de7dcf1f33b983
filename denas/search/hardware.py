"""One search, one kind of CPU: latencies measured on different hardware are never mixed.

Latency is a property of the machine (CPU model, AMX/AVX512 flags, usable cores, torch/IPEX
versions: `denas.scores.latency.hardware_fingerprint`).  A search whose ranks run on different
node types, or that is resumed on another one, would rank candidates by latencies that are not
comparable, and fit its latency predictor to a mixture.  So the checkpoint records where its
latencies were measured, every extra rank compares its fingerprint with rank 0's when the group
forms (both sides check: the worker refuses to score, rank 0 refuses to search), and a resume
compares with the checkpoint.  Errors name the pod (or host) and node and both CPUs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from typing import Any

from denas.search.config import SearchError

log = logging.getLogger(__name__)

#: store key where each rank posts its fingerprint when the group forms
KEY = "denas/search/hardware/{}"
#: which settings to change when the CPUs differ
FIX = (
    "run every search pod on one CPU model (spec.hardware.nodeSelector, e.g. a "
    "node.kubernetes.io/instance-type or CPU-model label) or start a fresh search"
)


def where() -> str:
    """The pod (or host) this process runs in and, when the pod's env says it, the node."""
    name = os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()
    kind = "pod" if os.environ.get("KUBERNETES_SERVICE_HOST") or os.environ.get("POD_NAME") else "host"
    node = os.environ.get("NODE_NAME") or os.environ.get("DENAS_NODE_NAME")
    return f"{kind} {name}" + (f" on node {node}" if node else "")


def stamp(hardware: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint and the rank check record: the fingerprint and where it was taken."""
    return {"hardware": hardware, "where": where()}


def _key(hardware: dict[str, Any]) -> dict[str, Any]:
    # through JSON, as the store carries it: a tuple of flags and its list compare equal
    return json.loads(
        json.dumps({k: v for k, v in hardware.items() if k != "id"}, sort_keys=True, default=str)
    )


def describe(hardware: dict[str, Any], other: dict[str, Any]) -> str:
    """The CPU model, plus every other field in which ``hardware`` differs from ``other``."""
    cpu = hardware.get("cpu_model") or hardware.get("processor") or "unknown CPU"
    mine, theirs = _key(hardware), _key(other)
    extra = [
        f"{k}={mine.get(k)}"
        for k in sorted(set(mine) | set(theirs))
        if k not in ("cpu_model", "processor") and mine.get(k) != theirs.get(k)
    ]
    return f"{cpu!r}" + (f" ({', '.join(extra)})" if extra else "")


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _key(a) == _key(b)


def check_resume(saved: dict[str, Any] | None, hardware: dict[str, Any], out_dir: Any) -> None:
    """A checkpoint resumes only on the hardware its latencies were measured on."""
    if not saved:
        log.warning("--resume: the checkpoint in %s does not record its hardware; not checked", out_dir)
        return
    if not same(saved["hardware"], hardware):
        raise SearchError(
            f"--resume: the checkpoint in {out_dir} holds latencies measured by {saved['where']} on "
            f"{describe(saved['hardware'], hardware)}, but this search runs in {where()} on "
            f"{describe(hardware, saved['hardware'])}; latencies of different CPUs cannot be mixed: {FIX}"
        )


def check_ranks(store: Any, rank: int, world_size: int, hardware: dict[str, Any]) -> None:
    """Post this rank's fingerprint in the group's store and compare: a worker with rank 0's, rank 0
    with every worker's (``store.get`` waits for a key up to the group's timeout)."""
    mine = stamp(hardware)
    store.set(KEY.format(rank), json.dumps(mine))
    others = range(1, world_size) if rank == 0 else [0]
    for r in others:
        theirs = json.loads(store.get(KEY.format(r)))
        if not same(theirs["hardware"], hardware):
            raise SearchError(
                f"rank {rank} ({mine['where']}) runs on {describe(hardware, theirs['hardware'])} but rank {r} "
                f"({theirs['where']}) on {describe(theirs['hardware'], hardware)}; latencies of different "
                f"CPUs cannot be mixed in one search: {FIX}"
            )
