"""Whole-group pod lifecycle (pure): compare a group's desired pods with the observed ones.

A group (the search pods, or the training master + workers) lives and dies together: one failed
or vanished rank breaks the collective, so the whole group is deleted and recreated (it resumes
from its checkpoint), counting one restart against the backoff limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .podstate import pod_blocker, pod_failure, pod_name, pod_state, template_hash


@dataclass
class GroupOutcome:
    state: str  # pending | running | done | restarting | failed
    create: list[dict[str, Any]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    restarts: int = 0
    message: str = ""
    blocker: tuple[str, str] | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0


def reconcile_group(
    desired: list[dict[str, Any]],
    existing: list[dict[str, Any]],
    done: Callable[[dict[str, str]], bool],
    restarts: int,
    backoff_limit: int,
) -> GroupOutcome:
    """What to create/delete so the group converges; `done(states by pod name)` ends the group."""
    by_name = {pod_name(p): p for p in existing}
    wanted = {pod_name(p): p for p in desired}
    states = {name: pod_state(pod) for name, pod in by_name.items()}
    out = GroupOutcome(state="pending", restarts=restarts)
    out.active = sum(s in ("pending", "running") for s in states.values())
    out.succeeded = sum(s == "succeeded" for s in states.values())
    out.failed = sum(s == "failed" for s in states.values())
    unfinished = [name for name, s in states.items() if s in ("pending", "running")]
    out.delete = [name for name in by_name if name not in wanted and states[name] != "terminating"]

    if done({name: states.get(name, "missing") for name in wanted}):
        out.state = "done"
        out.delete += [name for name in unfinished if name not in out.delete]
        return out
    if any(s == "terminating" for s in states.values()):
        out.state = "restarting"  # never create a pod while its namesake still terminates
        return out

    failed = [by_name[name] for name, s in states.items() if s == "failed" and name in wanted]
    missing = [name for name in wanted if name not in by_name]
    started = [name for name, s in states.items() if s in ("running", "succeeded", "failed")]
    stale = [
        name
        for name in wanted
        if name in by_name
        and template_hash(by_name[name]) is not None  # an older operator's pod: left to finish
        and template_hash(by_name[name]) != template_hash(wanted[name])
    ]

    if failed or (missing and started):
        reason = pod_failure(failed[0]) if failed else f"pod {missing[0]} disappeared while its group ran"
        out.restarts = restarts + 1
        out.message = reason
        out.delete = list(by_name)
        if out.restarts > backoff_limit:
            out.state = "failed"
            out.message = (
                f"{reason}; the group was restarted {restarts} time(s), backoffLimit is {backoff_limit}"
            )
        else:
            out.state = "restarting"
        return out
    if stale:
        # The spec changed under running pods: replace the group (not a failure, no restart counted).
        out.state = "restarting"
        out.message = f"pod template of {stale[0]} changed; replacing the group"
        out.delete = list(by_name)
        return out

    out.create = [wanted[name] for name in missing]
    for pod in existing:
        blocker = pod_blocker(pod)
        if blocker:
            out.blocker = blocker
            break
    out.state = "running" if not missing and any(s == "running" for s in states.values()) else "pending"
    return out
