"""Read pod status: lifecycle state, why a pod is stuck, why it failed (pure functions)."""

from __future__ import annotations

from typing import Any

from . import names as n

PULL_ERRORS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "RegistryUnavailable",
}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


def pod_name(pod: dict[str, Any]) -> str:
    return pod["metadata"]["name"]


def pod_state(pod: dict[str, Any]) -> str:
    """pending | running | succeeded | failed | terminating."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "terminating"
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    return {"Running": "running", "Succeeded": "succeeded", "Failed": "failed"}.get(phase, "pending")


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def pod_blocker(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, actionable message) when the pod cannot make progress on its own, else None."""
    name = pod_name(pod)
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if (
            cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return (
                "Unschedulable",
                f"pod {name} cannot be scheduled: {cond.get('message', '')}. Check spec.hardware.nodeSelector, "
                "tolerations, affinity and pinnedCpus/resources against the nodes of the pool.",
            )
    for cs in _container_statuses(pod):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in PULL_ERRORS:
            return (
                "ImagePullBackOff",
                f"pod {name}: image {cs.get('image', '?')} cannot be pulled ({reason}: {waiting.get('message', '')}). "
                "Check spec.image and the registry credentials: spec.imagePullSecrets (each Secret must "
                "exist in the job's namespace) or the operator's default worker.imagePullSecrets.",
            )
        if reason in CONFIG_ERRORS:
            return (
                reason,
                f"pod {name}: container cannot start ({reason}: {waiting.get('message', '')}). "
                "Check the ConfigMaps/volumes the pod mounts and spec.serviceAccountName.",
            )
    return None


def pod_failure(pod: dict[str, Any]) -> str:
    """Why a failed pod failed, with the exit code and a hint where to look."""
    name = pod_name(pod)
    status = pod.get("status") or {}
    for cs in _container_statuses(pod):
        term = (cs.get("state") or {}).get("terminated") or {}
        if term and term.get("exitCode", 0) != 0:
            detail = f"container {cs.get('name')} exited with code {term.get('exitCode')}"
            if term.get("reason"):
                detail += f" ({term['reason']})"
            if term.get("message"):
                detail += f": {term['message'][-300:]}"
            return f"pod {name}: {detail}; see `kubectl logs {name}`"
    reason = status.get("reason") or "Failed"
    return f"pod {name} failed ({reason}: {status.get('message', '')}); see `kubectl describe pod {name}`"


def template_hash(pod: dict[str, Any]) -> str | None:
    return (pod.get("metadata", {}).get("annotations") or {}).get(n.ANNOTATION_TEMPLATE_HASH)
