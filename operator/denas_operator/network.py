"""Pure builder of a job's NetworkPolicy: its pods' rendezvous ports only for the same job.

A job's pods listen on the search store / gloo port (29500), the torchrun c10d master port
(23456) and the metrics port (9400). The policy (one per job, owned by it, named `<job>-pods`)
selects every pod of the job and allows ingress
- to the rendezvous ports only from pods of the same job (label `denas.io/job-name`);
- to the metrics port only from the monitoring namespaces (env
  `DENAS_NETWORK_POLICY_METRICS_NAMESPACE_SELECTOR`, a JSON LabelSelector; the chart passes
  `networkPolicy.metricsNamespaceSelector`), or from anywhere when that is unset.
Everything else reaching the pods is denied (a pod selected by an ingress policy accepts only
what some policy allows). Egress is not restricted: pods reach the API server, registries and
data sets as before. Enforcement needs a CNI that implements NetworkPolicy (Calico, Cilium, ...);
elsewhere the object is accepted and has no effect.

On/off: env `DENAS_NETWORK_POLICY` (default on; the chart value `networkPolicy.enabled`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from . import names as n
from .pods import JobRef, child_metadata

ENABLED_ENV = "DENAS_NETWORK_POLICY"
METRICS_SELECTOR_ENV = "DENAS_NETWORK_POLICY_METRICS_NAMESPACE_SELECTOR"
ROLE_NETWORK_POLICY = "network-policy"


def network_policy_name(job: str) -> str:
    return f"{job}-pods"


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "true").strip().lower() not in ("0", "false", "no", "off")


def metrics_namespace_selector() -> dict[str, Any] | None:
    """The monitoring namespaces' LabelSelector, or None (metrics open to any source)."""
    raw = os.environ.get(METRICS_SELECTOR_ENV, "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None  # a malformed env must not stop jobs; the chart's schema checks the value
    return value if isinstance(value, dict) else None


def build_network_policy(job: JobRef, metrics_from: dict[str, Any] | None = None) -> dict[str, Any]:
    same_job = {"podSelector": {"matchLabels": {n.LABEL_JOB: job.name}}}
    rendezvous = [{"protocol": "TCP", "port": port} for port in (n.SEARCH_PORT, n.TRAIN_PORT)]
    metrics_rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": n.METRICS_PORT}]}
    if metrics_from is not None:
        metrics_rule["from"] = [{"namespaceSelector": metrics_from}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(job, network_policy_name(job.name), ROLE_NETWORK_POLICY),
        "spec": {
            "podSelector": {"matchLabels": {n.LABEL_JOB: job.name}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [same_job], "ports": rendezvous}, metrics_rule],
        },
    }


def desired_network_policy(job: JobRef) -> dict[str, Any] | None:
    """The job's policy when the operator is configured to make them, else None."""
    return build_network_policy(job, metrics_namespace_selector()) if enabled() else None
