"""The operator's reconcile decision as a pure function: observed children in, actions + status out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from denas_operator.groups import reconcile_group
from denas_operator.kube import merge_patch
from denas_operator.podstate import pod_blocker, pod_failure
from denas_operator.reconcile import Observed, decide

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def body(spec=None, status=None, generation=1):
    spec = spec or {
        "domain": "cnn",
        "search": {"population": 4, "generations": 2},
        "training": {"replicas": 2},
    }
    return {
        "apiVersion": "denas.io/v1alpha1",
        "kind": "DeNASJob",
        "metadata": {"name": "j", "namespace": "ns", "uid": "u", "generation": generation},
        "spec": spec,
        "status": status or {},
    }


def pod(obj, phase="Running", exit_code=None):
    p = json.loads(json.dumps(obj))
    p["status"] = {"phase": phase}
    if exit_code is not None:
        p["status"]["containerStatuses"] = [
            {"name": "denas", "state": {"terminated": {"exitCode": exit_code}}}
        ]
    return p


def cms(result=None, progress=None, metrics=None):
    data = {}
    if result is not None:
        data["result.json"] = json.dumps(result)
    if progress is not None:
        data["search-progress"] = json.dumps(progress)
    if metrics is not None:
        data["metrics.json"] = json.dumps(metrics)
    return {
        "j-spec": {"metadata": {"name": "j-spec", "annotations": {}}, "data": {}},
        "j-result": {"metadata": {"name": "j-result"}, "data": data},
    }


def created(decision, kind):
    return [o["metadata"]["name"] for o in decision.create if o["kind"] == kind]


def cond(status, type_):
    return next((c for c in status["conditions"] if c["type"] == type_), None)


RESULT = {
    "best": [
        {
            "structure": {"d": i},
            "hash": f"h{i}",
            "params": 10,
            "flops": 20,
            "latency_ms": 1.0,
            "scores": {"de_score": 5.0 - i},
        }
        for i in range(8)
    ]
}


def test_a_new_job_gets_configmaps_service_and_search_pods():
    d = decide(body(), Observed(), NOW)
    assert created(d, "ConfigMap") == ["j-spec", "j-result"]
    assert created(d, "Service") == ["j-search"] and created(d, "Pod") == ["j-search-0"]
    assert d.status["phase"] == "Searching" and d.status["observedGeneration"] == 1
    assert cond(d.status, "SearchRunning")["status"] == "True"
    # The pods' own account, allowed to report into j-result (spec.serviceAccountName is unset).
    for kind in ("ServiceAccount", "Role", "RoleBinding"):
        assert created(d, kind) == ["j-worker"], kind
    assert next(o for o in d.create if o["kind"] == "Pod")["spec"]["serviceAccountName"] == "j-worker"


def test_worker_rbac_is_created_once_and_not_with_a_users_service_account():
    created_once = decide(body(), Observed(worker_rbac=True), NOW)
    assert not {"ServiceAccount", "Role", "RoleBinding"} & {o["kind"] for o in created_once.create}
    spec = {"domain": "cnn", "search": {"population": 4, "generations": 2}, "serviceAccountName": "runner"}
    own = decide(body(spec=spec), Observed(), NOW)
    assert not {"ServiceAccount", "Role", "RoleBinding"} & {o["kind"] for o in own.create}
    assert next(o for o in own.create if o["kind"] == "Pod")["spec"]["serviceAccountName"] == "runner"


def test_reconcile_is_idempotent_once_children_exist():
    first = decide(body(), Observed(), NOW)
    pods = [pod(o) for o in first.create if o["kind"] == "Pod"]
    obs = Observed(pods=pods, configmaps=cms(), services={"j-search"}, worker_rbac=True)
    obs.configmaps["j-spec"] = next(o for o in first.create if o["metadata"]["name"] == "j-spec")
    again = decide(body(status=first.status), obs, NOW)
    assert again.create == [] and again.delete_pods == [] and again.replace == []
    assert cond(again.status, "SearchRunning")["reason"] == "PodsRunning"
    third = decide(body(status=again.status), obs, NOW + timedelta(seconds=5))
    assert third.create == [] and merge_patch(again.status, third.status) == {}  # nothing to write


def test_search_progress_is_mirrored_and_the_result_copied_bounded():
    first = decide(body(), Observed(), NOW)
    search0 = pod(next(o for o in first.create if o["kind"] == "Pod"), "Succeeded", 0)
    obs = Observed(
        pods=[search0],
        configmaps=cms(RESULT, {"generation": 2, "generations": 2, "evaluated": 8, "best_score": 5.0}),
        services={"j-search"},
    )
    d = decide(body(status=first.status), obs, NOW)
    assert d.status["search"]["generation"] == 2 and d.status["search"]["bestScore"] == 5.0
    assert [b["hash"] for b in d.status["bestStructures"]] == ["h0", "h1", "h2", "h3", "h4"]  # topK default 5
    assert cond(d.status, "SearchSucceeded")["status"] == "True"
    assert created(d, "Pod") == ["j-train-master-0", "j-train-worker-0"] and "j-train" in created(
        d, "Service"
    )
    assert d.status["phase"] == "Training"


def test_search_success_without_a_result_waits_briefly_then_fails_with_an_rbac_hint():
    first = decide(body(), Observed(), NOW)
    search0 = pod(next(o for o in first.create if o["kind"] == "Pod"), "Succeeded", 0)
    search0["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"] = "2026-01-01T00:00:00Z"
    obs = Observed(pods=[search0], configmaps=cms())
    waiting = decide(
        body(status=first.status), obs, NOW + timedelta(seconds=5)
    )  # its ConfigMap event may lag
    assert cond(waiting.status, "SearchRunning")["reason"] == "WaitingForResult"
    assert cond(waiting.status, "Failed") is None
    d = decide(body(status=waiting.status), obs, NOW + timedelta(seconds=31))
    failed = cond(d.status, "Failed")
    assert failed["reason"] == "ResultMissing" and "RBAC" in failed["message"]


def _training_job(status_extra=None, **training):
    spec = {
        "domain": "cnn",
        "search": {"population": 4, "generations": 2},
        "training": {"replicas": 2, "backoffLimit": 1, **training},
    }
    first = decide(body(spec), Observed(), NOW)
    search0 = pod(next(o for o in first.create if o["kind"] == "Pod"), "Succeeded", 0)
    second = decide(body(spec, first.status), Observed(pods=[search0], configmaps=cms(RESULT)), NOW)
    train_pods = [o for o in second.create if o["kind"] == "Pod"]
    return spec, second.status, search0, train_pods


def test_success_needs_every_training_rank_to_exit_zero():
    spec, status, search0, train = _training_job()
    half = [pod(train[0], "Succeeded", 0), pod(train[1], "Running")]
    d = decide(body(spec, status), Observed(pods=[search0, *half], configmaps=cms(RESULT)), NOW)
    assert cond(d.status, "Succeeded") is None and d.status["phase"] == "Training"
    done = [pod(train[0], "Succeeded", 0), pod(train[1], "Succeeded", 0)]
    obs = Observed(
        pods=[search0, *done], configmaps=cms(RESULT, metrics={"metric": 0.9, "metric_name": "accuracy"})
    )
    d = decide(body(spec, d.status), obs, NOW)
    assert d.status["phase"] == "Succeeded" and d.status["training"]["metric"] == 0.9
    assert d.status["completionTime"]


def test_a_failed_rank_restarts_the_whole_group_until_the_backoff_limit():
    spec, status, search0, train = _training_job()
    broken = [pod(train[0], "Running"), pod(train[1], "Failed", 137)]
    d = decide(body(spec, status), Observed(pods=[search0, *broken], configmaps=cms(RESULT)), NOW)
    assert sorted(d.delete_pods) == ["j-train-master-0", "j-train-worker-0"]
    assert d.status["training"]["restarts"] == 1 and d.status["phase"] == "Training"
    d2 = decide(body(spec, d.status), Observed(pods=[search0, *broken], configmaps=cms(RESULT)), NOW)
    failed = cond(d2.status, "Failed")
    assert failed["reason"] == "TrainingFailed" and "exited with code 137" in failed["message"]
    assert "backoffLimit is 1" in failed["message"]


def test_deadline_fails_training():
    spec, status, search0, train = _training_job(activeDeadlineSeconds=60)
    running = [pod(p) for p in train]
    later = NOW + timedelta(seconds=61)
    status["training"]["startTime"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    d = decide(body(spec, status), Observed(pods=[search0, *running], configmaps=cms(RESULT)), later)
    assert cond(d.status, "Failed")["reason"] == "DeadlineExceeded"
    assert set(d.delete_pods) == {"j-train-master-0", "j-train-worker-0"}


def test_suspend_deletes_pods_and_keeps_configmaps():
    first = decide(body(), Observed(), NOW)
    running = [pod(o) for o in first.create if o["kind"] == "Pod"]
    spec = {**body()["spec"], "suspend": True}
    d = decide(body(spec, first.status, 2), Observed(pods=running, configmaps=cms()), NOW)
    assert d.delete_pods == ["j-search-0"] and d.create == []
    assert d.status["phase"] == "Suspended" and cond(d.status, "Suspended")["status"] == "True"


def test_invalid_spec_fails_naming_the_field_and_creates_nothing():
    d = decide(body({"domain": "cnn", "search": {"population": 1}}), Observed(), NOW)
    failed = cond(d.status, "Failed")
    assert failed["reason"] == "InvalidSpec" and "spec.search.population" in failed["message"]
    assert d.create == []


def test_ttl_after_finished_deletes_the_job():
    status = {
        "conditions": [
            {
                "type": "Succeeded",
                "status": "True",
                "reason": "Completed",
                "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
        "completionTime": "2026-01-01T00:00:00Z",
    }
    spec = {**body()["spec"], "ttlSecondsAfterFinished": 30}
    assert not decide(body(spec, status), Observed(), NOW + timedelta(seconds=10)).delete_job
    assert decide(body(spec, status), Observed(), NOW + timedelta(seconds=31)).delete_job


def test_missing_claim_blocks_with_an_actionable_message():
    spec = {**body()["spec"], "storage": {"claimName": "nas"}}
    d = decide(body(spec), Observed(pvc_missing=True), NOW)
    blocked = cond(d.status, "Blocked")
    assert blocked["reason"] == "PersistentVolumeClaimNotFound" and "nas" in blocked["message"]
    assert created(d, "Pod") == []


def test_group_creates_missing_pods_only_before_any_started():
    desired = [{"metadata": {"name": f"p{i}", "annotations": {}}} for i in range(2)]
    out = reconcile_group(desired, [pod(desired[0], "Pending")], lambda s: False, 0, 3)
    assert [p["metadata"]["name"] for p in out.create] == ["p1"] and out.restarts == 0
    out = reconcile_group(desired, [pod(desired[0], "Running")], lambda s: False, 0, 3)
    assert out.state == "restarting" and out.restarts == 1 and out.delete == ["p0"]


def test_blockers_and_failures_are_explained():
    unschedulable = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
            ],
        },
    }
    assert pod_blocker(unschedulable)[0] == "Unschedulable"
    pull = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {
                    "name": "c",
                    "image": "x",
                    "state": {"waiting": {"reason": "ErrImagePull", "message": "nope"}},
                }
            ]
        },
    }
    assert pod_blocker(pull)[0] == "ImagePullBackOff" and "spec.image" in pod_blocker(pull)[1]
    config = {
        "metadata": {"name": "p"},
        "status": {
            "containerStatuses": [
                {
                    "name": "c",
                    "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "no key"}},
                }
            ]
        },
    }
    assert pod_blocker(config)[0] == "CreateContainerConfigError" and "no key" in pod_blocker(config)[1]
    assert pod_blocker({"metadata": {"name": "p"}, "status": {"phase": "Running"}}) is None
    assert "exited with code 3" in pod_failure(pod({"metadata": {"name": "p"}}, "Failed", 3))


def test_merge_patch_nulls_removed_keys_and_replaces_lists():
    assert merge_patch({"a": 1, "b": {"c": 1, "d": 2}, "l": [1]}, {"b": {"c": 1}, "l": [2]}) == {
        "a": None,
        "b": {"d": None},
        "l": [2],
    }
    assert merge_patch({"a": 1}, {"a": 1}) == {}


def test_jobs_sharing_a_spec_are_judged_by_their_own_names():
    # Spec validation is cached per spec; a bad name must still fail only its own job.
    good, bad = body(), body()
    bad["metadata"]["name"] = "Bad_Name"
    assert created(decide(good, Observed(), NOW), "Pod")
    d = decide(bad, Observed(), NOW)
    failed = cond(d.status, "Failed")
    assert failed["reason"] == "InvalidSpec" and "metadata.name" in failed["message"]
    assert d.create == []
    assert created(decide(body(), Observed(), NOW), "Pod")


def test_suspend_deadline_excludes_the_suspended_interval():
    spec, status, search0, train = _training_job(activeDeadlineSeconds=100)
    running = [pod(p) for p in train]
    obs = lambda pods: Observed(pods=[search0, *pods], configmaps=cms(RESULT))  # noqa: E731
    at = lambda s: NOW + timedelta(seconds=s)  # noqa: E731
    status["training"]["startTime"] = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    # 50 s of training, then suspended for an hour (longer than the deadline), then resumed.
    suspended = decide(body({**spec, "suspend": True}, status, 2), obs(running), at(50))
    assert suspended.status["training"]["suspendedAt"]
    resumed = decide(body(spec, suspended.status, 3), obs([]), at(3650))
    assert cond(resumed.status, "Failed") is None, resumed.status["conditions"]
    assert resumed.status["training"]["suspendedSeconds"] == 3600
    assert "suspendedAt" not in resumed.status["training"]
    # 40 more seconds of training: 90 s in all, within the 100 s deadline ...
    still = decide(body(spec, resumed.status, 3), obs(running), at(3690))
    assert cond(still.status, "Failed") is None
    # ... and at 110 s of training (3710 s of wall time), past it.
    late = decide(body(spec, still.status, 3), obs(running), at(3710))
    assert cond(late.status, "Failed")["reason"] == "DeadlineExceeded"


def test_suspend_deadline_clock_does_not_start_for_a_job_created_suspended():
    d = decide(body({**body()["spec"], "suspend": True}), Observed(), NOW)
    assert "startTime" not in d.status and d.status["phase"] == "Suspended"
    assert not [o for o in d.create if o["kind"] == "Pod"]
    d = decide(body(body()["spec"], d.status, 2), Observed(configmaps=cms()), NOW + timedelta(hours=1))
    assert d.status["startTime"] == (NOW + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_search_backoff_is_its_own_limit_not_trainings():
    spec = {
        "domain": "cnn",
        "search": {"population": 4, "generations": 2, "backoffLimit": 2},
        "training": {"replicas": 1, "backoffLimit": 0},
    }
    d = decide(body(spec), Observed(), NOW)
    search0 = next(o for o in d.create if o["kind"] == "Pod")
    for restarts in (1, 2):  # training.backoffLimit 0 would have failed the job at once
        d = decide(body(spec, d.status), Observed(pods=[pod(search0, "Failed", 1)], configmaps=cms()), NOW)
        assert cond(d.status, "Failed") is None and d.status["search"]["restarts"] == restarts
    d = decide(body(spec, d.status), Observed(pods=[pod(search0, "Failed", 1)], configmaps=cms()), NOW)
    failed = cond(d.status, "Failed")
    assert failed["reason"] == "SearchFailed" and "backoffLimit is 2" in failed["message"]


def test_search_backoff_defaults_from_the_crd():
    from denas.job import openapi_schema

    search = openapi_schema()["properties"]["spec"]["properties"]["search"]["properties"]
    assert search["backoffLimit"]["default"] == 3
    d = decide(body(), Observed(), NOW)  # no search.backoffLimit in the spec: the default applies
    search0 = next(o for o in d.create if o["kind"] == "Pod")
    for restarts in (1, 2, 3):
        d = decide(
            body(body()["spec"], d.status), Observed(pods=[pod(search0, "Failed", 1)], configmaps=cms()), NOW
        )
        assert cond(d.status, "Failed") is None and d.status["search"]["restarts"] == restarts


def _kubeflow_training(**training):
    spec, status, search0, _ = _training_job(backend="kubeflow", **training)
    obs = Observed(pods=[search0], configmaps=cms(RESULT), kubeflow_installed=True)
    d = decide(body(spec, status), obs, NOW)
    (ptj,) = [o for o in d.create if o["kind"] == "PyTorchJob"]
    return spec, d.status, search0, ptj


def test_kubeflow_edit_replaces_the_pytorchjob():
    spec, status, search0, ptj = _kubeflow_training()
    running = {**ptj, "status": {"conditions": [{"type": "Running", "status": "True"}]}}
    obs = Observed(pods=[search0], configmaps=cms(RESULT), kubeflow_installed=True, pytorchjob=running)
    same = decide(body(spec, status), obs, NOW)
    assert not same.delete_pytorchjob and not created(same, "PyTorchJob")  # unchanged spec: left running
    edited = {**spec, "training": {**spec["training"], "replicas": 3}}
    d = decide(body(edited, same.status, 2), obs, NOW)
    assert d.delete_pytorchjob and cond(d.status, "TrainingRunning")["reason"] == "Restarting"
    gone = Observed(pods=[search0], configmaps=cms(RESULT), kubeflow_installed=True, pytorchjob=None)
    d = decide(body(edited, d.status, 2), gone, NOW)
    (new,) = [o for o in d.create if o["kind"] == "PyTorchJob"]
    assert new["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 2  # 3 nodes: master + 2 workers


def test_kubeflow_edit_of_fields_outside_the_pods_keeps_the_pytorchjob():
    spec, status, search0, ptj = _kubeflow_training()
    obs = Observed(pods=[search0], configmaps=cms(RESULT), kubeflow_installed=True, pytorchjob=ptj)
    d = decide(body({**spec, "ttlSecondsAfterFinished": 60}, status, 2), obs, NOW)
    assert not d.delete_pytorchjob
