"""Malformed specs: every one is rejected naming the field, by the CRD schema (the API server,
or `denas.job` with the same schema) or, where nothing validated it (the emulator), by the
operator's Failed condition; the operator keeps running and keeps serving valid jobs."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException
from malformed_specs import MALFORMED

from denas.job import validate_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

UNSTRUCTURED = [("spec-missing", None, "spec"), ("spec-string", "garbage", "spec")]


@pytest.mark.parametrize(("case", "spec", "field"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_schema_rejects_malformed_spec_naming_the_field(case, spec, field):
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": case},
        "spec": spec,
    }
    errors = validate_manifest(manifest)
    assert any(e.startswith(field) or f"{field}:" in e or f"{field} " in e for e in errors), errors


def test_operator_answers_every_malformed_spec_with_a_failed_condition_and_survives(cluster, operator):
    assert len(MALFORMED) + len(UNSTRUCTURED) >= 30
    pending: dict[str, str] = {}
    for case, spec, field in [*MALFORMED, *UNSTRUCTURED]:
        manifest = cluster.job(f"bad-{case}", spec)
        if spec is None:
            del manifest["spec"]
        try:
            cluster.apply(manifest)
        except ApiException as exc:  # a real API server validates before the operator sees it
            assert exc.status == 422 and field in exc.body, exc.body
            continue
        pending[f"bad-{case}"] = field

    def answered() -> bool:
        for name, field in list(pending.items()):
            failed = cluster.condition(name, "Failed")
            if failed and failed["status"] == "True":
                assert failed["reason"] == "InvalidSpec", failed
                assert field in failed["message"], (field, failed["message"])
                assert cluster.status(name)["phase"] == "Failed"
                assert not cluster.pods(name), f"{name} got pods despite an invalid spec"
                del pending[name]
        return not pending

    cluster.wait(f"Failed conditions on {len(pending)} jobs", answered, 90, every=0.5)
    assert operator.alive(), operator.log()[-3000:]
    assert "Traceback" not in operator.log()

    good = "after-malformed"
    cluster.apply(
        cluster.job(
            good,
            {
                "domain": "cnn",
                "image": cluster.lifecycle_image,
                "search": {"population": 4, "generations": 1},
                "training": {"enabled": False},
            },
        )
    )
    cluster.wait_phase(good, "Succeeded", 60)
    for case, _, _ in [*MALFORMED, *UNSTRUCTURED]:
        cluster.delete(f"bad-{case}")
    cluster.delete(good)


def test_fixing_an_invalid_spec_lets_the_job_run(cluster, operator):
    name = "fixed-later"
    try:
        cluster.apply(
            cluster.job(
                name,
                {
                    "domain": "cnn",
                    "image": cluster.lifecycle_image,
                    "search": {"population": 1, "generations": 1},
                    "training": {"enabled": False},
                },
            )
        )
    except ApiException:
        pytest.skip("the API server rejected the spec up front (nothing for the operator to fix)")
    cluster.wait(
        "InvalidSpec", lambda: (c := cluster.condition(name, "Failed")) and c["reason"] == "InvalidSpec"
    )
    cluster.patch_spec(name, {"search": {"population": 4}})
    cluster.wait("the edit to be observed", lambda: cluster.status(name).get("observedGeneration") == 2, 30)
    st = cluster.wait_phase(name, "Succeeded", 60)
    assert cluster.condition(name, "Failed")["status"] == "False"
    assert st["observedGeneration"] == 2
    cluster.delete(name)
