"""The campaign report Pod (operator/denas_operator/campaign_report.py via plan_campaign): created once
when every cell has finished and the template has a claim, drawn again when the cells' results
change, reported in status.report and Events, and never a reason to fail the campaign."""

from __future__ import annotations

import copy
import json

import yaml
from denas_operator.campaigns import plan_campaign
from deploy_support import ROOT
from podsecurity import restricted_violations

SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"
NAMES = [f"digits-campaign-{t}-{b}" for t in ("spr", "icx") for b in ("p200k", "p100k")]
POD = "digits-campaign-report"


def campaign(claim: str | None = "data", **template) -> dict:
    body = yaml.safe_load(SAMPLE.read_text())
    body["metadata"].update(namespace="ns", uid="c-uid", generation=1)
    body["spec"]["maxParallel"] = 8
    if claim:
        body["spec"]["template"]["storage"] = {"claimName": claim}
    body["spec"]["template"].update(template)
    return body


def finish(job: dict, phase: str = "Succeeded", best: str = "h", with_result: bool = True) -> None:
    name = job["metadata"]["name"]
    job["status"] = {
        "phase": phase,
        "conditions": [{"type": phase, "status": "True", "message": "boom" if phase == "Failed" else ""}],
        "bestStructures": [{"hash": best, "deScore": 0.5}],
    }
    if with_result:
        job["status"]["resultRef"] = {
            "configMap": f"{name}-result",
            "claimName": "data",
            "path": f"/var/lib/denas/{name}/search-0123abcd",
        }


def all_finished(body: dict) -> dict:
    children = {o["metadata"]["name"]: copy.deepcopy(o) for o in plan_campaign(body, {}).create}
    for job in children.values():
        finish(job)
    return children


NOTHING = {"pod": None, "configmap": None}


def step(body: dict, children: dict, observed: dict | None = None):
    """One reconcile as the handler does it: plan; when the plan needs the report objects, plan
    again with them (``observed``, default: none exist); the status written becomes the campaign's."""
    plan = plan_campaign(body, children)
    if plan.report.observe:
        plan = plan_campaign(body, children, observed or NOTHING)
    body["status"] = plan.status
    return plan


def running(pod: dict, phase: str = "Running", **container_state) -> dict:
    pod = copy.deepcopy(pod)
    pod["status"] = {"phase": phase}
    if container_state:
        pod["status"]["containerStatuses"] = [{"name": "report", "state": container_state}]
    return pod


def reasons(plan) -> set[str]:
    return {r for _, r, _ in plan.events}


def condition(status: dict, type_: str) -> dict:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_without_a_claim_no_pod_and_the_status_says_to_report_locally():
    body = campaign(claim=None)
    plan = step(body, all_finished(body))
    assert plan.report.create == [] and plan.report.patch == [] and plan.report.delete_pods == []
    assert plan.status["report"]["phase"] == "Unavailable"
    assert "denas" in plan.status["report"]["message"] and "claimName" in plan.status["report"]["message"]
    assert condition(plan.status, "ReportReady")["reason"] == "NoClaim"
    assert not {r for r in reasons(plan) if r.startswith("Report")}


def test_no_pod_while_a_cell_is_unfinished():
    body = campaign()
    children = all_finished(body)
    children[NAMES[2]]["status"] = {"phase": "Searching"}
    plan = step(body, children)
    assert plan.report.create == [] and plan.status["report"]["phase"] == "Waiting"
    assert "3/4" in plan.status["report"]["message"]


def test_every_cell_finished_creates_the_configmap_then_the_owned_restricted_pod():
    body = campaign(
        image="registry.example/denas-worker:1.2",
        imagePullSecrets=[{"name": "regcred"}],
        podTemplate={"metadata": {"labels": {"team": "nas"}, "annotations": {"cost": "42"}}},
    )
    children = all_finished(body)
    finish(children[NAMES[3]], "Failed", with_result=False)  # failed before its search ended
    plan = step(body, children)
    assert [o["kind"] for o in plan.report.create] == ["ConfigMap", "Pod"]
    cm, pod = plan.report.create
    for obj in (cm, pod):
        assert obj["metadata"]["name"] == POD and obj["metadata"]["namespace"] == "ns"
        ref = obj["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["uid"], ref["controller"]) == ("DeNASCampaign", "c-uid", True)
        assert obj["metadata"]["labels"]["denas.io/campaign"] == "digits-campaign"
    key = pod["metadata"]["annotations"]["denas.io/report-key"]
    assert cm["metadata"]["annotations"]["denas.io/report-key"] == key == plan.status["report"]["key"]
    # what the Pod reads: every cell line, with its result on the claim (null: none)
    paths = {c["name"]: c["resultPath"] for c in json.loads(cm["data"]["status.json"])["cells"]}
    assert paths == {
        **{c: f"{c}/search-0123abcd/result.json" for c in NAMES[:3]},
        NAMES[3]: None,
    }
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == "registry.example/denas-worker:1.2"
    assert container["command"] == [
        "denas",
        "report",
        "--claim",
        "/var/lib/denas",
        "--campaign",
        "digits-campaign",
        "--status",
        "/etc/denas/campaign/status.json",
        "--out",
        f"/var/lib/denas/{POD}",
    ]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "data"
    assert volumes["campaign"]["configMap"]["name"] == POD
    assert spec["restartPolicy"] == "Never" and spec["automountServiceAccountToken"] is False
    assert restricted_violations(pod) == []
    # the template's pod metadata and pull secrets, as on the cells' pods
    assert pod["metadata"]["labels"]["team"] == "nas" and pod["metadata"]["annotations"]["cost"] == "42"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert plan.status["report"] == {
        "claimName": "data",
        "path": f"{POD}/",
        "pod": POD,
        "key": key,
        "phase": "Running",
        "message": f"Pod {POD} draws the report into data:{POD}/",
    }
    assert "ReportCreated" in reasons(plan)
    # the campaign's health is the cells' alone
    assert plan.status["phase"] == "Degraded" and plan.create == [] and plan.patch == [] and plan.delete == []


def test_the_report_pod_is_created_once_and_its_success_reported_once():
    body = campaign()
    children = all_finished(body)
    cm, pod = step(body, children).report.create
    observed = {"pod": running(pod), "configmap": cm}
    plan = step(body, children, observed)
    assert (
        plan.report.create == [] and plan.report.patch == [] and plan.status["report"]["phase"] == "Running"
    )
    observed["pod"] = running(pod, "Succeeded", terminated={"exitCode": 0, "reason": "Completed"})
    plan = step(body, children, observed)
    assert plan.status["report"]["phase"] == "Succeeded" and "ReportWritten" in reasons(plan)
    assert condition(plan.status, "ReportReady")["status"] == "True"
    plan = step(body, children, observed)
    assert plan.events == [] and plan.report.create == []
    # the finished Pod garbage-collected or deleted by hand: the same results are not drawn twice
    plan = step(body, children, {"pod": None, "configmap": cm})
    assert plan.report.create == [] and plan.status["report"]["phase"] == "Succeeded"


def test_the_report_objects_are_read_only_once_every_cell_finished():
    body = campaign()
    children = all_finished(body)
    children[NAMES[0]]["status"] = {"phase": "Searching"}
    assert not plan_campaign(body, children).report.observe  # a running campaign: no extra API calls
    finish(children[NAMES[0]])
    plan = plan_campaign(body, children)
    assert plan.report.observe and plan.report.create == []  # nothing created blind


def test_changed_results_delete_the_old_pod_and_draw_again():
    """A constraint set added after the report: its cells run, finish, and the report is redrawn."""
    body = campaign()
    children = all_finished(body)
    cm, pod = step(body, children).report.create
    done = running(pod, "Succeeded")
    done["metadata"]["uid"] = "pod-uid"
    step(body, children, {"pod": done, "configmap": cm})
    body["spec"]["matrix"]["constraints"].append({"name": "p50k", "maxParams": 50000})
    plan = step(body, children, {"pod": done, "configmap": cm})
    new = {o["metadata"]["name"]: copy.deepcopy(o) for o in plan.create}
    assert sorted(new) == ["digits-campaign-icx-p50k", "digits-campaign-spr-p50k"]
    assert plan.report.delete_pods == [] and plan.status["report"]["phase"] == "Waiting"
    children.update(new)
    for job in new.values():
        finish(job)
    plan = step(body, children, {"pod": done, "configmap": cm})
    assert plan.report.delete_pods == [(POD, "pod-uid")] and plan.report.create == []  # that Pod only
    assert "ReportOutdated" in reasons(plan)
    plan = step(body, children, {"pod": None, "configmap": cm})
    (patch,) = plan.report.patch
    (new_pod,) = plan.report.create
    key = new_pod["metadata"]["annotations"]["denas.io/report-key"]
    assert key != pod["metadata"]["annotations"]["denas.io/report-key"]
    assert patch["metadata"]["annotations"]["denas.io/report-key"] == key
    assert len(json.loads(patch["data"]["status.json"])["cells"]) == 6


def test_a_rerun_cell_with_a_new_result_redraws_the_report():
    body = campaign()
    children = all_finished(body)
    cm, pod = step(body, children).report.create
    done = running(pod, "Succeeded")
    step(body, children, {"pod": done, "configmap": cm})
    finish(children[NAMES[0]], best="another")  # e.g. the template edited: a new search, a new winner
    children[NAMES[0]]["status"]["resultRef"]["path"] = f"/var/lib/denas/{NAMES[0]}/search-feedbeef"
    plan = step(body, children, {"pod": done, "configmap": cm})
    assert [name for name, _ in plan.report.delete_pods] == [POD]


def test_a_failed_report_pod_is_reported_and_never_fails_the_campaign():
    body = campaign()
    children = all_finished(body)
    cm, pod = step(body, children).report.create
    failed = running(
        pod, "Failed", terminated={"exitCode": 1, "reason": "Error", "message": "No space left on device"}
    )
    plan = step(body, children, {"pod": failed, "configmap": cm})
    report = plan.status["report"]
    assert report["phase"] == "Failed" and "No space left on device" in report["message"]
    assert "exit code 1" in report["message"]
    ready = condition(plan.status, "ReportReady")
    assert ready["status"] == "False" and ready["reason"] == "ReportFailed"
    assert [(t, r) for t, r, _ in plan.events] == [("Warning", "ReportFailed")]
    # the cells decide the campaign's health, and are left alone
    assert plan.status["phase"] == "Succeeded"
    assert condition(plan.status, "Succeeded")["status"] == "True"
    assert condition(plan.status, "Degraded")["status"] == "False"
    assert plan.create == [] and plan.patch == [] and plan.delete == [] and plan.report.delete_pods == []
    assert step(body, children, {"pod": failed, "configmap": cm}).events == []  # announced once
    # deleting the failed Pod by hand draws the report again
    plan = step(body, children, {"pod": None, "configmap": cm})
    assert [o["kind"] for o in plan.report.create] == ["Pod"]


def test_a_pod_of_the_same_name_owned_by_someone_else_is_left_alone():
    body = campaign()
    children = all_finished(body)
    stranger = {"metadata": {"name": POD, "ownerReferences": []}, "status": {"phase": "Running"}}
    plan = step(body, children, {"pod": stranger, "configmap": None})
    assert plan.report.create == [] and plan.report.delete_pods == []
    assert (
        plan.status["report"]["phase"] == "Failed"
        and "not this campaign's" in plan.status["report"]["message"]
    )


def test_a_pending_report_pod_says_why_it_waits():
    body = campaign()
    children = all_finished(body)
    cm, pod = step(body, children).report.create
    stuck = running(pod, "Pending", waiting={"reason": "ImagePullBackOff", "message": "Back-off pulling"})
    plan = step(body, children, {"pod": stuck, "configmap": cm})
    assert plan.status["report"]["phase"] == "Running"
    assert "ImagePullBackOff" in plan.status["report"]["message"]

    unschedulable = running(pod, "Pending")
    unschedulable["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
    ]
    plan = step(body, children, {"pod": unschedulable, "configmap": cm})
    assert "Unschedulable 0/3 nodes" in plan.status["report"]["message"]
