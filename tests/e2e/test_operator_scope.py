"""Watch scope: a namespaced operator leaves other namespaces alone; `--all-namespaces` runs jobs
in any namespace (its children, RBAC and status in the job's own namespace)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import Cluster, OperatorProcess
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

OTHER = "team-b"


def quick_spec(cluster: Cluster) -> dict[str, Any]:
    return {
        "domain": "cnn",
        "image": cluster.lifecycle_image,
        "searchSpace": {"preset": "digits", "fake": {"generationSeconds": 0.1, "epochSeconds": 0.1}},
        "search": {"population": 4, "generations": 1, "topK": 2},
        "training": {"replicas": 2, "epochs": 1},
    }


@pytest.fixture()
def other_namespace(cluster: Cluster) -> Cluster:
    if cluster.emulator is None:
        pytest.skip("creates a namespace and points the test kubelet at it")
    try:
        cluster.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OTHER}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    before = cluster.kubelet.namespaces
    cluster.kubelet.namespaces = (*before, OTHER)
    other = Cluster(cluster.api, cluster.kubeconfig, OTHER, real=False)
    other.kubelet, other.emulator = cluster.kubelet, cluster.emulator
    yield other
    cluster.kubelet.namespaces = before


def test_a_namespaced_operator_ignores_other_namespaces_and_all_namespaces_runs_them(
    cluster, operator, other_namespace, tmp_path, job_name
):
    other = other_namespace
    other.apply(other.job(job_name, quick_spec(other)))
    time.sleep(2.0)  # the session operator watches `default` only: nothing may happen here
    assert other.status(job_name) == {}
    assert not other.pods(job_name)

    operator.stop()  # one operator at a time acts on `default`: the cluster-wide one takes over
    wide = OperatorProcess(cluster.kubeconfig, cluster.namespace, tmp_path, scope=("--all-namespaces",))
    try:
        wide.start()
        home = f"{job_name}-home"[:40]
        cluster.apply(cluster.job(home, quick_spec(cluster)))
        st = other.wait_phase(job_name, "Succeeded", 90)
        assert st["bestStructures"] and st["training"]["succeeded"] == 2
        assert cluster.wait_phase(home, "Succeeded", 90)["bestStructures"]
        # Children, the pods' RBAC and the result live in the job's own namespace.
        assert set(other.pods(job_name)) >= {f"{job_name}-search-0", f"{job_name}-train-master-0"}
        assert other.core.read_namespaced_service_account(f"{job_name}-worker", OTHER)
        assert other.core.read_namespaced_config_map(f"{job_name}-result", OTHER).data
        assert not [p for p in cluster.pods(job_name)], "nothing of team-b's job in default"
        metrics = wide.metrics()
        assert f'namespace="{OTHER}"' in metrics and f'namespace="{cluster.namespace}"' in metrics
    finally:
        wide.stop()
        operator.start()
    assert operator.alive()


def test_a_deleted_worker_service_account_is_made_again_before_the_next_pods(cluster, operator, job_name):
    if cluster.emulator is None:
        pytest.skip("deletes the operator's objects behind its back")
    spec = quick_spec(cluster)
    spec["search"]["generations"] = 4
    spec["searchSpace"]["fake"]["generationSeconds"] = 0.4
    cluster.apply(cluster.job(job_name, spec))
    account = f"{job_name}-worker"
    cluster.wait("the search pod", lambda: cluster.pods(job_name), 30)
    cluster.core.delete_namespaced_service_account(account, cluster.namespace)
    # The training pods name the account: admission refuses them until the operator makes it again.
    st = cluster.wait_phase(job_name, "Succeeded", 90)
    assert st["training"]["succeeded"] == 2
    assert cluster.core.read_namespaced_service_account(account, cluster.namespace)
    assert (cluster.condition(job_name, "Blocked") or {}).get("status") != "True"


def test_a_missing_user_service_account_blocks_naming_the_field(cluster, operator, job_name):
    if cluster.emulator is None:
        pytest.skip("relies on the emulator's ServiceAccount admission")
    spec = quick_spec(cluster) | {"serviceAccountName": "nobody"}
    cluster.apply(cluster.job(job_name, spec))
    blocked = cluster.wait(
        "Blocked=ServiceAccountNotFound",
        lambda: (
            (c := cluster.condition(job_name, "Blocked")) and c["reason"] == "ServiceAccountNotFound" and c
        ),
        30,
    )
    assert "spec.serviceAccountName" in blocked["message"] and "nobody" in blocked["message"]
    assert not cluster.pods(job_name) and operator.alive()
    cluster.core.create_namespaced_service_account(cluster.namespace, {"metadata": {"name": "nobody"}})
    cluster.wait_phase(job_name, "Succeeded", 90)
    assert cluster.condition(job_name, "Blocked")["status"] == "False"
