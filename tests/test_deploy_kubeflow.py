"""training.backend: kubeflow in a PodSecurity "restricted" namespace: every container of the
workers the Kubeflow training operator makes passes, its injected init container included."""

from __future__ import annotations

import yaml
from denas_operator.objects import build_pytorchjob
from denas_operator.pods import JobRef, build_training_pods
from deploy_support import ROOT
from podsecurity import restricted_violations

from denas.job import load_job

KUBEFLOW = ROOT / "deploy" / "kubeflow"


def _injected_init_container() -> dict:
    cm = yaml.safe_load((KUBEFLOW / "pytorch-init-container.yaml").read_text())
    text = cm["data"]["initContainer.yaml"]
    text = text.replace("{{.InitContainerImage}}", "alpine:3.10").replace(
        "{{.MasterAddr}}", "j-train-master-0"
    )
    return yaml.safe_load(text)


def test_kubeflow_workers_with_the_injected_init_container_are_restricted():
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "j", "namespace": "ns"},
        "spec": {"domain": "cnn", "training": {"replicas": 3, "backend": "kubeflow"}},
    }
    job = JobRef("j", "ns", "u", load_job(manifest).spec)
    worker = build_pytorchjob(job, build_training_pods(job))["spec"]["pytorchReplicaSpecs"]["Worker"]
    pod_spec = dict(worker["template"]["spec"])
    # What the training operator's pod looks like: its init container appended to ours (none).
    pod_spec["initContainers"] = [*pod_spec.get("initContainers", []), *_injected_init_container()]
    assert restricted_violations(pod_spec) == []


def test_the_stock_init_container_template_would_be_refused():
    """The reason the template ships: without a securityContext the pod is not restricted."""
    stock = [{k: v for k, v in c.items() if k != "securityContext"} for c in _injected_init_container()]
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "j", "namespace": "ns"},
        "spec": {"domain": "cnn", "training": {"replicas": 2, "backend": "kubeflow"}},
    }
    job = JobRef("j", "ns", "u", load_job(manifest).spec)
    worker = build_pytorchjob(job, build_training_pods(job))["spec"]["pytorchReplicaSpecs"]["Worker"]
    assert restricted_violations({**worker["template"]["spec"], "initContainers": stock})


def test_the_patch_mounts_the_template_where_the_training_operator_reads_it():
    patch = yaml.safe_load((KUBEFLOW / "training-operator-patch.yaml").read_text())
    spec = patch["spec"]["template"]["spec"]
    mount = spec["containers"][0]["volumeMounts"][0]
    assert mount["mountPath"] == "/etc/config"  # + initContainer.yaml: the flag's default path
    cm = yaml.safe_load((KUBEFLOW / "pytorch-init-container.yaml").read_text())
    assert spec["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    assert "initContainer.yaml" in cm["data"]
