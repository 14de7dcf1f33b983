"""HA: several operator replicas share a kopf peering object; only the highest priority acts."""

from __future__ import annotations

import time

import pytest
from conftest import OperatorProcess
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def counter(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " "))


def ensure_peering(cluster, name: str) -> None:
    """The KopfPeering object the replicas share (kopf's peering CRDs: the emulator serves them)."""
    if cluster.emulator is None:
        pytest.skip("needs kopf's peering CRDs; the emulator serves them")
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "KopfPeering",
        "metadata": {"name": name, "namespace": cluster.namespace},
    }
    try:
        cluster.custom.create_namespaced_custom_object(
            "kopf.dev", "v1", cluster.namespace, "kopfpeerings", peering
        )
    except ApiException as exc:
        assert exc.status == 409


def test_only_the_highest_priority_replica_acts(cluster, operator, tmp_path, job_name):
    ensure_peering(cluster, "denas-ha")
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
        # The standby acts alone until it sees the leader's peering record (a few seconds on a
        # loaded machine): the steady state under test begins when it pauses.
        deadline = time.monotonic() + 30
        while "Pausing operations in favour of" not in standby.log() and time.monotonic() < deadline:
            time.sleep(0.2)
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


def test_a_paused_replica_drops_its_job_gauges_and_stays_ready_as_a_standby(
    cluster, operator, tmp_path, job_name
):
    ensure_peering(cluster, "denas-ha-gauges")
    operator.stop()
    first = OperatorProcess(
        cluster.kubeconfig, cluster.namespace, tmp_path, ("--peering", "denas-ha-gauges", "--priority", "10")
    )
    second = OperatorProcess(
        cluster.kubeconfig, cluster.namespace, tmp_path, ("--peering", "denas-ha-gauges", "--priority", "20")
    )
    series = f'denasjob="{job_name}"'
    try:
        first.start()
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
        cluster.wait("the first replica's gauges", lambda: series in first.metrics(), 15)
        second.start()  # higher priority: the first pauses
        cluster.wait("the paused replica to drop its gauges", lambda: series not in first.metrics(), 30)
        assert not [line for line in first.metrics().splitlines() if line.startswith("denas_jobs{")]
        assert first.readiness()[0] == 200 and "standby" in first.readiness()[1]
        cluster.wait("the active replica's gauges", lambda: series in second.metrics(), 30)
    finally:
        first.stop()
        second.stop()
        operator.start()


def test_replicas_started_with_identical_args_do_not_all_pause(cluster, operator, tmp_path, job_name):
    """A Deployment gives every replica the same args: without --priority they must not tie."""
    ensure_peering(cluster, "denas-same-args")
    operator.stop()
    replicas = [
        OperatorProcess(cluster.kubeconfig, cluster.namespace, tmp_path, ("--peering", "denas-same-args"))
        for _ in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        # Both replicas are in the peering object (a replica that starts below a live peer stays
        # paused without logging it, so the peering object is what to wait for).
        deadline = time.monotonic() + 30
        while True:
            body = cluster.custom.get_namespaced_custom_object(
                "kopf.dev", "v1", cluster.namespace, "kopfpeerings", "denas-same-args"
            )
            priorities = [p["priority"] for p in (body.get("status") or {}).values()]
            if len(priorities) >= 2:
                break
            assert time.monotonic() < deadline, f"the replicas did not both join the peering: {body}"
            time.sleep(0.2)
        assert len(set(priorities)) == len(priorities), priorities
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
        acted = [counter(r.metrics(), "denas_jobs_created_total") for r in replicas]
        assert sorted(acted)[0] == 0 and sorted(acted)[1] >= 1, acted
    finally:
        for replica in replicas:
            replica.stop()
        operator.start()
