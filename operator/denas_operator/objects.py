"""Pure builders of a DeNASJob's non-pod children: headless Services, ConfigMaps, PyTorchJob."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from . import names as n
from .pods import JobRef, child_metadata, group_template_hash, stable_hash, training_command
from .scheduling import KUEUE_QUEUE_LABEL, decorate_service_account, strip_kueue


def job_manifest(job: JobRef, *, copy_spec: bool = True) -> dict[str, Any]:
    """What the pods read as job.yaml: the spec with every default applied, no cluster metadata."""
    return {
        "apiVersion": n.API_VERSION,
        "kind": n.KIND,
        "metadata": {"name": job.name, "namespace": job.namespace},
        "spec": copy.deepcopy(job.spec) if copy_spec else job.spec,
    }


def spec_hash(job: JobRef) -> str:
    """Identifies the job.yaml a spec ConfigMap holds (cheap: no YAML needed to compare).
    Computed every reconcile, so on the spec itself: hashing only reads it, no copy needed."""
    return stable_hash(job_manifest(job, copy_spec=False))


def build_spec_configmap(job: JobRef) -> dict[str, Any]:
    # libyaml's emitter when present: same text, ~4x faster (a burst of new jobs dumps one each).
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(job_manifest(job), Dumper=dumper, sort_keys=False)
    metadata = child_metadata(job, n.spec_configmap(job.name), n.ROLE_SPEC)
    metadata["annotations"] = {n.ANNOTATION_SPEC_HASH: spec_hash(job)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {n.SPEC_KEY: text}}


def build_result_configmap(job: JobRef) -> dict[str, Any]:
    """Created empty; pods fill their own keys (see denas.kube_report), the operator only reads."""
    metadata = child_metadata(job, n.result_configmap(job.name), n.ROLE_RESULT)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {}}


def build_worker_rbac(job: JobRef) -> list[dict[str, Any]]:
    """ServiceAccount `<job>-worker` + Role (get/patch on `<job>-result` only) + RoleBinding: what
    the pods need to report (denas/kube_report.py). Used when spec.serviceAccountName is unset."""
    name = n.worker_account(job.name)
    role = n.ROLE_WORKER_RBAC
    return [
        decorate_service_account(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": child_metadata(job, name, role)},
            job.spec,
        ),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": child_metadata(job, name, role),
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "resourceNames": [n.result_configmap(job.name)],
                    "verbs": ["get", "patch"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": child_metadata(job, name, role),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.namespace}],
        },
    ]


def build_headless_service(job: JobRef, group: str) -> dict[str, Any]:
    """Gives pod 0 of a group a stable DNS name (`<pod>.<service>.<ns>.svc`) for the rendezvous."""
    if group == "search":
        name, port, port_name = n.search_service(job.name), n.SEARCH_PORT, "gloo"
    else:
        name, port, port_name = n.train_service(job.name), n.TRAIN_PORT, "c10d"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(job, name, group),
        "spec": {
            "clusterIP": "None",
            # DNS records must exist before any readiness: workers resolve the master at start-up.
            "publishNotReadyAddresses": True,
            "selector": {n.LABEL_JOB: job.name, "denas.io/group": group},
            "ports": [{"name": port_name, "port": port, "targetPort": port}],
        },
    }


def build_pytorchjob(job: JobRef, training_pods: list[dict[str, Any]], queue: str = "") -> dict[str, Any]:
    """`training.backend: kubeflow`: the same pod templates as a kubeflow.org/v1 PyTorchJob."""
    training = job.spec.get("training") or {}
    replica_specs: dict[str, Any] = {}
    for role, pods in (("Master", training_pods[:1]), ("Worker", training_pods[1:])):
        if not pods:
            continue
        template = copy.deepcopy(pods[0])
        spec = template["spec"]
        for key in ("hostname", "subdomain", "restartPolicy"):
            spec.pop(key, None)
        spec.pop("initContainers", None)  # the training operator adds its own wait-for-master
        container = spec["containers"][0]
        container["name"] = "pytorch"  # the name the Kubeflow controller looks for
        container["command"] = training_command(job, 0, for_kubeflow=True)
        drop = {"MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK"}
        container["env"] = [
            e for e in container["env"] if e["name"] not in drop and not e["name"].startswith("PET_")
        ]
        labels = {k: v for k, v in template["metadata"]["labels"].items() if k != n.LABEL_RANK}
        # The user's pod-template annotations, not the operator's per-pod hash.
        annotations = {
            k: v
            for k, v in template["metadata"].get("annotations", {}).items()
            if k != n.ANNOTATION_TEMPLATE_HASH
        }
        meta: dict[str, Any] = {"labels": labels, **({"annotations": annotations} if annotations else {})}
        replica_specs[role] = {
            "replicas": len(pods),
            "restartPolicy": "OnFailure",
            "template": strip_kueue({"metadata": meta, "spec": spec}),
        }
    run_policy: dict[str, Any] = {
        "backoffLimit": int(training.get("backoffLimit", 3)),
        "cleanPodPolicy": "None",
    }
    if training.get("activeDeadlineSeconds"):
        run_policy["activeDeadlineSeconds"] = int(training["activeDeadlineSeconds"])
    metadata = child_metadata(job, n.pytorchjob(job.name), "train")
    if queue:  # Kueue's kubeflow integration admits (and suspends) the PyTorchJob as a whole
        metadata["labels"][KUEUE_QUEUE_LABEL] = queue
    # Spec edits replace the PyTorchJob (its controller does not roll running pods on an update).
    metadata["annotations"] = {n.ANNOTATION_TEMPLATE_HASH: group_template_hash(job.spec, "train")}
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": {
            "nprocPerNode": str(training.get("nprocPerNode", 1)),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replica_specs,
        },
    }
