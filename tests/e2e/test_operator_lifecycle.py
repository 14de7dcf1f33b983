"""The DeNASJob lifecycle against the real operator process (pods are fast stand-ins here;
tests/e2e/test_operator_pipeline.py runs the real engine)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def spec(
    cluster,
    *,
    gens: int = 2,
    gen_s: float = 0.2,
    epochs: int = 2,
    epoch_s: float = 0.2,
    train_replicas: int = 2,
    claim: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = {
        "domain": "cnn",
        "image": cluster.lifecycle_image,
        "searchSpace": {"preset": "digits", "fake": {"generationSeconds": gen_s, "epochSeconds": epoch_s}},
        "search": {"population": 4, "generations": gens, "topK": 3},
        "training": {"replicas": train_replicas, "epochs": epochs, "backoffLimit": 2},
    }
    if claim:
        s["storage"] = {"claimName": claim}
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(s.get(key), dict):
            s[key] = {**s[key], **value}
        else:
            s[key] = value
    return s


def metric_value(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_job_searches_then_trains_and_succeeds(cluster, operator, job_name):
    cluster.apply(cluster.job(job_name, spec(cluster)))
    st = cluster.wait_phase(job_name, "Succeeded", 60)
    assert [s["hash"] for s in st["bestStructures"]] == ["h0", "h1", "h2"]
    assert st["training"]["succeeded"] == 2 and st["training"]["metricName"] == "accuracy"
    assert st["search"]["generation"] == 2
    types = {c["type"]: c["status"] for c in st["conditions"]}
    assert types["SearchSucceeded"] == "True" and types["TrainingSucceeded"] == "True"
    assert types["TrainingRunning"] == "False" and "Failed" not in types
    assert st["observedGeneration"] == 1 and st["completionTime"] and st["startTime"]
    assert st["resultRef"]["configMap"] == f"{job_name}-result"
    pods = cluster.pods(job_name)
    assert {f"{job_name}-search-0", f"{job_name}-train-master-0", f"{job_name}-train-worker-0"} <= set(pods)
    for pod in pods.values():
        assert pod.metadata.owner_references[0].name == job_name
        assert pod.metadata.labels["denas.io/role"] in ("search", "train-master", "train-worker")
        assert pod.spec.service_account_name == f"{job_name}-worker"  # the per-job pod RBAC
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    role = rbac.read_namespaced_role(f"{job_name}-worker", cluster.namespace)
    assert [(r.resources, r.resource_names, r.verbs) for r in role.rules] == [
        (["configmaps"], [f"{job_name}-result"], ["get", "patch"])
    ]
    binding = rbac.read_namespaced_role_binding(f"{job_name}-worker", cluster.namespace)
    assert [s.name for s in binding.subjects] == [f"{job_name}-worker"]
    account = cluster.core.read_namespaced_service_account(f"{job_name}-worker", cluster.namespace)
    assert account.metadata.owner_references[0].name == job_name
    text = operator.metrics()
    assert metric_value(text, "denas_jobs", phase="Succeeded") >= 1
    assert metric_value(text, "denas_jobs_created_total") >= 1
    labels = {"denasjob": job_name, "denasjob_namespace": cluster.namespace}
    assert operator.readiness() == (200, "watching and caught up\n")
    assert metric_value(text, "denas_job_search_generation", **labels) == 2
    assert metric_value(text, "denas_job_training_metric", **labels) is not None
    assert "pod=" not in text and not re.search(r'hash="', text)


def test_killed_search_pod_resumes_losing_at_most_one_generation(cluster, operator, job_name):
    cluster.create_pvc("state-search")
    cluster.apply(
        cluster.job(job_name, spec(cluster, gens=8, gen_s=0.5, claim="state-search", train_replicas=1))
    )
    g_kill = cluster.wait(
        "generation 3",
        lambda: (
            (cluster.status(job_name).get("search") or {}).get("generation", 0) >= 3
            and cluster.status(job_name)["search"]["generation"]
        ),
    )
    cluster.kill_pod(f"{job_name}-search-0")
    cluster.wait("a group restart", lambda: cluster.status(job_name)["search"].get("restarts") == 1, 30)
    seen = []

    def progressed() -> bool:
        st = cluster.status(job_name)
        seen.append((st.get("search") or {}).get("generation", 0))
        return st.get("phase") in ("Training", "Succeeded")

    cluster.wait("the search to finish", progressed, 60, every=0.1)
    after = [g for g in seen if g is not None]
    assert min(after) >= g_kill - 1, f"killed at generation {g_kill}, then saw {after}"
    cluster.wait_phase(job_name, "Succeeded", 60)


def test_killed_training_pod_restarts_the_whole_group_from_checkpoint(cluster, operator, job_name):
    cluster.create_pvc("state-train")
    cluster.apply(cluster.job(job_name, spec(cluster, epochs=8, epoch_s=0.5, claim="state-train")))
    cluster.wait("epoch 2", lambda: (cluster.status(job_name).get("training") or {}).get("epoch", 0) >= 2, 60)
    master_uid = cluster.pods(job_name)[f"{job_name}-train-master-0"].metadata.uid
    cluster.kill_pod(f"{job_name}-train-worker-0")
    cluster.wait(
        "a training group restart", lambda: cluster.status(job_name)["training"].get("restarts") == 1, 30
    )
    cluster.wait(
        "a new master",
        lambda: (
            (p := cluster.pods(job_name).get(f"{job_name}-train-master-0")) and p.metadata.uid != master_uid
        ),
        30,
    )
    st = cluster.wait_phase(job_name, "Succeeded", 60)
    assert st["training"]["restarts"] == 1 and st["training"]["succeeded"] == 2


def test_operator_restart_mid_job_creates_no_duplicates_and_completes(cluster, operator, job_name):
    cluster.apply(cluster.job(job_name, spec(cluster, gens=6, gen_s=0.4)))
    cluster.wait(
        "search pods", lambda: cluster.status(job_name).get("phase") == "Searching" and cluster.pods(job_name)
    )
    before = {n: p.metadata.uid for n, p in cluster.pods(job_name).items()}
    operator.restart()
    after = {n: p.metadata.uid for n, p in cluster.pods(job_name).items()}
    assert {n: u for n, u in after.items() if n in before} == before
    cluster.wait_phase(job_name, "Succeeded", 60)
    pods = cluster.pods(job_name)
    assert pods[f"{job_name}-search-0"].metadata.uid == before[f"{job_name}-search-0"]
    assert cluster.status(job_name)["search"]["restarts"] == 0


def test_deleting_the_job_removes_every_child(cluster, operator, job_name):
    cluster.apply(cluster.job(job_name, spec(cluster, gens=20, gen_s=0.5)))
    cluster.wait(
        "running search pods",
        lambda: any(p.status.phase == "Running" for p in cluster.pods(job_name).values()),
    )
    assert cluster.children(job_name)
    cluster.delete(job_name)
    cluster.wait("the job to go", lambda: cluster.get(job_name) is None, 30)
    cluster.wait("every child to go", lambda: not cluster.children(job_name), 30)


def test_suspend_deletes_pods_keeps_state_and_resume_continues(cluster, operator, job_name):
    cluster.create_pvc("state-suspend")
    cluster.apply(
        cluster.job(job_name, spec(cluster, gens=8, gen_s=0.4, claim="state-suspend", train_replicas=1))
    )
    cluster.wait(
        "generation 2", lambda: (cluster.status(job_name).get("search") or {}).get("generation", 0) >= 2
    )
    cluster.patch_spec(job_name, {"suspend": True})
    st = cluster.wait_phase(job_name, "Suspended", 30)
    g_suspend = st["search"]["generation"]
    cluster.wait("pods to go", lambda: not cluster.pods(job_name), 30)
    assert f"cm/{job_name}-result" in cluster.children(job_name)
    cluster.patch_spec(job_name, {"suspend": False})
    cluster.wait("pods to come back", lambda: cluster.pods(job_name), 30)
    assert cluster.condition(job_name, "Suspended")["status"] == "False"
    seen = []
    cluster.wait(
        "the search to finish",
        lambda: (
            seen.append(cluster.status(job_name)["search"].get("generation"))
            or cluster.status(job_name).get("phase") in ("Training", "Succeeded")
        ),
        60,
        every=0.1,
    )
    assert min(g for g in seen if g) >= g_suspend
    cluster.wait_phase(job_name, "Succeeded", 60)


def test_training_backoff_limit_fails_the_job_with_the_pod_and_exit_code(cluster, operator, job_name):
    cluster.apply(
        cluster.job(
            job_name, spec(cluster, epochs=30, epoch_s=0.5, train_replicas=1, training={"backoffLimit": 0})
        )
    )
    cluster.wait(
        "training",
        lambda: (
            cluster.status(job_name).get("phase") == "Training"
            and any(p.status.phase == "Running" for n, p in cluster.pods(job_name).items() if "train" in n)
        ),
        60,
    )
    cluster.kill_pod(f"{job_name}-train-master-0")
    st = cluster.wait_phase(job_name, "Failed", 30)
    failed = cluster.condition(job_name, "Failed")
    assert failed["reason"] == "TrainingFailed"
    assert f"{job_name}-train-master-0" in failed["message"] and "137" in failed["message"]
    assert "backoffLimit is 0" in failed["message"]
    cluster.wait(
        "no running pods",
        lambda: all(p.status.phase in ("Succeeded", "Failed") for p in cluster.pods(job_name).values()),
        30,
    )
    assert st["completionTime"]


def test_active_deadline_fails_slow_training(cluster, operator, job_name):
    cluster.apply(
        cluster.job(
            job_name,
            spec(cluster, epochs=100, epoch_s=0.5, train_replicas=1, training={"activeDeadlineSeconds": 2}),
        )
    )
    cluster.wait_phase(job_name, "Failed", 60)
    assert cluster.condition(job_name, "Failed")["reason"] == "DeadlineExceeded"


def test_ttl_deletes_finished_jobs(cluster, operator, job_name):
    cluster.apply(
        cluster.job(job_name, spec(cluster, training={"enabled": False}, ttlSecondsAfterFinished=1))
    )
    # the search itself runs first: on a loaded 2-core CI machine that alone took most of a minute
    cluster.wait("the job to finish and be deleted", lambda: cluster.get(job_name) is None, 180)


@pytest.mark.parametrize(
    ("extra", "reason", "needle"),
    [
        ({"image": "registry.example/does-not-exist:1"}, "ImagePullBackOff", "spec.image"),
        (
            {"hardware": {"nodeSelector": {"feature.node.kubernetes.io/cpu-cpuid.AMXFP16": "true"}}},
            "Unschedulable",
            "nodeSelector",
        ),
        ({"storage": {"claimName": "no-such-claim"}}, "PersistentVolumeClaimNotFound", "no-such-claim"),
        ({"training": {"backend": "kubeflow"}}, "KubeflowNotInstalled", "backend: native"),
    ],
    ids=["image-pull", "unschedulable", "missing-pvc", "kubeflow-missing"],
)
def test_blockers_surface_as_conditions(cluster, operator, job_name, extra, reason, needle):
    if cluster.real:
        pytest.skip("blocker fixtures (unpullable image, missing CRD) are emulator-specific")
    s = spec(cluster, **extra)
    if reason == "KubeflowNotInstalled":
        s["training"]["backend"] = "kubeflow"
    cluster.apply(cluster.job(job_name, s))
    blocked = cluster.wait(
        f"Blocked={reason}",
        lambda: (c := cluster.condition(job_name, "Blocked")) and c["reason"] == reason and c,
        60,
    )
    assert blocked["status"] == "True" and needle in blocked["message"]
    cluster.delete(job_name)


def test_search_spec_edit_restarts_the_search_from_scratch(cluster, operator, job_name):
    cluster.apply(cluster.job(job_name, spec(cluster, gens=30, gen_s=0.3, train_replicas=1)))
    cluster.wait(
        "generation 2", lambda: (cluster.status(job_name).get("search") or {}).get("generation", 0) >= 2
    )
    old_uid = cluster.pods(job_name)[f"{job_name}-search-0"].metadata.uid
    cluster.patch_spec(job_name, {"search": {"generations": 3}, "constraints": {"maxParams": 100000}})
    cluster.wait("observedGeneration 2", lambda: cluster.status(job_name).get("observedGeneration") == 2)
    cluster.wait(
        "a new search pod",
        lambda: (p := cluster.pods(job_name).get(f"{job_name}-search-0")) and p.metadata.uid != old_uid,
    )
    st = cluster.wait_phase(job_name, "Succeeded", 60)
    assert st["search"]["generation"] == 3 and st["search"]["restarts"] == 0


def test_forbidden_creates_surface_as_a_blocked_condition_then_recover(cluster, operator, job_name):
    if cluster.emulator is None:
        pytest.skip("needs an API server that can be told to deny pod creation")
    cluster.emulator.forbidden.add(("pods", cluster.namespace))
    try:
        cluster.apply(cluster.job(job_name, spec(cluster, training={"enabled": False})))
        blocked = cluster.wait(
            "Blocked=Forbidden",
            lambda: (c := cluster.condition(job_name, "Blocked")) and c["reason"] == "Forbidden" and c,
            30,
        )
        assert "create pods in namespace" in blocked["message"] and "RBAC.md" in blocked["message"]
        assert not cluster.pods(job_name)
        assert operator.alive()
    finally:
        cluster.emulator.forbidden.discard(("pods", cluster.namespace))
    cluster.wait_phase(job_name, "Succeeded", 60)
    assert cluster.condition(job_name, "Blocked")["status"] == "False"


def test_kubeflow_backend_creates_a_pytorchjob_and_follows_its_conditions(cluster, operator, job_name):
    if cluster.emulator is None:
        pytest.skip("plays the Kubeflow controller against the emulator")
    from kubernetes import client

    cluster.emulator.register("kubeflow.org/v1/pytorchjobs", "PyTorchJob", True, {"status"})
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "pytorchjobs.kubeflow.org"},
        "spec": {
            "group": "kubeflow.org",
            "scope": "Namespaced",
            "names": {"plural": "pytorchjobs", "kind": "PyTorchJob"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    ext = client.ApiextensionsV1Api(cluster.api)
    ext.create_custom_resource_definition(crd)
    try:
        cluster.apply(cluster.job(job_name, spec(cluster, training={"backend": "kubeflow", "replicas": 3})))
        ptj = cluster.wait("the PyTorchJob", lambda: _get_ptj(cluster, job_name), 60)
        replicas = ptj["spec"]["pytorchReplicaSpecs"]
        assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
        assert ptj["metadata"]["ownerReferences"][0]["name"] == job_name
        assert cluster.status(job_name)["phase"] == "Training"
        done = {
            "conditions": [
                {"type": "Created", "status": "True"},
                {"type": "Succeeded", "status": "True", "message": "all replicas succeeded"},
            ]
        }
        cluster.custom.patch_namespaced_custom_object_status(
            "kubeflow.org", "v1", cluster.namespace, "pytorchjobs", f"{job_name}-train", {"status": done}
        )
        cluster.wait_phase(job_name, "Succeeded", 30)
    finally:
        ext.delete_custom_resource_definition("pytorchjobs.kubeflow.org")


def _get_ptj(cluster, job_name):
    try:
        return cluster.custom.get_namespaced_custom_object(
            "kubeflow.org", "v1", cluster.namespace, "pytorchjobs", f"{job_name}-train"
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_kubeflow_edit_of_the_training_spec_replaces_the_pytorchjob(cluster, operator, job_name):
    if cluster.emulator is None:
        pytest.skip("plays the Kubeflow controller against the emulator")
    cluster.emulator.register("kubeflow.org/v1/pytorchjobs", "PyTorchJob", True, {"status"})
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "pytorchjobs.kubeflow.org"},
        "spec": {
            "group": "kubeflow.org",
            "scope": "Namespaced",
            "names": {"plural": "pytorchjobs", "kind": "PyTorchJob"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    ext = client.ApiextensionsV1Api(cluster.api)
    ext.create_custom_resource_definition(crd)
    try:
        cluster.apply(cluster.job(job_name, spec(cluster, training={"backend": "kubeflow", "replicas": 3})))
        first = cluster.wait("the PyTorchJob", lambda: _get_ptj(cluster, job_name), 60)
        assert first["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2
        cluster.patch_spec(job_name, {"training": {"replicas": 2}})
        second = cluster.wait(
            "a new PyTorchJob from the edited spec",
            lambda: (
                (p := _get_ptj(cluster, job_name)) and p["metadata"]["uid"] != first["metadata"]["uid"] and p
            ),
            30,
        )
        assert second["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
        assert cluster.status(job_name)["phase"] == "Training"
    finally:
        cluster.delete(job_name)
        ext.delete_custom_resource_definition("pytorchjobs.kubeflow.org")
