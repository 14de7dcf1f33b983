"""Why the API server refused a child (pure): the reason for the condition, and the fix.

A 403 on a create is not always missing RBAC: ResourceQuota, LimitRange, PodSecurity admission
and admission webhooks answer 403 too, each with its own message. A 400/422 means the object is
invalid (e.g. `resources.limits.cpu: lots`, which the CRD's free-form resources let through).
The API server's message goes into the condition verbatim, so the user reads what it said; the
reason tells which kind of refusal it was, and the hint what to change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Reasons of the Blocked/Failed conditions (documented in docs/troubleshooting.md).
RBAC = "Forbidden"
QUOTA = "QuotaExceeded"
LIMIT_RANGE = "LimitRangeRejected"
POD_SECURITY = "PodSecurityRejected"
ADMISSION = "AdmissionRejected"
INVALID = "Invalid"

# Substrings of the API server's messages, by the admission plugin that writes them
# (kube-apiserver: plugin/pkg/admission/resourcequota, limitranger, podsecurity; webhooks).
_QUOTA = re.compile(r"exceeded quota|failed quota|must specify (limits|requests)\.")
_LIMIT_RANGE = re.compile(
    r"(maximum|minimum) (cpu|memory|ephemeral-storage|storage) usage per (container|pod)"
    r"|(cpu|memory) max limit to request ratio",
    re.IGNORECASE,
)
_POD_SECURITY = re.compile(r"violates PodSecurity")
_WEBHOOK = re.compile(r"admission webhook .* denied the request")
_RBAC = re.compile(r"cannot (create|get|list|patch|update|delete|watch) resource")


@dataclass(frozen=True)
class Rejection:
    """A refused write: `reason` for the condition, `message` (the API server's own words plus the
    fix), and whether it is final for this spec (`invalid`: retrying the same object cannot help)."""

    reason: str
    message: str
    invalid: bool = False


def api_message(body: Any) -> str:
    """The `message` of a metav1.Status body (bytes, str or dict), else the body as text."""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return body.strip()
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(body or "")


def classify(status: int, body: Any, kind: str, namespace: str, where: str = "") -> Rejection | None:
    """The rejection for an HTTP `status` with its Status `body` on creating a `kind`, or None when
    it is not a refusal (e.g. 409, 5xx). `where` names the spec fields that shaped the object."""
    msg = api_message(body)
    fields = f" ({where})" if where else ""
    if status in (400, 422):
        return Rejection(
            INVALID,
            f"the API server rejected the {kind}{fields} as invalid: {msg}. Fix the named field in the "
            "DeNASJob's spec (kubectl edit dnj); the job is re-evaluated after the edit",
            invalid=True,
        )
    if status != 403:
        return None
    if _QUOTA.search(msg):
        hint = (
            f"a ResourceQuota in namespace {namespace} does not leave room for it: lower the resources "
            f"in the spec{fields}, wait for other workloads to finish, or raise the quota "
            f"(kubectl describe resourcequota -n {namespace}); the operator retries"
        )
        return Rejection(QUOTA, f"{msg}. {hint}")
    if _LIMIT_RANGE.search(msg):
        hint = (
            f"the namespace's LimitRange bounds each container: set the resources in the spec{fields} "
            f"within them (kubectl describe limitrange -n {namespace}); the operator retries"
        )
        return Rejection(LIMIT_RANGE, f"{msg}. {hint}")
    if _POD_SECURITY.search(msg):
        hint = (
            f"the operator's pods meet PodSecurity 'restricted' by themselves; check the namespace's "
            f"pod-security.kubernetes.io labels and the user id (chart value worker.runAsUser) "
            f"(kubectl get ns {namespace} --show-labels); the operator retries"
        )
        return Rejection(POD_SECURITY, f"{msg}. {hint}")
    if _WEBHOOK.search(msg) or not _RBAC.search(msg):
        hint = "an admission policy refused it: change the spec or the policy as its message says; the operator retries"
        return Rejection(ADMISSION, f"{msg}. {hint}")
    hint = (
        "the operator's ServiceAccount lacks this permission: grant it the verbs listed in "
        "operator/denas_operator/RBAC.md (the Helm chart's ClusterRole has them)"
    )
    return Rejection(RBAC, f"{msg}. {hint}")
