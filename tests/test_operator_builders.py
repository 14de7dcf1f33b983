"""Pure builders of the operator: spec -> Pods, Services, ConfigMaps, PyTorchJob (no Kubernetes)."""

from __future__ import annotations

import json

import yaml
from denas_operator import names as n
from denas_operator.objects import (
    build_headless_service,
    build_pytorchjob,
    build_spec_configmap,
    build_worker_rbac,
)
from denas_operator.pods import (
    JobRef,
    build_search_pods,
    build_training_pods,
    container_resources,
    search_dir,
    search_fingerprint,
)
from deploy_support import assert_valid
from podsecurity import restricted_violations

from denas.job import load_job, openapi_schema


def job(**spec_overrides) -> JobRef:
    spec = {"domain": "cnn", "search": {"population": 4, "generations": 2}}
    spec.update(spec_overrides)
    manifest = {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "j", "namespace": "ns"},
        "spec": spec,
    }
    return JobRef("j", "ns", "uid-1", load_job(manifest).spec)


def env_of(pod) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def test_search_pods_share_one_rendezvous_on_rank_zero():
    pods = build_search_pods(job(search={"population": 4, "replicas": 3}))
    assert [p["metadata"]["name"] for p in pods] == ["j-search-0", "j-search-1", "j-search-2"]
    envs = [env_of(p) for p in pods]
    assert [e["RANK"] for e in envs] == ["0", "1", "2"] and {e["WORLD_SIZE"] for e in envs} == {"3"}
    assert {e["MASTER_ADDR"] for e in envs} == {"j-search-0.j-search.ns.svc"}
    assert all(
        p["spec"]["subdomain"] == "j-search" and p["spec"]["hostname"] == p["metadata"]["name"] for p in pods
    )
    command = pods[0]["spec"]["containers"][0]["command"]
    assert command[:3] == ["denas", "search", "/etc/denas/job/job.yaml"] and command[-1] == "--resume"


def test_every_pod_meets_pod_security_restricted():
    j = job(training={"replicas": 3}, hardware={"pinnedCpus": 2}, storage={"claimName": "nas"})
    for pod in build_search_pods(j) + build_training_pods(j):
        assert restricted_violations(pod) == [], pod["metadata"]["name"]
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
            assert (
                sc["readOnlyRootFilesystem"] is True
                and sc["runAsUser"] == spec["securityContext"]["runAsUser"]
            )
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert "/tmp" in mounts  # the only writable place besides the state volume
        assert spec["restartPolicy"] == "Never"


def test_training_pods_follow_the_pytorchjob_env_contract():
    pods = build_training_pods(job(training={"replicas": 3, "nprocPerNode": 2}))
    assert [p["metadata"]["name"] for p in pods] == [
        "j-train-master-0",
        "j-train-worker-0",
        "j-train-worker-1",
    ]
    for rank, pod in enumerate(pods):
        env = env_of(pod)
        assert env["PET_NODE_RANK"] == env["RANK"] == str(rank)
        assert env["PET_NNODES"] == "3" and env["PET_NPROC_PER_NODE"] == "2"
        assert env["MASTER_ADDR"] == env["PET_MASTER_ADDR"] == "j-train-master-0.j-train.ns.svc"
        assert env["MASTER_PORT"] == env["PET_MASTER_PORT"] == str(n.TRAIN_PORT)
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        assert volumes["result"]["configMap"]["name"] == "j-result"
    assert "initContainers" not in pods[0]["spec"]
    for worker in pods[1:]:  # workers wait for the master's DNS record instead of racing it
        init = worker["spec"]["initContainers"][0]
        assert init["name"] == "wait-for-master" and "getaddrinfo" in init["command"][-1]


def test_pinned_mode_makes_guaranteed_pods_with_matching_threads():
    j = job(
        hardware={"pinnedCpus": 4},
        training={"nprocPerNode": 2},
        search={"resources": {"limits": {"memory": "3Gi"}}},
    )
    search, train = build_search_pods(j)[0], build_training_pods(j)[0]
    res = search["spec"]["containers"][0]["resources"]
    assert res["requests"] == res["limits"] == {"cpu": "4", "memory": "3Gi"}
    assert env_of(search)["OMP_NUM_THREADS"] == "4" and env_of(train)["OMP_NUM_THREADS"] == "2"
    assert container_resources({"requests": {"cpu": "500m"}}, 0) == {"requests": {"cpu": "500m"}}
    assert "OMP_NUM_THREADS" not in env_of(build_search_pods(job())[0])


def test_node_pool_scheduling_reaches_every_pod():
    selector = {"feature.node.kubernetes.io/cpu-cpuid.AMXBF16": "true"}
    tolerations = [{"key": "denas", "operator": "Exists", "effect": "NoSchedule"}]
    j = job(hardware={"nodeSelector": selector, "tolerations": tolerations}, serviceAccountName="runner")
    for pod in build_search_pods(j) + build_training_pods(j):
        assert pod["spec"]["nodeSelector"] == selector and pod["spec"]["tolerations"] == tolerations
        assert pod["spec"]["serviceAccountName"] == "runner"


def test_state_volume_is_the_whole_claim_at_the_state_root_or_an_emptydir():
    j = job(storage={"claimName": "nas", "subPath": "team/run1"})
    for pod in build_search_pods(j) + build_training_pods(j):
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "state")
        assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "nas"
        # No subPath: data sets beside the jobs' directories on the claim stay visible.
        assert mount == {"name": "state", "mountPath": "/var/lib/denas"}
    assert search_dir(j).startswith("/var/lib/denas/team/run1/search-")
    plain = build_search_pods(job())[0]
    assert {v["name"]: v for v in plain["spec"]["volumes"]}["state"] == {"name": "state", "emptyDir": {}}


def test_default_image_comes_from_the_operator_env_unless_the_job_sets_one(monkeypatch):
    default = openapi_schema()["properties"]["spec"]["properties"]["image"]["default"]
    monkeypatch.delenv("DENAS_DEFAULT_WORKER_IMAGE", raising=False)
    assert build_search_pods(job())[0]["spec"]["containers"][0]["image"] == default
    monkeypatch.setenv("DENAS_DEFAULT_WORKER_IMAGE", "mirror.example.com/denas/worker:0.1.0")
    # The API server writes the CRD default into spec.image: that value means "not set".
    j = job()
    assert j.spec["image"] == default
    pods = build_search_pods(j) + build_training_pods(job(training={"replicas": 2}))
    images = [c["image"] for p in pods for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])]
    assert set(images) == {"mirror.example.com/denas/worker:0.1.0"}
    assert build_search_pods(job(image="other:1"))[0]["spec"]["containers"][0]["image"] == "other:1"


def test_search_directory_changes_with_what_is_searched_not_where():
    base = job()
    assert search_dir(base).startswith("/var/lib/denas/j/search-")
    assert search_fingerprint(
        job(search={"population": 4, "generations": 2, "replicas": 4}).spec
    ) == search_fingerprint(base.spec)
    assert search_fingerprint(job(constraints={"maxParams": 1000}).spec) != search_fingerprint(base.spec)


def test_template_hash_tracks_the_pod_spec():
    a, b = build_search_pods(job())[0], build_search_pods(job(image="other:1"))[0]
    assert (
        a["metadata"]["annotations"][n.ANNOTATION_TEMPLATE_HASH]
        != b["metadata"]["annotations"][n.ANNOTATION_TEMPLATE_HASH]
    )
    assert build_search_pods(job())[0] == a  # deterministic


def test_children_carry_owner_references_and_labels():
    j = job()
    children = [
        *build_search_pods(j),
        *build_training_pods(j),
        build_spec_configmap(j),
        build_headless_service(j, "train"),
    ]
    for child in children:
        meta = child["metadata"]
        assert meta["ownerReferences"][0] == {
            "apiVersion": "denas.io/v1alpha1",
            "kind": "DeNASJob",
            "name": "j",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert meta["labels"][n.LABEL_JOB] == "j" and meta["labels"][n.LABEL_ROLE]


def test_spec_configmap_holds_the_defaulted_manifest():
    cm = build_spec_configmap(job())
    manifest = yaml.safe_load(cm["data"]["job.yaml"])
    assert manifest["kind"] == "DeNASJob" and manifest["metadata"] == {"name": "j", "namespace": "ns"}
    assert manifest["spec"]["search"]["strategy"] == "ea"  # defaults applied
    load_job(manifest)  # and it is a valid job for `denas search`


def test_headless_services_publish_not_ready_addresses():
    svc = build_headless_service(job(), "search")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {n.LABEL_JOB: "j", "denas.io/group": "search"}


def test_kubeflow_backend_builds_a_pytorchjob_without_the_env_the_controller_owns():
    j = job(training={"replicas": 3, "backend": "kubeflow", "activeDeadlineSeconds": 600, "backoffLimit": 2})
    ptj = build_pytorchjob(j, build_training_pods(j))
    specs = ptj["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 2
    assert ptj["spec"]["runPolicy"] == {
        "backoffLimit": 2,
        "cleanPodPolicy": "None",
        "activeDeadlineSeconds": 600,
    }
    assert restricted_violations(specs["Worker"]["template"]["spec"]) == []
    container = specs["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch" and container["command"][:4] == ["torchrun", "-m", "denas", "train"]
    names = {e["name"] for e in container["env"]}
    assert not names & {"MASTER_ADDR", "RANK", "WORLD_SIZE", "PET_NNODES"}


def test_worker_rbac_grants_only_get_and_patch_on_the_jobs_result_configmap():
    j = job()
    sa, role, binding = build_worker_rbac(j)
    assert [o["kind"] for o in (sa, role, binding)] == ["ServiceAccount", "Role", "RoleBinding"]
    for obj in (sa, role, binding):
        meta = obj["metadata"]
        assert meta["name"] == "j-worker" and meta["namespace"] == "ns"
        assert meta["labels"][n.LABEL_JOB] == "j"
        assert meta["ownerReferences"][0]["uid"] == "uid-1" and meta["ownerReferences"][0]["controller"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["j-result"],
            "verbs": ["get", "patch"],
        }
    ]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "j-worker"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "j-worker", "namespace": "ns"}]
    # The pods run as that account unless the job names its own.
    for pod in build_search_pods(j) + build_training_pods(j):
        assert pod["spec"]["serviceAccountName"] == "j-worker"
    assert_valid([sa, role, binding])


def test_search_pods_and_the_training_master_serve_metrics_on_the_port_named_metrics():
    j = job(search={"population": 4, "replicas": 2}, training={"replicas": 2})
    master, worker = build_training_pods(j)
    for pod in [*build_search_pods(j), master]:
        container = pod["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == 9400, pod["metadata"]["name"]
        command = container["command"]
        assert command[command.index("--metrics-port") + 1] == "9400", command
    # Only global rank 0 (in the master pod) serves training metrics: no port on the workers.
    assert "metrics" not in {p["name"] for p in worker["spec"]["containers"][0]["ports"]}
    kubeflow = build_pytorchjob(j, build_training_pods(j))["spec"]["pytorchReplicaSpecs"]
    master_ports = kubeflow["Master"]["template"]["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 9400} in master_ports


def test_operator_upgrade_env_changes_leave_the_template_hash_alone(monkeypatch):
    """The operator's own defaults (worker image, uid) shape the pods but not the hash that decides
    whether running pods are stale: reconfiguring or upgrading the operator restarts no job."""

    def hashes(j: JobRef) -> list[str]:
        pods = build_search_pods(j) + build_training_pods(j)
        return [p["metadata"]["annotations"][n.ANNOTATION_TEMPLATE_HASH] for p in pods]

    base = {"training": {"replicas": 2}}
    monkeypatch.delenv("DENAS_DEFAULT_WORKER_IMAGE", raising=False)
    monkeypatch.delenv("DENAS_WORKER_RUN_AS_USER", raising=False)
    before = hashes(job(**base))
    monkeypatch.setenv("DENAS_DEFAULT_WORKER_IMAGE", "mirror.example.com/denas/worker:0.2.0")
    monkeypatch.setenv("DENAS_WORKER_RUN_AS_USER", "2000")
    new_pod = build_search_pods(job(**base))[0]
    assert new_pod["spec"]["containers"][0]["image"].endswith(":0.2.0")  # new pods: new defaults
    assert hashes(job(**base)) == before
    # Fields that do not shape pods (or that a CRD upgrade defaults) leave it alone too ...
    quiet = job(
        training={"replicas": 2, "backoffLimit": 7, "activeDeadlineSeconds": 60},
        search={"population": 4, "generations": 2, "backoffLimit": 9},
        ttlSecondsAfterFinished=5,
    )
    assert hashes(quiet) == before
    # ... while the user's pod-shaping edits change it.
    assert hashes(job(**base, image="x:1")) != before
    edited = hashes(job(training={"replicas": 2, "resources": {"limits": {"cpu": "2"}}}))
    assert edited[0] == before[0] and edited[1:] != before[1:]  # training edit: search pods stay


def test_operator_upgrade_keeps_pods_of_an_older_operator_running():
    """Pods made by an operator before the spec-derived hash carry no such annotation: kept."""
    from denas_operator.groups import reconcile_group

    desired = build_search_pods(job())
    old = json.loads(json.dumps(desired[0]))
    old["metadata"]["annotations"] = {"denas.io/template-hash": "0123456789"}
    old["status"] = {"phase": "Running"}
    out = reconcile_group(desired, [old], lambda s: False, 0, 3)
    assert out.state == "running" and out.delete == [] and out.create == []


def test_worker_uid_comes_from_the_operator_env(monkeypatch):
    monkeypatch.delenv("DENAS_WORKER_RUN_AS_USER", raising=False)
    pod = build_search_pods(job())[0]
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000  # the worker image's user
    monkeypatch.setenv("DENAS_WORKER_RUN_AS_USER", "12345")
    for pod in build_search_pods(job()) + build_training_pods(job(training={"replicas": 2})):
        ids = pod["spec"]["securityContext"]
        assert ids["runAsUser"] == ids["runAsGroup"] == ids["fsGroup"] == 12345
        assert all(
            c["securityContext"]["runAsUser"] == 12345
            for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
        )
        assert restricted_violations(pod) == []
    monkeypatch.setenv("DENAS_WORKER_RUN_AS_USER", "")  # the image's USER / the platform's uid
    pod = build_training_pods(job(training={"replicas": 2}))[1]
    assert (
        "runAsUser" not in pod["spec"]["securityContext"] and "fsGroup" not in pod["spec"]["securityContext"]
    )
    assert all(
        "runAsUser" not in c["securityContext"]
        for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]
    )
    assert restricted_violations(pod) == []


def test_search_and_training_pods_know_their_node_from_the_downward_api():
    """The node names itself in a hardware-mismatch error and in the model card's latency section."""
    j = job()
    for pod in build_search_pods(j) + build_training_pods(j):
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env["NODE_NAME"] == {
            "name": "NODE_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
        }
