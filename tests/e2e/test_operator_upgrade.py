"""Operator upgrades and reconfiguration: running jobs keep their pods; new pods get the new defaults."""

from __future__ import annotations

import time

import pytest
from conftest import FAKE_IMAGE, FAKE_IMAGE_NEXT, OperatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


def test_operator_upgrade_with_a_new_default_image_and_uid_restarts_no_running_job(
    cluster, operator, tmp_path, job_name
):
    if cluster.emulator is None:
        pytest.skip("swaps the operator's default worker image for a second stand-in image")
    operator.stop()  # the session's operator: replaced by "release N" then "release N+1"
    old = OperatorProcess(
        cluster.kubeconfig, cluster.namespace, tmp_path, env={"DENAS_DEFAULT_WORKER_IMAGE": FAKE_IMAGE}
    )
    new = OperatorProcess(
        cluster.kubeconfig,
        cluster.namespace,
        tmp_path,
        env={"DENAS_DEFAULT_WORKER_IMAGE": FAKE_IMAGE_NEXT, "DENAS_WORKER_RUN_AS_USER": "2000"},
    )
    try:
        old.start()
        spec = {  # no spec.image: the operator's default applies
            "domain": "cnn",
            "searchSpace": {"preset": "digits", "fake": {"generationSeconds": 0.4}},
            "search": {"population": 4, "generations": 50, "replicas": 2},
            "training": {"enabled": False},
        }
        cluster.apply(cluster.job(job_name, spec))
        cluster.wait(
            "generation 1", lambda: (cluster.status(job_name).get("search") or {}).get("generation", 0) >= 1
        )
        before = {n: (p.metadata.uid, p.spec.containers[0].image) for n, p in cluster.pods(job_name).items()}
        assert {image for _, image in before.values()} == {FAKE_IMAGE}
        old.stop()
        new.start()
        time.sleep(7)  # the new operator's start-up reconcile and a timer period
        assert cluster.status(job_name)["phase"] == "Searching"  # still running: the check means something
        after = {n: (p.metadata.uid, p.spec.containers[0].image) for n, p in cluster.pods(job_name).items()}
        assert after == before, (
            f"the upgrade replaced running pods\n{new.log()[-4000:]}\n{cluster.debug(job_name)}"
        )
        st = cluster.wait_phase(job_name, "Succeeded", 60)
        assert st["search"]["restarts"] == 0
        # A job created after the upgrade gets the new defaults.
        cluster.apply(cluster.job(job_name + "-new", {**spec, "search": {"population": 4, "generations": 1}}))
        pod = cluster.wait(
            "the new job's pod", lambda: cluster.pods(job_name + "-new").get(f"{job_name}-new-search-0")
        )
        assert pod.spec.containers[0].image == FAKE_IMAGE_NEXT
        assert pod.spec.security_context.run_as_user == 2000
        cluster.wait_phase(job_name + "-new", "Succeeded", 60)
    finally:
        old.stop()
        new.stop()
        operator.start()
