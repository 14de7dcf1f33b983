"""Shared-cluster builders (pure): pod template metadata, pull secrets, Kueue pod groups,
NetworkPolicy, and the lifecycle Events derived from status transitions (no Kubernetes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from denas_operator import events as E
from denas_operator import names as n
from denas_operator import network, scheduling
from denas_operator.objects import build_pytorchjob, build_worker_rbac
from denas_operator.pods import JobRef, build_search_pods, build_training_pods
from denas_operator.reconcile import Observed, decide
from deploy_support import assert_valid

from denas.job import load_job

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def manifest(labels=None, **spec_overrides) -> dict:
    spec = {"domain": "cnn", "search": {"population": 4, "generations": 2}, "training": {"replicas": 2}}
    spec.update(spec_overrides)
    meta = {"name": "j", "namespace": "ns", "uid": "uid-12345", "generation": 1}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "denas.io/v1alpha1", "kind": "DeNASJob", "metadata": meta, "spec": spec}


def job(labels=None, **spec_overrides) -> JobRef:
    body = manifest(labels, **spec_overrides)
    return JobRef.from_body(body, load_job(json.loads(json.dumps(body))).spec)


def all_pods(j: JobRef) -> list[dict]:
    return build_search_pods(j) + build_training_pods(j)


# ----- spec.podTemplate metadata ---------------------------------------------------------------


def test_pod_template_labels_and_annotations_reach_every_pod_but_never_the_operators_keys():
    template = {
        "metadata": {
            "labels": {"cost-center": "nas-42", "denas.io/job-name": "hijack"},
            "annotations": {"example.com/owner": "team-a"},
        }
    }
    j = job(podTemplate=template)
    for pod in all_pods(j):
        meta = pod["metadata"]
        assert meta["labels"]["cost-center"] == "nas-42"
        assert meta["labels"]["denas.io/job-name"] == "j"  # selectors keep working
        assert meta["annotations"]["example.com/owner"] == "team-a"
        assert n.ANNOTATION_TEMPLATE_HASH in meta["annotations"]
    ptj = build_pytorchjob(j, build_training_pods(j))
    for replica in ptj["spec"]["pytorchReplicaSpecs"].values():
        assert replica["template"]["metadata"]["labels"]["cost-center"] == "nas-42"
        assert replica["template"]["metadata"]["annotations"] == {"example.com/owner": "team-a"}


def test_pod_template_metadata_does_not_change_the_template_hash():
    plain, labelled = job(), job(podTemplate={"metadata": {"labels": {"team": "a"}}})
    hashes = [
        [p["metadata"]["annotations"][n.ANNOTATION_TEMPLATE_HASH] for p in all_pods(j)]
        for j in (plain, labelled)
    ]
    assert hashes[0] == hashes[1]  # relabelling a running job does not restart its groups


# ----- imagePullSecrets ------------------------------------------------------------------------


def test_pull_secrets_from_the_spec_and_the_operator_default_reach_pods_and_service_account(monkeypatch):
    monkeypatch.setenv(scheduling.DEFAULT_PULL_SECRETS_ENV, "corp-mirror, regcred")
    j = job(imagePullSecrets=[{"name": "regcred"}, {"name": "team-registry"}])
    want = [{"name": "regcred"}, {"name": "team-registry"}, {"name": "corp-mirror"}]
    for pod in all_pods(j):
        assert pod["spec"]["imagePullSecrets"] == want
        assert_valid([pod])
    account = next(o for o in build_worker_rbac(j) if o["kind"] == "ServiceAccount")
    assert account["imagePullSecrets"] == want
    assert_valid([account])
    ptj = build_pytorchjob(j, build_training_pods(j))
    assert ptj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["imagePullSecrets"] == want


def test_pull_secrets_absent_by_default_and_operator_default_change_keeps_the_template_hash(monkeypatch):
    monkeypatch.delenv(scheduling.DEFAULT_PULL_SECRETS_ENV, raising=False)
    before = build_search_pods(job())[0]
    assert "imagePullSecrets" not in before["spec"]
    monkeypatch.setenv(scheduling.DEFAULT_PULL_SECRETS_ENV, "corp-mirror")
    after = build_search_pods(job())[0]
    assert after["spec"]["imagePullSecrets"] == [{"name": "corp-mirror"}]
    # An operator upgrade with new default secrets does not replace running pods.
    key = n.ANNOTATION_TEMPLATE_HASH
    assert after["metadata"]["annotations"][key] == before["metadata"]["annotations"][key]


def test_pull_secrets_are_the_fix_an_image_pull_blocker_names():
    from denas_operator.podstate import pod_blocker

    waiting = {"reason": "ErrImagePull", "message": "pull access denied, authorization failed"}
    pod = {
        "metadata": {"name": "j-search-0"},
        "status": {
            "containerStatuses": [{"name": "denas", "image": "reg/x:1", "state": {"waiting": waiting}}]
        },
    }
    reason, message = pod_blocker(pod)
    assert reason == "ImagePullBackOff" and "authorization failed" in message  # the kubelet's own words
    assert "spec.imagePullSecrets" in message and "job's namespace" in message


def test_pull_secrets_field_is_validated_by_the_crd_schema():
    from denas.job import validate_manifest

    errors = validate_manifest(manifest(imagePullSecrets=[{"nme": "x"}]))
    assert any("imagePullSecrets" in e for e in errors), errors


# ----- Kueue -----------------------------------------------------------------------------------


def test_kueue_queue_label_makes_each_group_one_gated_pod_group():
    j = job(labels={scheduling.KUEUE_QUEUE_LABEL: "team-a"}, search={"population": 4, "replicas": 2})
    assert j.queue == "team-a"
    search = scheduling.kueue_pod_group(build_search_pods(j), j.queue, j.name, j.uid, "search", 0)
    train = scheduling.kueue_pod_group(build_training_pods(j), j.queue, j.name, j.uid, "train", 0)
    for group, pods in (("search", search), ("train", train)):
        names = {p["metadata"]["labels"][scheduling.KUEUE_GROUP_LABEL] for p in pods}
        assert names == {f"j-{group}-uid-1-0"}
        for pod in pods:
            assert pod["metadata"]["labels"][scheduling.KUEUE_QUEUE_LABEL] == "team-a"
            ann = pod["metadata"]["annotations"]
            assert ann[scheduling.KUEUE_TOTAL_ANNOTATION] == str(len(pods)) == "2"
            assert ann[scheduling.KUEUE_RETRIABLE_ANNOTATION] == "false"
            assert pod["spec"]["schedulingGates"] == [{"name": "kueue.x-k8s.io/admission"}]
            assert_valid([pod])
    # A restarted group is a new Kueue workload (queued and admitted again).
    again = scheduling.kueue_pod_group(build_search_pods(j), j.queue, j.name, j.uid, "search", 1)
    assert again[0]["metadata"]["labels"][scheduling.KUEUE_GROUP_LABEL] == "j-search-uid-1-1"
    assert len(scheduling.pod_group_name("x" * 63, "u" * 36, "search", 12)) <= 63


def test_kueue_queue_from_the_pod_template_and_no_queue_means_no_kueue_keys():
    j = job(podTemplate={"metadata": {"labels": {scheduling.KUEUE_QUEUE_LABEL: "q"}}})
    assert j.queue == "q"
    pods = decide(
        manifest(podTemplate={"metadata": {"labels": {scheduling.KUEUE_QUEUE_LABEL: "q"}}}), Observed(), NOW
    )
    pod = next(o for o in pods.create if o["kind"] == "Pod")
    assert pod["metadata"]["labels"][scheduling.KUEUE_GROUP_LABEL].startswith("j-search-")
    plain = next(o for o in decide(manifest(), Observed(), NOW).create if o["kind"] == "Pod")
    assert not any(k.startswith("kueue.x-k8s.io/") for k in plain["metadata"]["labels"])
    assert "schedulingGates" not in plain["spec"]


def test_kueue_pytorchjob_carries_the_queue_label_and_no_pod_group_keys():
    j = job(labels={scheduling.KUEUE_QUEUE_LABEL: "team-a"}, training={"backend": "kubeflow", "replicas": 2})
    ptj = build_pytorchjob(j, build_training_pods(j), j.queue)
    assert ptj["metadata"]["labels"][scheduling.KUEUE_QUEUE_LABEL] == "team-a"
    for replica in ptj["spec"]["pytorchReplicaSpecs"].values():
        template = replica["template"]
        assert not any(k.startswith("kueue.x-k8s.io/") for k in template["metadata"]["labels"])
        assert "schedulingGates" not in template["spec"]


def _gated(p):
    p = json.loads(json.dumps(p))
    p["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
    }
    return p


def test_kueue_gated_pods_make_the_job_queued_and_a_missing_queue_blocked():
    body = manifest(labels={scheduling.KUEUE_QUEUE_LABEL: "team-a"})
    first = decide(body, Observed(), NOW)
    pods = [_gated(o) for o in first.create if o["kind"] == "Pod"]
    obs = Observed(pods=pods, services={"j-search"}, worker_rbac=True)
    queued = decide({**body, "status": first.status}, obs, NOW)
    cond = {c["type"]: c for c in queued.status["conditions"]}
    assert cond["Queued"]["status"] == "True" and "team-a" in cond["Queued"]["message"]
    assert cond.get("Blocked", {}).get("status") != "True"
    missing = Observed(pods=pods, services={"j-search"}, worker_rbac=True, kueue_queue_missing=True)
    blocked = decide({**body, "status": queued.status}, missing, NOW)
    cond = {c["type"]: c for c in blocked.status["conditions"]}
    assert cond["Blocked"]["reason"] == "KueueQueueNotFound"
    assert "LocalQueue team-a" in cond["Blocked"]["message"] and "namespace ns" in cond["Blocked"]["message"]
    assert cond["Queued"]["status"] == "False"
    # Stable: the next reconcile writes nothing new (no status churn, no repeated Events).
    later = decide({**body, "status": blocked.status}, missing, NOW.replace(minute=5))
    assert later.status["conditions"] == blocked.status["conditions"]
    # Suspended while queued: the pods go, so nothing waits for admission any more.
    paused = decide({**body, "spec": {**body["spec"], "suspend": True}, "status": queued.status}, obs, NOW)
    assert {c["type"]: c["status"] for c in paused.status["conditions"]}["Queued"] == "False"
    # Admitted (the gate is gone, the pods run): Queued=False, Blocked cleared.
    running = [dict(p, status={"phase": "Running"}) for p in pods]
    admitted = decide(
        {**body, "status": blocked.status},
        Observed(pods=running, services={"j-search"}, worker_rbac=True),
        NOW,
    )
    cond = {c["type"]: c for c in admitted.status["conditions"]}
    assert cond["Queued"]["status"] == "False" and cond["Blocked"]["status"] == "False"


# ----- NetworkPolicy ---------------------------------------------------------------------------


def test_network_policy_admits_rendezvous_only_from_the_same_job_and_metrics_from_monitoring(monkeypatch):
    selector = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    monkeypatch.setenv(network.METRICS_SELECTOR_ENV, json.dumps(selector))
    policy = network.desired_network_policy(job())
    assert policy["metadata"]["name"] == "j-pods"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-12345"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"denas.io/job-name": "j"}}
    assert spec["policyTypes"] == ["Ingress"]
    rendezvous, metrics = spec["ingress"]
    assert rendezvous["from"] == [{"podSelector": {"matchLabels": {"denas.io/job-name": "j"}}}]
    assert {p["port"] for p in rendezvous["ports"]} == {29500, 23456}
    assert metrics == {
        "ports": [{"protocol": "TCP", "port": 9400}],
        "from": [{"namespaceSelector": selector}],
    }
    assert_valid([policy])
    # Every port a pod of the job declares is covered by some rule (nothing else is reachable).
    allowed = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    for pod in all_pods(job()):
        assert {p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]} <= allowed


def test_network_policy_is_created_once_per_job_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv(network.ENABLED_ENV, raising=False)
    first = decide(manifest(), Observed(), NOW)
    assert [o["metadata"]["name"] for o in first.create if o["kind"] == "NetworkPolicy"] == ["j-pods"]
    own_account = decide(manifest(serviceAccountName="runner"), Observed(), NOW)
    assert any(o["kind"] == "NetworkPolicy" for o in own_account.create)
    again = decide({**manifest(), "status": first.status}, Observed(worker_rbac=True), NOW)
    assert not any(o["kind"] == "NetworkPolicy" for o in again.create)
    monkeypatch.setenv(network.ENABLED_ENV, "false")
    off = decide(manifest(), Observed(), NOW)
    assert not any(o["kind"] == "NetworkPolicy" for o in off.create)


# ----- Events ----------------------------------------------------------------------------------


def _status(*conds, **extra):
    return {
        "conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conds],
        **extra,
    }


def test_events_follow_status_transitions_in_lifecycle_order():
    steps = [
        _status(),
        _status(
            ("SearchRunning", "True", "PodsRunning", "1 search pod(s) running"), search={"generation": 0}
        ),
        _status(("SearchRunning", "True", "PodsRunning", ""), search={"generation": 1, "generations": 2}),
        _status(
            ("SearchRunning", "False", "SearchCompleted", ""),
            ("SearchSucceeded", "True", "ResultReady", "3 structure(s)"),
            ("TrainingRunning", "True", "PodsPending", "waiting"),
            search={"generation": 2, "generations": 2},
        ),
        _status(
            ("SearchSucceeded", "True", "ResultReady", ""),
            ("TrainingRunning", "True", "Restarting", "pod j-train-worker-0 exited 137"),
            search={"generation": 2},
            training={"restarts": 1},
        ),
        _status(
            ("SearchSucceeded", "True", "ResultReady", ""),
            ("TrainingRunning", "False", "TrainingCompleted", ""),
            ("Succeeded", "True", "Completed", "search and training finished"),
            search={"generation": 2},
            training={"restarts": 1},
        ),
    ]
    reasons = [e.reason for old, new in zip(steps, steps[1:]) for e in E.lifecycle_events(old, new)]
    assert reasons == [
        "SearchStarted",
        "GenerationDone",
        "GenerationDone",
        "SearchSucceeded",
        "TrainingStarted",
        "GroupRestarted",
        "Succeeded",
    ]
    restart = E.lifecycle_events(steps[3], steps[4])[0]
    assert restart.type == "Warning" and "exited 137" in restart.message
    assert E.lifecycle_events(steps[5], steps[5]) == []  # a repeated reconcile emits nothing


def test_events_for_blockers_failures_suspension_and_queueing():
    old = _status(("SearchRunning", "True", "PodsPending", ""))
    blocked = _status(
        ("SearchRunning", "True", "PodsPending", ""),
        ("Blocked", "True", "ImagePullBackOff", "fix spec.image"),
    )
    (event,) = E.lifecycle_events(old, blocked)
    assert (event.type, event.reason) == ("Warning", "Blocked") and event.message.startswith(
        "ImagePullBackOff: "
    )
    other = _status(("SearchRunning", "True", "PodsPending", ""), ("Blocked", "True", "Unschedulable", ""))
    assert [e.reason for e in E.lifecycle_events(blocked, other)] == ["Blocked"]  # a new blocker
    failed = _status(("Failed", "True", "SearchFailed", "pod j-search-0 exited 1"))
    assert [(e.type, e.reason) for e in E.lifecycle_events(old, failed)] == [("Warning", "Failed")]
    suspended = _status(("Suspended", "True", "Suspended", ""))
    resumed = _status(("Suspended", "False", "Resumed", ""))
    assert [e.reason for e in E.lifecycle_events(old, suspended)] == ["Suspended"]
    assert [e.reason for e in E.lifecycle_events(suspended, resumed)] == ["Resumed"]
    queued = _status(("Queued", "True", "WaitingForAdmission", "LocalQueue q"))
    assert [e.reason for e in E.lifecycle_events(_status(), queued)] == ["Queued"]


def test_events_rate_limit_is_per_job_and_reason_and_refills():
    clock = [0.0]
    limiter = E.RateLimiter(lambda: clock[0])
    burst, every = E.LIMITS["GroupRestarted"]
    allowed = sum(limiter.allow("u1", "GroupRestarted") for _ in range(50))
    assert allowed == burst
    assert limiter.allow("u2", "GroupRestarted") and limiter.allow("u1", "Failed")  # other keys unaffected
    clock[0] += every
    assert limiter.allow("u1", "GroupRestarted") and not limiter.allow("u1", "GroupRestarted")
    gen_burst, gen_every = E.LIMITS["GenerationDone"]
    clock[0] = 1000.0
    gens = sum(limiter.allow("u1", "GenerationDone") for _ in range(100))
    assert gens == gen_burst and gen_every >= 30


def test_events_are_core_v1_events_on_the_denasjob():
    meta = {"name": "j", "namespace": "ns", "uid": "u"}
    event = E.build_event(meta, E.Event("Warning", "Failed", "x" * 5000), NOW, "op-0")
    assert event["involvedObject"] == {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "name": "j",
        "namespace": "ns",
        "uid": "u",
    }
    assert event["type"] == "Warning" and len(event["message"]) == E.MAX_MESSAGE
    assert event["metadata"]["namespace"] == "ns" and event["metadata"]["name"].startswith("j.")
    assert_valid([event])


@pytest.mark.parametrize("status", [403, 500])
def test_events_recorder_never_fails_a_reconcile(status):
    import asyncio

    from kubernetes.client.rest import ApiException

    class Refusing:
        def _request(self, *_a, **_k):
            raise ApiException(status=status)

    rec = E.EventRecorder(Refusing())
    new = _status(("Failed", "True", "X", "boom"))

    async def run():
        written = await rec.record({"name": "j", "namespace": "ns", "uid": "u"}, _status(), new)
        await rec.flush()
        return written

    assert [e.reason for e in asyncio.run(run())] == ["Failed"]


def test_events_are_written_in_order_without_holding_up_the_reconcile():
    import asyncio
    import threading

    release, posted = threading.Event(), []

    class Slow:
        def _request(self, method, path, body):
            release.wait(5)
            posted.append((path, body["reason"], body["involvedObject"]["name"]))

    rec = E.EventRecorder(Slow())
    steps = [
        _status(("SearchRunning", "True", "PodsRunning", "")),
        _status(
            ("SearchSucceeded", "True", "ResultReady", ""), ("TrainingRunning", "True", "PodsPending", "")
        ),
        _status(("Succeeded", "True", "Completed", "")),
    ]

    async def run():
        meta = {"name": "j", "namespace": "ns", "uid": "u"}
        for old, new in zip([_status(), *steps], steps):
            await rec.record(meta, old, new)  # returns at once although the API is slow
        assert posted == []
        release.set()
        await rec.flush()

    asyncio.run(run())
    assert [r for _, r, _ in posted] == ["SearchStarted", "SearchSucceeded", "TrainingStarted", "Succeeded"]
    assert {p for p, _, _ in posted} == {"/api/v1/namespaces/ns/events"}
