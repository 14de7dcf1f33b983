"""The DeNASJob status object, built the same way by the operator and by `denas run`.

Pure functions over plain dicts (no kopf, no torch): conditions in the Kubernetes
`metav1.Condition` shape, a list keyed by type and always written whole; `phase` is derived from
the conditions (a printer-column convenience, never the source of truth).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# Condition types, in the order a job goes through them.
SEARCH_RUNNING = "SearchRunning"
SEARCH_SUCCEEDED = "SearchSucceeded"
TRAINING_RUNNING = "TrainingRunning"
TRAINING_SUCCEEDED = "TrainingSucceeded"
SUSPENDED = "Suspended"
SUCCEEDED = "Succeeded"
FAILED = "Failed"

# etcd objects are limited to ~1.5 MiB: the status never carries more than this many structures.
MAX_BEST_STRUCTURES = 50


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_from(timestamp: float) -> str:
    """A `time.time()` value in the status' timestamp format."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str = "",
    observed_generation: int | None = None,
    timestamp: str | None = None,
) -> list[dict[str, Any]]:
    """A new list with `type_` set; lastTransitionTime only moves when the status flips."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    changed = previous is None or previous.get("status") != value
    condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (timestamp or now()) if changed else previous["lastTransitionTime"],
    }
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    out.append(condition)
    order = [
        SEARCH_RUNNING,
        SEARCH_SUCCEEDED,
        TRAINING_RUNNING,
        TRAINING_SUCCEEDED,
        SUSPENDED,
        SUCCEEDED,
        FAILED,
    ]
    return sorted(out, key=lambda c: order.index(c["type"]) if c["type"] in order else len(order))


def condition_is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def phase(conditions: Sequence[Mapping[str, Any]]) -> str:
    """Pending, Searching, Training, Succeeded, Failed or Suspended."""
    for type_, name in ((FAILED, "Failed"), (SUCCEEDED, "Succeeded"), (SUSPENDED, "Suspended")):
        if condition_is_true(conditions, type_):
            return name
    if condition_is_true(conditions, TRAINING_RUNNING):
        return "Training"
    if condition_is_true(conditions, SEARCH_RUNNING) or condition_is_true(conditions, SEARCH_SUCCEEDED):
        return "Searching"
    return "Pending"


def best_structures(result: Mapping[str, Any], top_k: int) -> list[dict[str, Any]]:
    """result.json's best list, bounded and in the status' camelCase shape."""
    out = []
    for rank, entry in enumerate(result.get("best", [])[: min(top_k, MAX_BEST_STRUCTURES)]):
        scores = entry.get("scores", {})
        item = {
            "rank": rank,
            "hash": entry.get("hash"),
            "structure": copy.deepcopy(entry.get("structure")),
            "params": entry.get("params"),
            "flops": entry.get("flops"),
            "latencyMs": entry.get("latency_ms"),
            "deScore": scores.get("de_score"),
            "fitness": entry.get("fitness"),  # the search's objective: DE-Score minus any latency term
            "scores": {k: v for k, v in scores.items() if isinstance(v, int | float)},
            # with the selection stage: the short-training result, and where the train-free score ranked it
            "trainFreeRank": entry.get("trainFreeRank"),
            "selection": copy.deepcopy(entry.get("selection")),
        }
        out.append({k: v for k, v in item.items() if v is not None})
    return out


#: result.json's counts of work done here vs reused from a campaign's score store
SHARED_COUNTS = ("scoresComputed", "scoresReused", "selectionRunsComputed", "selectionRunsReused")


def score_counts(result: Mapping[str, Any]) -> dict[str, int]:
    """result.json's DE-Scores (and selection runs) computed here vs reused from a campaign's store."""
    return {k: int(result[k]) for k in SHARED_COUNTS if k in result}


def search_progress(event: Mapping[str, Any]) -> dict[str, Any]:
    """A search progress event (JSON line / ConfigMap key) in the status' `search` shape."""
    mapping = {
        "generation": "generation",
        "generations": "generations",
        "evaluated": "evaluated",
        "best_score": "bestScore",
    }
    out = {dst: event[src] for src, dst in mapping.items() if event.get(src) is not None}
    if isinstance(event.get("selection"), Mapping):  # the selection stage's rung progress
        out["selection"] = {
            k: event["selection"][k] for k in ("rung", "rungs", "done", "total") if k in event["selection"]
        }
    return out


def training_progress(event: Mapping[str, Any]) -> dict[str, Any]:
    """A training progress event in the status' `training` shape (epoch, metric, metricName)."""
    mapping = {"epoch": "epoch", "metric": "metric", "metric_name": "metricName"}
    return {dst: event[src] for src, dst in mapping.items() if event.get(src) is not None}


STAGES = "stages"


def record_stage_time(status: dict[str, Any], stage: str, seconds: float) -> None:
    """``status.stages[stage].seconds``: wall seconds of a stage that runs in one piece (validate,
    report); the executor's search and training records also carry start/completion times and
    sum their seconds over resumes. Stages keep the order they first ran in."""
    status.setdefault(STAGES, {}).setdefault(stage, {})["seconds"] = round(float(seconds), 3)


def stage_times_line(status: Mapping[str, Any]) -> str:
    """``validate 0.4 s, search 12 s, training 3 min 05 s`` (empty when nothing was timed)."""
    stages = status.get(STAGES) or {}
    return ", ".join(
        f"{stage} {_seconds(rec['seconds'])}"
        for stage, rec in stages.items()
        if rec.get("seconds") is not None
    )


def _seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    if s < 120:
        return f"{s:.0f} s"
    return f"{int(s // 60)} min {s % 60:02.0f} s"
