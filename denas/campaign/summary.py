"""The campaign status: built from its cells' job statuses, the same way by the operator and `denas run`.

Pure functions over plain dicts.  The status stays small whatever the campaign size: per cell
its phase, a one-line message, its winner and its top hashes (at most `TOP_HASHES`), at most
`MAX_CELLS` cells; the full results stay with the cells (result.json / their ConfigMaps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from denas import status as S
from denas.campaign.spec import MAX_CELLS, Cell

SUCCEEDED = "Succeeded"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
INVALID = "Invalid"
TOP_HASHES = 5
MAX_MESSAGE = 300
MAX_GOOD_EVERYWHERE = 10


def cell_status(cell: Cell, job_status: Mapping[str, Any] | None) -> dict[str, Any]:
    """One cell's line of the campaign status from its DeNASJob's status (None: not created yet)."""
    out: dict[str, Any] = {"name": cell.name, "target": cell.target, "constraints": cell.constraints}
    if cell.domain:
        out["domain"] = cell.domain
    job_status = job_status or {}
    out["phase"] = job_status.get("phase") or ("Pending" if job_status else "Waiting")
    failed = next(
        (
            c
            for c in job_status.get("conditions", [])
            if c.get("type") == S.FAILED and c.get("status") == "True"
        ),
        None,
    )
    if failed:
        out["phase"] = "Failed"
        out["message"] = (failed.get("message") or failed.get("reason") or "")[:MAX_MESSAGE]
    best = job_status.get("bestStructures") or []
    if best:
        top = best[0]
        out["best"] = {k: top[k] for k in ("hash", "deScore", "latencyMs", "params") if k in top}
        out["top"] = [b["hash"] for b in best[:TOP_HASHES] if b.get("hash")]
    search = job_status.get("search") or {}
    for key in S.SHARED_COUNTS:
        if key in search:
            out[key] = int(search[key])
    training = job_status.get("training") or {}
    if "metric" in training:
        out["metric"] = training["metric"]
    return out


def good_everywhere(cells: Sequence[Mapping[str, Any]], targets: Sequence[str]) -> list[str]:
    """Hashes among the top of at least one cell of every target, best summed rank first."""
    ranks: dict[str, dict[str, int]] = {}
    for c in cells:
        for rank, h in enumerate(c.get("top") or []):
            by_target = ranks.setdefault(h, {})
            by_target[c["target"]] = min(rank, by_target.get(c["target"], rank))
    everywhere = [h for h, by in ranks.items() if all(t in by for t in targets)]
    return sorted(everywhere, key=lambda h: (sum(ranks[h].values()), h))[:MAX_GOOD_EVERYWHERE]


def summarize(
    cells: Sequence[Mapping[str, Any]],
    targets: Sequence[str],
    conditions: Sequence[Mapping[str, Any]] = (),
    observed_generation: int | None = None,
) -> dict[str, Any]:
    """The campaign status: progress, per-cell results, best per target, conditions, score counts."""
    cells = list(cells)[:MAX_CELLS]
    count = {p: sum(1 for c in cells if c["phase"] == p) for p in ("Succeeded", "Failed")}
    waiting = sum(1 for c in cells if c["phase"] == "Waiting")
    running = len(cells) - count["Succeeded"] - count["Failed"] - waiting
    progress = {
        "total": len(cells),
        "pending": waiting,
        "running": running,
        "succeeded": count["Succeeded"],
        "failed": count["Failed"],
        "summary": f"{count['Succeeded']}/{len(cells)}",
    }
    best: dict[str, float] = {}
    for c in cells:
        score = (c.get("best") or {}).get("deScore")
        if score is not None and (c["target"] not in best or score > best[c["target"]]):
            best[c["target"]] = score
    failed = [c for c in cells if c["phase"] == "Failed"]
    conds = list(conditions)
    if failed:
        first = failed[0]
        message = f"cell {first['name']} failed: {first.get('message', '')}"
        if len(failed) > 1:
            message += f" (and {len(failed) - 1} more failed cell(s))"
        conds = S.set_condition(
            conds, DEGRADED, True, "CellFailed", message[: MAX_MESSAGE * 2], observed_generation
        )
    else:
        conds = S.set_condition(conds, DEGRADED, False, "NoFailedCell", "", observed_generation)
    done = bool(cells) and count["Succeeded"] == len(cells)
    conds = S.set_condition(
        conds,
        SUCCEEDED,
        done,
        "AllCellsSucceeded" if done else "CellsRemaining",
        f"{count['Succeeded']}/{len(cells)} cells succeeded",
        observed_generation,
    )
    conds = S.set_condition(
        conds,
        PROGRESSING,
        not done and not failed,
        "CellsRunning" if not done else "Finished",
        f"{running} running, {waiting} waiting",
        observed_generation,
    )
    conds = [c for c in conds if c["type"] != INVALID]
    return {
        "phase": "Degraded" if failed else ("Succeeded" if done else ("Running" if running else "Pending")),
        "conditions": conds,
        "targets": ",".join(targets),
        "bestPerTarget": ", ".join(f"{t}={best[t]:.4g}" for t in targets if t in best),
        "progress": progress,
        "cells": cells,
        # DE-Scores and selection runs computed by the cells vs taken from the campaign's store
        **{key: sum(c.get(key, 0) for c in cells) for key in S.SHARED_COUNTS},
        "goodEverywhere": good_everywhere(cells, targets),
    }


def invalid_status(message: str, observed_generation: int | None = None) -> dict[str, Any]:
    """A campaign whose spec cannot be expanded: one condition naming the field, no cells touched."""
    return {
        "phase": INVALID,
        "conditions": S.set_condition([], INVALID, True, "InvalidSpec", message[:2000], observed_generation),
    }
