"""Pure builders for running on shared clusters: pod metadata, pull secrets, Kueue admission.

- `spec.podTemplate.metadata` (labels, annotations: cost centres, policy hooks) reaches every pod
  the job creates, and the replica templates of a Kubeflow PyTorchJob; the operator's own keys
  (`denas.io/*`) always win, so a user label can never move a pod out of its job's selectors.
- Image pull secrets: `spec.imagePullSecrets` plus the operator's defaults (env
  `DENAS_DEFAULT_IMAGE_PULL_SECRETS`, chart value `worker.imagePullSecrets`) on every pod and on
  the per-job ServiceAccount. Both are applied after the pod-template hash is taken: they change
  nothing a running process sees, so adding a secret (or upgrading the operator with new
  defaults) never restarts a running group; new pods get them.
- Kueue: a job labelled `kueue.x-k8s.io/queue-name` (on the DeNASJob, or in
  `spec.podTemplate.metadata.labels`) is admitted through Kueue's pod integration, each group
  (search, training) as one pod group: all-or-nothing. Why this design and not `spec.suspend`:
  operator/denas_operator/README.md ("Kueue").
"""

from __future__ import annotations

import copy
import os
from typing import Any

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_GROUP_LABEL = "kueue.x-k8s.io/pod-group-name"
KUEUE_TOTAL_ANNOTATION = "kueue.x-k8s.io/pod-group-total-count"
# The operator restarts whole groups itself: a failed group's workload must finish (and free its
# quota and its pods' finalizers) instead of waiting for Kueue-style replacement pods.
KUEUE_RETRIABLE_ANNOTATION = "kueue.x-k8s.io/retriable-in-group"
KUEUE_GATE = "kueue.x-k8s.io/admission"
KUEUE_PREFIX = "kueue.x-k8s.io/"
SCHEDULING_GATED = "SchedulingGated"  # PodScheduled=False reason while any gate is set
DEFAULT_PULL_SECRETS_ENV = "DENAS_DEFAULT_IMAGE_PULL_SECRETS"


def queue_name(labels: dict[str, Any] | None, spec: dict[str, Any]) -> str:
    """The Kueue LocalQueue of a job: its own label first, then the pod template's."""
    # Also called on specs not validated yet (the operator observes before it decides): any shape.
    template: Any = spec.get("podTemplate") if isinstance(spec, dict) else None
    for key in ("metadata", "labels"):
        template = template.get(key) if isinstance(template, dict) else None
    own = labels.get(KUEUE_QUEUE_LABEL) if isinstance(labels, dict) else None
    value = own or (template.get(KUEUE_QUEUE_LABEL) if isinstance(template, dict) else None) or ""
    return value if isinstance(value, str) else ""


def template_metadata(spec: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """User labels/annotations for the pods, without the operator's and Kueue's own keys (those
    are set by `decorate_pod` / `kueue_pod_group`, never copied blindly)."""
    meta = (spec.get("podTemplate") or {}).get("metadata") or {}

    def keep(items: dict[str, Any] | None) -> dict[str, str]:
        return {
            str(k): str(v)
            for k, v in (items or {}).items()
            if not str(k).startswith("denas.io/") and not str(k).startswith(KUEUE_PREFIX)
        }

    return keep(meta.get("labels")), keep(meta.get("annotations"))


def default_pull_secrets() -> list[str]:
    """The operator's default pull secrets (comma-separated names in the env; the chart sets it)."""
    raw = os.environ.get(DEFAULT_PULL_SECRETS_ENV, "")
    return [s.strip() for s in raw.split(",") if s.strip()]


def pull_secrets(spec: dict[str, Any]) -> list[dict[str, str]]:
    """spec.imagePullSecrets then the operator's defaults, each name once, in order."""
    names = [s.get("name") for s in spec.get("imagePullSecrets") or [] if isinstance(s, dict)]
    names += default_pull_secrets()
    return [{"name": name} for name in dict.fromkeys(x for x in names if x)]


def decorate_pod(pod: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """Template metadata and pull secrets on a built pod (in place; returns it)."""
    labels, annotations = template_metadata(spec)
    meta = pod["metadata"]
    meta["labels"] = {**labels, **meta.get("labels", {})}
    meta["annotations"] = {**annotations, **(meta.get("annotations") or {})}
    secrets = pull_secrets(spec)
    if secrets:
        pod["spec"]["imagePullSecrets"] = secrets
    return pod


def decorate_service_account(account: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    secrets = pull_secrets(spec)
    if secrets:
        account["imagePullSecrets"] = secrets
    return account


def pod_group_name(job: str, uid: str, group: str, incarnation: int) -> str:
    """One Kueue workload per group incarnation: a restarted group (new pods after a failure)
    is a new workload, queued and admitted again. At most 63 characters (a label value)."""
    return f"{job[:40]}-{group}-{uid[:5] or 'x'}-{incarnation}".strip("-")


def kueue_pod_group(
    pods: list[dict[str, Any]], queue: str, job: str, uid: str, group: str, incarnation: int
) -> list[dict[str, Any]]:
    """The group's pods as one Kueue pod group: queue and group labels, the total count, and the
    admission gate (Kueue's webhook adds the same gate; setting it here too means the pods never
    start unadmitted, even where the webhook does not cover the namespace)."""
    if not queue:
        return pods
    out = []
    name = pod_group_name(job, uid, group, incarnation)
    for pod in pods:
        pod = copy.deepcopy(pod)
        meta = pod["metadata"]
        meta["labels"] = {**meta.get("labels", {}), KUEUE_QUEUE_LABEL: queue, KUEUE_GROUP_LABEL: name}
        meta["annotations"] = {
            **(meta.get("annotations") or {}),
            KUEUE_TOTAL_ANNOTATION: str(len(pods)),
            KUEUE_RETRIABLE_ANNOTATION: "false",
        }
        pod["spec"]["schedulingGates"] = [{"name": KUEUE_GATE}]
        out.append(pod)
    return out


def is_gated(pod: dict[str, Any]) -> bool:
    """Waiting at a scheduling gate (the scheduler reports PodScheduled=False/SchedulingGated)."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") not in (None, "Pending"):
        return False
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == SCHEDULING_GATED
        for c in status.get("conditions") or []
    )


def kueue_state(
    queue: str, pods: list[dict[str, Any]], namespace: str, queue_missing: bool | None
) -> tuple[str, str, str] | None:
    """(condition, reason, message) while the job's pods wait for Kueue, else None.
    `queue_missing`: the operator's last look at the LocalQueue (None: unknown)."""
    if not queue:
        return None
    gated = sorted(p["metadata"]["name"] for p in pods if is_gated(p))
    if not gated:
        return None
    if queue_missing:
        return (
            "Blocked",
            "KueueQueueNotFound",
            f"pods {', '.join(gated)} wait for Kueue admission, but LocalQueue {queue} (label "
            f"{KUEUE_QUEUE_LABEL}) does not exist in namespace {namespace} (or Kueue is not installed): "
            f"create it (`kubectl get localqueues -n {namespace}`) or fix the label",
        )
    return (
        "Queued",
        "WaitingForAdmission",
        f"pods {', '.join(gated)} wait for Kueue admission in LocalQueue {queue}; "
        f"`kubectl get workloads -n {namespace}` shows the queue position",
    )


def strip_kueue(template: dict[str, Any]) -> dict[str, Any]:
    """Replica templates of a PyTorchJob: Kueue admits the PyTorchJob itself (its queue label),
    so its pods carry no pod-group keys or gates (the pod integration skips owned pods anyway)."""
    meta = template.setdefault("metadata", {})
    for key in ("labels", "annotations"):
        if meta.get(key):
            meta[key] = {k: v for k, v in meta[key].items() if not k.startswith(KUEUE_PREFIX)}
    template.get("spec", {}).pop("schedulingGates", None)
    return template


def kueue_conditions(
    st: Any,
    queue: str,
    pods: list[dict[str, Any]],
    namespace: str,
    queue_missing: bool | None,
    before: list[dict[str, Any]],
) -> None:
    """On the status being built (`reconcile._Status`): Queued while Kueue holds the pods at its
    gate, Blocked=KueueQueueNotFound when their LocalQueue is missing, Queued=False once admitted."""
    if not queue:
        return
    state = kueue_state(queue, pods, namespace, queue_missing)
    if state is None:
        st.unset("Queued", "Admitted", f"admitted by Kueue (LocalQueue {queue})")
        return
    type_, reason, message = state
    st.cond(type_, True, reason, message)
    if type_ == "Blocked":
        st.unset("Queued", reason, message)
        # The stage has just cleared Blocked (no pod blocker): keep the original transition time.
        old = next((c for c in before if c.get("type") == "Blocked"), None)
        if old and old.get("status") == "True" and old.get("reason") == reason:
            for cond in st.st["conditions"]:
                if cond.get("type") == "Blocked":
                    cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
