"""HA: several operator replicas share a kopf peering object; only the highest priority acts."""

from __future__ import annotations

import pytest
from conftest import OperatorProcess
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def test_only_the_highest_priority_replica_acts(cluster, operator, tmp_path, job_name):
    if cluster.emulator is None:
        pytest.skip("needs kopf's peering CRDs; the emulator serves them")
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": "denas-ha", "namespace": cluster.namespace},
    }
    try:
        cluster.custom.create_namespaced_custom_object(
            "kopf.dev", "v1", cluster.namespace, "kopfpeerings", peering
        )
    except ApiException as exc:
        assert exc.status == 409
    operator.stop()  # the session's standalone replica would act regardless of peering
    standby = OperatorProcess(
        cluster.kubeconfig, cluster.namespace, tmp_path, ("--peering", "denas-ha", "--priority", "10")
    )
    leader = OperatorProcess(
        cluster.kubeconfig, cluster.namespace, tmp_path, ("--peering", "denas-ha", "--priority", "20")
    )
    try:
        standby.start()
        leader.start()
        cluster.apply(
            cluster.job(
                job_name,
                {
                    "domain": "cnn",
                    "image": cluster.lifecycle_image,
                    "search": {"population": 4, "generations": 1},
                    "training": {"enabled": False},
                },
            )
        )
        cluster.wait_phase(job_name, "Succeeded", 60)
        assert counter(leader.metrics(), "denas_jobs_created_total") >= 1
        assert counter(standby.metrics(), "denas_jobs_created_total") == 0
        assert "Pausing operations in favour of" in standby.log()
    finally:
        standby.stop()
        leader.stop()
        operator.start()
