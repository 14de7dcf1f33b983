"""A DeNASCampaign's report on its claim: when every cell has finished, one Pod runs
`denas report --claim` over the cells' result files and writes report.json, pareto.png and
report.html into ``<claim>/<campaign>-report/``.  Pure (no kopf, no API calls), like campaigns.py.

Rules:
- only with a claim (``spec.template.storage.claimName``): without one the cells' results live in
  emptyDirs that are gone, and status.report says to draw the report with `denas report` locally;
- one Pod and one ConfigMap (the status.json the Pod reads: the cells' lines plus where each
  cell's result is on the claim), both named ``<campaign>-report``, owned by the campaign;
- both carry ``denas.io/report-key``, a hash of the finished cells' results (each cell's phase,
  result path, winner and metric): a new key (a cell added, edited or rerun and finished) deletes
  the old Pod and draws again; the same key never starts a second Pod, not even after the
  succeeded Pod was garbage-collected;
- a failed report Pod is kept (its logs) and reported (status.report, condition ReportReady=False,
  a Warning Event); deleting it by hand runs the report again. It never touches the cells or the
  campaign's own health (phase, Degraded, Succeeded).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from denas import status as S
from denas.campaign.spec import LABEL_CAMPAIGN
from denas.fingerprints import stable_hash

from . import names as n
from .pods import (
    env_list,
    placement,
    read_only_root_env,
    restricted_container_security,
    restricted_pod_security,
    worker_image,
)
from .scheduling import decorate_pod

RUNNING, SUCCEEDED, FAILED = "Running", "Succeeded", "Failed"  # of the Pod and of status.report
FINISHED = (SUCCEEDED, FAILED)
REPORT_READY = "ReportReady"
# `denas report` reads JSON and draws one figure: small, and a quota'd namespace needs requests.
REPORT_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
MAX_MESSAGE = 300


@dataclass
class ReportPlan:
    create: list[dict[str, Any]] = field(default_factory=list)  # ConfigMap before Pod
    patch: list[dict[str, Any]] = field(default_factory=list)  # ConfigMaps, as merge patches of the whole
    delete_pods: list[tuple[str, str | None]] = field(default_factory=list)  # (name, uid precondition)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)  # status.report
    observe: bool = False  # planned without the report objects, which it needs: observe, plan again
    condition: tuple[bool, str, str] = (False, "", "")  # ReportReady: (status, reason, message)


def campaign_owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": n.API_VERSION,
        "kind": n.CAMPAIGN_KIND,
        "name": body["metadata"]["name"],
        "uid": body["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _owned(obj: Mapping[str, Any], uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


def _key_of(obj: Mapping[str, Any] | None) -> str | None:
    return (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(n.ANNOTATION_REPORT_KEY)


def result_path(job: Mapping[str, Any] | None) -> str | None:
    """The cell's result.json relative to the claim (from its DeNASJob's status.resultRef)."""
    ref = ((job or {}).get("status") or {}).get("resultRef") or {}
    path = ref.get("path")
    root = n.STATE_ROOT.rstrip("/") + "/"
    if not isinstance(path, str) or not path.startswith(root) or ".." in path.split("/"):
        return None
    return path[len(root) :].rstrip("/") + "/" + n.RESULT_KEY


def report_status_file(
    status: Mapping[str, Any], children: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """What the report Pod reads (`denas report --status`): the campaign status' summary, each cell
    line with ``resultPath`` (null: the cell has no result, e.g. it failed before its search ended)."""
    cells = [
        {**line, "resultPath": result_path(children.get(line["name"]))} for line in status.get("cells", [])
    ]
    keep = ("progress", "goodEverywhere", *S.SHARED_COUNTS, "targets", "bestPerTarget")
    return {"cells": cells, **{k: status[k] for k in keep if k in status}}


def report_key(claim: str, cells: Sequence[Mapping[str, Any]]) -> str:
    """Changes whenever a redraw would: a cell's phase, result file, winner or metric."""
    return stable_hash(
        [
            claim,
            sorted(
                (
                    c["name"],
                    c.get("phase"),
                    c.get("resultPath"),
                    (c.get("best") or {}).get("hash"),
                    c.get("metric"),
                )
                for c in cells
            ),
        ],
        16,
    )


def _metadata(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    campaign = body["metadata"]["name"]
    return {
        "name": n.campaign_report(campaign),
        "namespace": body["metadata"].get("namespace") or "default",
        "labels": {LABEL_CAMPAIGN: campaign, n.LABEL_ROLE: n.ROLE_CAMPAIGN_REPORT},
        "annotations": {n.ANNOTATION_REPORT_KEY: key},
        "ownerReferences": [campaign_owner_reference(body)],
    }


def build_report_configmap(
    body: Mapping[str, Any], status_file: Mapping[str, Any], key: str
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(body, key),
        "data": {n.CAMPAIGN_STATUS_KEY: json.dumps(status_file, indent=1, sort_keys=True)},
    }


def report_command(campaign: str) -> list[str]:
    return [
        "denas",
        "report",
        "--claim",
        n.STATE_ROOT,
        "--campaign",
        campaign,
        "--status",
        f"{n.CAMPAIGN_DIR}/{n.CAMPAIGN_STATUS_KEY}",
        "--out",
        f"{n.STATE_ROOT}/{n.campaign_report(campaign)}",
    ]


def build_report_pod(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The template's image, pull secrets, podTemplate metadata and placement; PodSecurity
    "restricted" like the cells' pods; no API access (it reads files and writes files)."""
    template = body["spec"]["template"]
    campaign = body["metadata"]["name"]
    name = n.campaign_report(campaign)
    mounts = [
        {"name": "state", "mountPath": n.STATE_ROOT},
        {"name": "campaign", "mountPath": n.CAMPAIGN_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": n.TMP_DIR},
    ]
    volumes = [
        {"name": "state", "persistentVolumeClaim": {"claimName": template["storage"]["claimName"]}},
        {"name": "campaign", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {}},
    ]
    container = {
        "name": "report",
        "image": worker_image(template),
        "imagePullPolicy": template.get("imagePullPolicy", "IfNotPresent"),
        "command": report_command(campaign),
        "env": env_list({"PYTHONUNBUFFERED": "1", **read_only_root_env()}),
        "volumeMounts": mounts,
        "securityContext": restricted_container_security(),
        "resources": REPORT_RESOURCES,
        "terminationMessagePolicy": "FallbackToLogsOnError",  # its error in status.report
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod_security(),
        "containers": [container],
        "volumes": volumes,
    }
    if template.get("serviceAccountName"):  # e.g. a workload identity the claim's storage needs
        spec["serviceAccountName"] = template["serviceAccountName"]
    spec.update(placement(template.get("hardware") or {}))
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": _metadata(body, key), "spec": spec}
    return decorate_pod(pod, template)


def _state(plan: ReportPlan, phase: str, ok: bool, reason: str, message: str) -> None:
    """status.report's phase and message, and condition ReportReady (written by `apply_to_status`)."""
    plan.report.update(phase=phase, message=message)
    plan.condition = (ok, reason, message)


def _pod_outcome(pod: Mapping[str, Any]) -> tuple[str, str]:
    """(Running | Succeeded | Failed, a one-line message) of the report Pod."""
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    container = next(iter(status.get("containerStatuses") or []), {})
    state = container.get("state") or {}
    if phase == "Failed":
        term = state.get("terminated") or {}
        detail = (term.get("message") or status.get("message") or "").strip()
        reason = term.get("reason") or status.get("reason") or "Error"
        code = term.get("exitCode")
        text = (
            f"{reason}"
            + (f" (exit code {code})" if code is not None else "")
            + (f": {detail}" if detail else "")
        )
        return FAILED, text[-MAX_MESSAGE:]
    if phase == "Succeeded":
        return SUCCEEDED, ""
    waiting = state.get("waiting") or {}
    unscheduled = next(
        (
            c
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        {},
    )
    why = waiting if waiting.get("reason") else unscheduled
    if why.get("reason"):  # e.g. ImagePullBackOff, Unschedulable
        return RUNNING, f"{phase}: {why['reason']} {why.get('message') or ''}".strip()[:MAX_MESSAGE]
    return RUNNING, phase


def plan_report(
    body: Mapping[str, Any],
    status: Mapping[str, Any],
    children: Mapping[str, Mapping[str, Any]],
    observed: Mapping[str, Any] | None = None,
) -> ReportPlan:
    """``status``: the campaign status just planned; ``observed``: {"pod", "configmap"} named
    ``<campaign>-report`` as read from the API (camelCase dicts, None when absent), or None when
    not read: the handler reads them only when the plan says so (every cell finished), so the
    many reconciles of a running campaign cost no extra API calls."""
    plan = ReportPlan()
    template = body["spec"]["template"]
    claim = (template.get("storage") or {}).get("claimName")
    campaign = body["metadata"]["name"]
    uid = body["metadata"]["uid"]
    name = n.campaign_report(campaign)
    previous = dict((body.get("status") or {}).get("report") or {})
    if not claim:
        message = (
            "no claim (spec.template.storage.claimName): the cells' results are not kept, so no report "
            "is drawn on the cluster; run the campaign locally (denas run) or give the template a "
            "claim (docs/campaigns.md)"
        )
        _state(plan, "Unavailable", False, "NoClaim", message)
        return plan
    plan.report = {"claimName": claim, "path": f"{name}/", "pod": name}
    lines = list(status.get("cells") or [])
    done = sum(1 for c in lines if c.get("phase") in FINISHED and c["name"] in children)
    if not lines or done < len(lines):
        message = f"drawn when every cell has finished ({done}/{len(lines)})"
        _state(plan, "Waiting", False, "CellsRemaining", message)
        return plan
    if observed is None:
        plan.observe = True
        plan.report = {**plan.report, **previous}
        plan.condition = (False, "ReportPending", "every cell finished: reading the report Pod")
        return plan
    pod, cm = observed.get("pod"), observed.get("configmap")
    for obj, kind in ((pod, "Pod"), (cm, "ConfigMap")):
        if obj is not None and not _owned(obj, uid):
            message = (
                f"a {kind} named {name} exists and is not this campaign's: rename or delete it, and "
                "the report is drawn"
            )
            _state(plan, "Failed", False, "NameTaken", message)
            if previous.get("message") != message:
                plan.events.append(("Warning", "ReportFailed", message))
            return plan
    status_file = report_status_file(status, children)
    key = report_key(claim, status_file["cells"])
    plan.report["key"] = key
    if pod is not None and (pod.get("metadata") or {}).get("deletionTimestamp"):
        message = f"waiting for the earlier report Pod {name} to be deleted"
        _state(plan, "Pending", False, "ReportPending", message)
        return plan
    if pod is not None and _key_of(pod) != key:
        plan.delete_pods.append((name, (pod.get("metadata") or {}).get("uid")))
        message = "the cells' results changed: drawing the report again"
        _state(plan, "Pending", False, "ReportPending", message)
        plan.events.append(("Normal", "ReportOutdated", message))
        return plan
    if cm is None:
        plan.create.append(build_report_configmap(body, status_file, key))
    elif _key_of(cm) != key:
        desired = build_report_configmap(body, status_file, key)
        plan.patch.append(
            {"metadata": {"annotations": desired["metadata"]["annotations"]}, "data": desired["data"]}
        )
    where = f"{claim}:{name}/"
    written = f"report.html, report.json, pareto.png in {where}"
    if pod is None:
        if previous.get("key") == key and previous.get("phase") == "Succeeded":
            _state(plan, "Succeeded", True, "ReportWritten", written)
            return plan  # drawn already; its Pod was deleted (by hand or garbage collection)
        plan.create.append(build_report_pod(body, key))
        message = f"Pod {name} draws the report into {where}"
        _state(plan, "Running", False, "ReportRunning", message)
        plan.events.append(("Normal", "ReportCreated", message))
        return plan
    phase, detail = _pod_outcome(pod)
    changed = (previous.get("phase"), previous.get("key")) != (phase, key)
    if phase == "Succeeded":
        _state(plan, "Succeeded", True, "ReportWritten", written)
        if changed:
            plan.events.append(("Normal", "ReportWritten", written))
    elif phase == "Failed":
        message = (
            f"report Pod {name} failed: {detail}. The cells are not affected; see kubectl logs {name}, "
            f"and delete the Pod to draw the report again"
        )
        _state(plan, "Failed", False, "ReportFailed", message)
        if changed:
            plan.events.append(("Warning", "ReportFailed", message))
    else:
        message = f"Pod {name} draws the report into {where} ({detail})"
        _state(plan, "Running", False, "ReportRunning", message)
    return plan


def apply_to_status(plan: ReportPlan, status: dict[str, Any], generation: int | None) -> None:
    """status.report and condition ReportReady (never Degraded/Succeeded: the cells decide those)."""
    status["report"] = plan.report
    ok, reason, message = plan.condition
    status["conditions"] = S.set_condition(
        status.get("conditions", []), REPORT_READY, ok, reason, message[: MAX_MESSAGE * 2], generation
    )
