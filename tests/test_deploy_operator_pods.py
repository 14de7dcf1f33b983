"""Every pod the operator spawns for the shipped jobs (samples, campaign) is PodSecurity
"restricted" and a valid core/v1 Pod for Kubernetes 1.30 and 1.33.

The operator's pure builders are run on real manifests; tests/podsecurity.py is the checker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import ROOT, assert_valid, load_docs
from podsecurity import assert_restricted

from denas.job import load_job

JOB_FILES = sorted((ROOT / "deploy" / "samples").glob("*.yaml")) + sorted(
    (ROOT / "gitops" / "campaign").glob("cnn-*.yaml")
)


def _jobs() -> list[tuple[str, dict]]:
    jobs = []
    for path in JOB_FILES:
        for doc in load_docs(path):
            if doc.get("kind") == "DeNASJob":
                jobs.append((f"{Path(path).parent.name}/{path.name}", doc))
    return jobs


JOBS = _jobs()
DATA_JOBS = [(name, m) for name, m in JOBS if "path" in m["spec"].get("training", {}).get("dataset", {})]


def _job_ref(manifest: dict):
    from denas_operator.pods import JobRef

    job = load_job(manifest)
    body = {**job.manifest, "metadata": {**job.manifest["metadata"], "namespace": "nas", "uid": "0000-uid"}}
    return JobRef.from_body(body, job.spec)


@pytest.mark.parametrize(("name", "manifest"), JOBS, ids=[name for name, _ in JOBS])
def test_spawned_pods_are_restricted_and_valid(name, manifest):
    from denas_operator.pods import build_search_pods, build_training_pods

    job = _job_ref(manifest)
    pods = build_search_pods(job) + build_training_pods(job)
    assert len(pods) == job.spec["search"]["replicas"] + job.spec["training"]["replicas"]
    for pod in pods:
        assert_restricted(pod)
    assert_valid(pods)


@pytest.mark.parametrize(("name", "manifest"), JOBS[:1], ids=[JOBS[0][0]])
def test_kubeflow_pytorchjob_templates_are_restricted(name, manifest):
    from denas_operator.objects import build_pytorchjob
    from denas_operator.pods import build_training_pods

    manifest = {
        **manifest,
        "spec": {
            **manifest["spec"],
            "training": {**manifest["spec"].get("training", {}), "backend": "kubeflow"},
        },
    }
    job = _job_ref(manifest)
    pytorchjob = build_pytorchjob(job, build_training_pods(job))
    for role, replica in pytorchjob["spec"]["pytorchReplicaSpecs"].items():
        assert_restricted(replica["template"]["spec"]), role


@pytest.mark.parametrize(("name", "manifest"), DATA_JOBS, ids=[name for name, _ in DATA_JOBS])
def test_training_pods_see_the_data_set_paths_the_job_names(name, manifest):
    """spec.training.dataset.path/tokenizer must lie inside a volume the training container mounts."""
    from denas_operator.pods import build_training_pods

    job = _job_ref(manifest)
    dataset = job.spec["training"]["dataset"]
    paths = [dataset[key] for key in ("path", "tokenizer") if key in dataset]
    (master, *_) = build_training_pods(job)
    container = master["spec"]["containers"][0]
    mounts = [m["mountPath"].rstrip("/") + "/" for m in container["volumeMounts"]]
    for path in paths:
        assert any(path.startswith(mount) for mount in mounts), f"{path} is outside every mount: {mounts}"
