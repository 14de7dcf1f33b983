"""CRD versioning (docs/crd-versioning.md): a v1alpha1 object written today still validates and
reconciles with this operator and CRD."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from denas.job import load_job

pytestmark = [pytest.mark.timeout(120)]

FIXTURE = Path(__file__).parent / "fixtures" / "denasjob-v1alpha1-2026-12.yaml"


def _fixture() -> dict:
    return yaml.safe_load(FIXTURE.read_text())


def test_v1alpha1_fixture_still_validates_with_todays_crd():
    manifest = _fixture()
    assert manifest["apiVersion"] == "denas.io/v1alpha1"
    job = load_job(copy.deepcopy(manifest))  # raises on any schema/CEL error
    # Fields added since take their defaults instead of failing the old object.
    assert job.spec["search"]["backoffLimit"] == 3


@pytest.mark.e2e
def test_v1alpha1_fixture_reconciles_to_success(cluster, operator, job_name):
    manifest = _fixture()
    if cluster.real:
        manifest["spec"]["image"] = cluster.lifecycle_image
    manifest["metadata"]["name"] = job_name  # the test's unique name; the spec stays verbatim
    cluster.create_pvc(manifest["spec"]["storage"]["claimName"])
    cluster.apply({**manifest, "metadata": {**manifest["metadata"], "namespace": cluster.namespace}})
    st = cluster.wait_phase(job_name, "Succeeded", 90)
    assert st["observedGeneration"] == 1
    assert st["bestStructures"] and st["resultRef"]["claimName"] == "v1alpha1-fixture-state"
    assert st["resultRef"]["path"].startswith("/var/lib/denas/fixture/search-")
    assert st["search"]["restarts"] == 0 and st["training"]["restarts"] == 0
