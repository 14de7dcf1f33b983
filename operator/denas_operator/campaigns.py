"""DeNASCampaign decisions: campaign + its child DeNASJobs as observed -> what to create, patch,
delete, which Events to post and the new status.  Pure (no kopf, no API calls): the handlers in
campaign_handlers.py only observe, call `plan_campaign` and apply the plan.

Rules:
- one owned DeNASJob per matrix cell (`denas.campaign.spec`), created lazily so that at most
  ``spec.maxParallel`` cells are unfinished at once;
- an edited matrix: a removed cell's job is deleted, a new cell's job is created, a cell whose
  spec changed is patched (that job restarts its search), every other cell is left alone;
- a child that was created once (its cell is no longer ``Waiting`` in status) and is gone is
  created again, with a Warning Event;
- an invalid campaign changes no child (nothing is deleted) and says why in condition Invalid;
- when every cell has finished and the template has a claim, the report Pod draws the comparison
  onto the claim (campaign_report.py); status.report says where, or why there is none.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from denas.campaign import summary as CS
from denas.campaign.spec import (
    ANNOTATION_CELL_HASH,
    Campaign,
    cell_manifest,
    validate_campaign,
)

from .campaign_report import ReportPlan, apply_to_status, campaign_owner_reference, plan_report

FINISHED = ("Succeeded", "Failed")
__all__ = ["CampaignPlan", "campaign_owner_reference", "plan_campaign"]


@dataclass
class CampaignPlan:
    create: list[dict[str, Any]] = field(default_factory=list)
    patch: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (job name, merge patch)
    delete: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    status: dict[str, Any] = field(default_factory=dict)
    report: ReportPlan = field(default_factory=ReportPlan)  # the report Pod and its ConfigMap


def _job_phase(job: Mapping[str, Any]) -> str:
    status = job.get("status") or {}
    for c in status.get("conditions", []):
        if c.get("type") in FINISHED and c.get("status") == "True":
            return c["type"]
    return status.get("phase") or "Pending"


def plan_campaign(
    body: Mapping[str, Any],
    children: Mapping[str, Mapping[str, Any]],
    report: Mapping[str, Any] | None = None,
) -> CampaignPlan:
    """``body``: the DeNASCampaign; ``children``: its DeNASJobs by name (label denas.io/campaign);
    ``report``: the observed report objects {"pod", "configmap"} (campaign_report.plan_report)."""
    plan = CampaignPlan()
    manifest = copy.deepcopy(dict(body))
    generation = (body.get("metadata") or {}).get("generation")
    previous = dict(body.get("status") or {})
    errors = validate_campaign(manifest)
    if errors:
        message = "; ".join(errors)
        plan.status = CS.invalid_status(message, generation)
        plan.status["observedGeneration"] = generation
        if not any(c.get("type") == CS.INVALID for c in previous.get("conditions", [])):
            plan.events.append(("Warning", "InvalidSpec", message[:1000]))
        return plan
    campaign = Campaign(manifest)
    cells = campaign.cells()
    wanted = {c.name for c in cells}
    owner = campaign_owner_reference(body)
    was_created = {c["name"] for c in previous.get("cells", []) if c.get("phase") != "Waiting"}
    for name in sorted(children):
        if name not in wanted:
            plan.delete.append(name)
            plan.events.append(
                ("Normal", "CellRemoved", f"deleted DeNASJob {name}: its cell left the matrix")
            )
    unfinished = sum(
        1 for name, job in children.items() if name in wanted and _job_phase(job) not in FINISHED
    )
    slots = int(campaign.spec["maxParallel"]) - unfinished
    # a deleted child restarts (from its checkpoint on the claim): it takes a slot like any other
    # unfinished cell, ahead of cells that never ran, and waits when none is free
    missing = [c.name for c in cells if c.name not in children]
    deferred = {c["name"] for c in previous.get("cells", []) if c.get("recreate")}
    ahead = [m for m in missing if m in was_created or m in deferred]
    granted = set((ahead + [m for m in missing if m not in ahead])[: max(slots, 0)])
    lines = []
    for cell in cells:
        desired = cell_manifest(campaign, cell)
        desired["metadata"]["ownerReferences"] = [owner]
        job = children.get(cell.name)
        if job is not None:
            have = ((job.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_CELL_HASH)
            want = desired["metadata"]["annotations"][ANNOTATION_CELL_HASH]
            if have != want:
                plan.patch.append(
                    (
                        cell.name,
                        {"metadata": {"annotations": {ANNOTATION_CELL_HASH: want}}, "spec": desired["spec"]},
                    )
                )
                plan.events.append(
                    ("Normal", "CellUpdated", f"DeNASJob {cell.name}: the template or its cell changed")
                )
            lines.append(CS.cell_status(cell, job.get("status") or {"phase": "Pending"}))
            continue
        deleted = cell.name in was_created  # seen running (or finished) before, gone now
        if cell.name in granted:
            plan.create.append(desired)
            if deleted:
                plan.events.append(
                    ("Warning", "CellRecreated", f"DeNASJob {cell.name} was deleted; created it again")
                )
            else:
                plan.events.append(("Normal", "CellCreated", f"created DeNASJob {cell.name} ({cell.key})"))
            lines.append(CS.cell_status(cell, {"phase": "Pending"}))
        else:
            line = CS.cell_status(cell, None)
            if deleted or cell.name in deferred:
                line["recreate"] = True  # remembered in status: it goes first when a slot frees
                if deleted:
                    plan.events.append(
                        (
                            "Warning",
                            "CellRecreated",
                            f"DeNASJob {cell.name} was deleted; it is created again when one of "
                            f"the {campaign.spec['maxParallel']} running slots frees",
                        )
                    )
            lines.append(line)
    targets = [t["name"] for t in campaign.spec["matrix"]["targets"]]
    plan.status = {
        "observedGeneration": generation,
        **CS.summarize(lines, targets, previous.get("conditions", []), generation),
    }
    degraded = next(c for c in plan.status["conditions"] if c["type"] == CS.DEGRADED)
    was = next((c for c in previous.get("conditions", []) if c.get("type") == CS.DEGRADED), {})
    if degraded["status"] == "True" and was.get("message") != degraded["message"]:
        plan.events.append(("Warning", "CellFailed", degraded["message"]))
    # the report: only ever read from the cells' results, so it never changes their health
    plan.report = plan_report(manifest, plan.status, children, report)
    apply_to_status(plan.report, plan.status, generation)
    plan.events += plan.report.events
    return plan
