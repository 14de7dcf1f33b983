"""deploy/samples/: one commented DeNASJob per domain, each accepted by the CRD schema as shipped."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import ROOT, load_docs

from denas.job import load_job

SAMPLES = sorted((ROOT / "deploy" / "samples").glob("*.yaml"))
JOB_SAMPLES = [p for p in SAMPLES if any(d.get("kind") == "DeNASJob" for d in load_docs(p))]
MOUNT = "/var/lib/denas"  # where spec.storage.claimName is mounted (see the CRD description)


def test_there_is_a_sample_for_every_searchable_domain():
    domains = {load_job(p).domain for p in JOB_SAMPLES}
    assert {"cnn", "vit", "bert", "asr"} <= domains


@pytest.mark.parametrize("path", JOB_SAMPLES, ids=lambda p: p.name)
def test_sample_validates_against_the_crd_schema(path: Path):
    job = load_job(path)
    assert job.name and job.spec["domain"]


@pytest.mark.parametrize("path", JOB_SAMPLES, ids=lambda p: p.name)
def test_sample_explains_itself_to_a_first_time_user(path: Path):
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert len(header) >= 3, "start with comments: what it does, what to prepare, how to apply"
    assert (
        f"kubectl apply -f deploy/samples/{path.name}" in text
        or f"denas run deploy/samples/{path.name}" in text
    )


@pytest.mark.parametrize("path", JOB_SAMPLES, ids=lambda p: p.name)
def test_sample_data_paths_point_into_the_mounted_claim(path: Path):
    spec = load_job(path).spec
    dataset = spec["training"]["dataset"]
    for key in ("path", "tokenizer"):
        if key in dataset:
            assert spec["storage"].get("claimName"), f"{key} needs storage.claimName to be mounted"
            assert dataset[key].startswith(MOUNT + "/"), f"{key} must be under {MOUNT}"


@pytest.mark.parametrize("path", JOB_SAMPLES, ids=lambda p: p.name)
def test_sample_search_space_overrides_are_known_to_the_space(path: Path):
    from denas import spaces

    job = load_job(path)
    if job.domain not in spaces.names():
        pytest.skip(f"space {job.domain!r} is not registered yet")
    spaces.get(job.domain, job.spec.get("searchSpace") or {})


def test_a_broken_sample_would_be_caught():
    """The validator the sample tests rely on rejects what the API server rejects."""
    from denas.job import JobValidationError

    (manifest,) = load_docs(ROOT / "deploy" / "samples" / "bert.yaml")
    manifest["spec"]["training"]["dataset"]["name"] = "cifar10"  # a vision data set for bert
    with pytest.raises(JobValidationError, match="does not fit spec.domain"):
        load_job(manifest)


def test_worker_rbac_sample_grants_only_get_and_patch_on_the_samples_result_configmaps():
    from deploy_support import assert_valid, one

    objects = load_docs(ROOT / "deploy" / "rbac" / "worker.yaml")
    assert_valid(objects)
    role = one(objects, "Role")
    (rule,) = role["rules"]
    assert rule["resources"] == ["configmaps"] and sorted(rule["verbs"]) == ["get", "patch"]
    assert set(rule["resourceNames"]) == {f"{load_job(p).name}-result" for p in JOB_SAMPLES}
    binding = one(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == one(objects, "ServiceAccount")["metadata"]["name"]
