"""Shared-cluster features against the real operator process: lifecycle Events, pull secrets and
pod-template metadata, the per-job NetworkPolicy, and Kueue admission (the test plays Kueue:
it lifts the admission gate, and evicts a group by deleting its pods)."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_operator_lifecycle import metric_value, spec

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"


def job_events(cluster, job_name: str) -> list[client.CoreV1Event]:
    items = cluster.core.list_namespaced_event(cluster.namespace).items
    mine = [e for e in items if e.involved_object.name == job_name and e.involved_object.kind == "DeNASJob"]
    return sorted(mine, key=lambda e: int(e.metadata.resource_version))


def reasons(cluster, job_name: str) -> list[str]:
    return [e.reason for e in job_events(cluster, job_name)]


def test_events_follow_the_lifecycle_in_order(cluster, operator, job_name):
    cluster.apply(cluster.job(job_name, spec(cluster, gens=6, gen_s=0.2, train_replicas=1)))
    cluster.wait_phase(job_name, "Succeeded", 60)
    cluster.wait("the Succeeded event", lambda: "Succeeded" in reasons(cluster, job_name), 10)
    events = job_events(cluster, job_name)
    seen = [e.reason for e in events]
    lifecycle = [r for r in seen if r in ("SearchStarted", "SearchSucceeded", "TrainingStarted", "Succeeded")]
    assert lifecycle == ["SearchStarted", "SearchSucceeded", "TrainingStarted", "Succeeded"], seen
    assert seen.index("SearchStarted") < seen.index("GenerationDone") < seen.index("SearchSucceeded")
    assert 1 <= seen.count("GenerationDone") <= 2  # six generations, a bounded rate
    assert "Failed" not in seen and "GroupRestarted" not in seen
    for event in events:
        assert event.involved_object.api_version == "denas.io/v1alpha1"
        assert event.involved_object.uid == cluster.get(job_name)["metadata"]["uid"]
        assert event.type == "Normal" and event.source.component == "denas-operator"
    succeeded = next(e for e in events if e.reason == "Succeeded")
    assert "search and training finished" in succeeded.message


def test_events_of_a_crash_loop_are_bounded(cluster, operator, job_name):
    kills = 6
    cluster.apply(
        cluster.job(
            job_name,
            spec(cluster, epochs=200, epoch_s=0.2, train_replicas=1, training={"backoffLimit": kills + 2}),
        )
    )
    master = f"{job_name}-train-master-0"
    for restart in range(1, kills + 1):
        cluster.wait(
            f"a running training pod before kill {restart}",
            lambda: (p := cluster.pods(job_name).get(master)) is not None and p.status.phase == "Running",
            60,
        )
        cluster.kill_pod(master)
        cluster.wait(
            f"restart {restart}",
            lambda r=restart: (cluster.status(job_name).get("training") or {}).get("restarts", 0) >= r,
            30,
        )
    seen = reasons(cluster, job_name)
    assert cluster.status(job_name)["training"]["restarts"] == kills
    # The burst (3) plus at most one refill (one per 60 s) within the test's minute, never one per restart.
    assert 1 <= seen.count("GroupRestarted") <= 4 < kills, seen
    restarted = next(e for e in job_events(cluster, job_name) if e.reason == "GroupRestarted")
    assert restarted.type == "Warning" and master in restarted.message and "137" in restarted.message
    assert metric_value(operator.metrics(), "denas_events_dropped_total", reason="GroupRestarted") >= 2
    cluster.delete(job_name)


def test_pull_secrets_and_pod_template_metadata_reach_every_pod(cluster, operator, job_name):
    s = spec(cluster, train_replicas=2)
    s["imagePullSecrets"] = [{"name": "regcred"}]
    s["podTemplate"] = {
        "metadata": {"labels": {"cost-center": "nas-42"}, "annotations": {"example.com/team": "a"}}
    }
    cluster.apply(cluster.job(job_name, s))
    cluster.wait_phase(job_name, "Succeeded", 60)
    pods = cluster.pods(job_name)
    assert len(pods) == 3  # search-0, train-master-0, train-worker-0
    for pod in pods.values():
        assert [r.name for r in pod.spec.image_pull_secrets] == ["regcred"]
        assert pod.metadata.labels["cost-center"] == "nas-42"
        assert pod.metadata.annotations["example.com/team"] == "a"
    account = cluster.core.read_namespaced_service_account(f"{job_name}-worker", cluster.namespace)
    assert [r.name for r in account.image_pull_secrets] == ["regcred"]


def test_network_policy_exists_with_the_jobs_selectors(cluster, operator, job_name):
    cluster.apply(cluster.job(job_name, spec(cluster, training={"enabled": False})))
    net = client.NetworkingV1Api(cluster.api)

    def policy():
        try:
            return net.read_namespaced_network_policy(f"{job_name}-pods", cluster.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    found = cluster.wait("the job's NetworkPolicy", policy, 30)
    assert found.metadata.owner_references[0].name == job_name
    assert found.spec.pod_selector.match_labels == {"denas.io/job-name": job_name}
    rendezvous = found.spec.ingress[0]
    assert [p.pod_selector.match_labels for p in rendezvous._from] == [{"denas.io/job-name": job_name}]
    assert {p.port for p in rendezvous.ports} == {29500, 23456}
    # The policy selects the job's pods (their labels match) and only them.
    cluster.wait_phase(job_name, "Succeeded", 60)
    for pod in cluster.pods(job_name).values():
        assert pod.metadata.labels["denas.io/job-name"] == job_name


# ----- Kueue -----------------------------------------------------------------------------------


def _kueue_installed(cluster) -> None:
    if cluster.emulator is None:
        pytest.skip("the emulator plays Kueue here; on a real cluster install Kueue and run its own e2e")
    cluster.emulator.register("kueue.x-k8s.io/v1beta1/localqueues", "LocalQueue", True, set())


def _gated(cluster, job_name: str) -> list[str]:
    return [
        name
        for name, p in cluster.pods(job_name).items()
        if p.spec.scheduling_gates and not p.metadata.deletion_timestamp
    ]


def _admit(cluster, job_name: str) -> list[str]:
    """What Kueue does when a workload fits its ClusterQueue: lift the admission gate."""
    names = _gated(cluster, job_name)
    for name in names:
        cluster.core.patch_namespaced_pod(name, cluster.namespace, {"spec": {"schedulingGates": None}})
    return names


def test_kueue_admits_gated_groups_and_a_preempted_group_resumes_from_its_checkpoint(
    cluster, operator, job_name
):
    _kueue_installed(cluster)
    cluster.custom.create_namespaced_custom_object(
        "kueue.x-k8s.io",
        "v1beta1",
        cluster.namespace,
        "localqueues",
        {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "LocalQueue", "metadata": {"name": "team-a"}},
    )
    cluster.create_pvc("state-kueue")
    manifest = cluster.job(job_name, spec(cluster, gens=10, gen_s=0.4, claim="state-kueue", train_replicas=2))
    manifest["metadata"]["labels"] = {KUEUE_QUEUE: "team-a"}
    cluster.apply(manifest)
    queued = cluster.wait(
        "Queued", lambda: (c := cluster.condition(job_name, "Queued")) and c["status"] == "True" and c, 30
    )
    assert queued["reason"] == "WaitingForAdmission" and "team-a" in queued["message"]
    search0 = cluster.pods(job_name)[f"{job_name}-search-0"]
    assert search0.status.phase == "Pending" and search0.metadata.labels[KUEUE_QUEUE] == "team-a"
    assert search0.metadata.labels["kueue.x-k8s.io/pod-group-name"].startswith(f"{job_name}-search-")
    assert search0.metadata.annotations["kueue.x-k8s.io/pod-group-total-count"] == "1"
    assert (cluster.status(job_name).get("search") or {}).get("generation", 0) == 0  # nothing ran unadmitted

    assert _admit(cluster, job_name) == [f"{job_name}-search-0"]
    cluster.wait("Queued=False", lambda: cluster.condition(job_name, "Queued")["status"] == "False", 30)
    g_evicted = cluster.wait(
        "generation 3",
        lambda: (g := (cluster.status(job_name).get("search") or {}).get("generation", 0)) >= 3 and g,
        60,
    )
    # Kueue preempts the workload: it deletes the group's pods.
    cluster.core.delete_namespaced_pod(f"{job_name}-search-0", cluster.namespace, grace_period_seconds=0)
    cluster.wait("the group queued again", lambda: _gated(cluster, job_name), 30)
    cluster.wait("Queued again", lambda: cluster.condition(job_name, "Queued")["status"] == "True", 30)
    assert cluster.status(job_name).get("phase") != "Failed"

    seen: list[int] = []

    def progress() -> bool:
        _admit(cluster, job_name)  # re-admit the search, then admit the training group
        st = cluster.status(job_name)
        seen.append((st.get("search") or {}).get("generation", 0))
        return st.get("phase") == "Succeeded"

    cluster.wait("the job to finish through Kueue", progress, 90, every=0.2)
    st = cluster.status(job_name)
    assert st["search"]["restarts"] == 0, "a preemption is not a failure"
    resumed = [g for g in seen if g]
    assert min(resumed) >= g_evicted - 1, f"evicted at generation {g_evicted}, then saw {resumed}"
    train = [p for n, p in cluster.pods(job_name).items() if "train" in n]
    groups = {p.metadata.labels["kueue.x-k8s.io/pod-group-name"] for p in train}
    assert len(groups) == 1 and {
        p.metadata.annotations["kueue.x-k8s.io/pod-group-total-count"] for p in train
    } == {"2"}
    assert "Queued" in reasons(cluster, job_name)


def test_kueue_missing_queue_is_a_blocked_condition_naming_it(cluster, operator, job_name):
    _kueue_installed(cluster)
    manifest = cluster.job(job_name, spec(cluster))
    manifest["metadata"]["labels"] = {KUEUE_QUEUE: "no-such-queue"}
    cluster.apply(manifest)
    blocked = cluster.wait(
        "Blocked=KueueQueueNotFound",
        lambda: (c := cluster.condition(job_name, "Blocked")) and c["reason"] == "KueueQueueNotFound" and c,
        30,
    )
    assert blocked["status"] == "True" and "LocalQueue no-such-queue" in blocked["message"]
    assert "kubectl get localqueues" in blocked["message"]
    assert operator.alive() and _gated(cluster, job_name)
    assert "Blocked" in reasons(cluster, job_name)
    cluster.delete(job_name)
