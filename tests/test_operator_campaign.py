"""The campaign planner (operator/denas_operator/campaigns.py): campaign + observed children -> plan."""

from __future__ import annotations

import copy

import yaml
from denas_operator import campaign_metrics as CM
from denas_operator.campaigns import plan_campaign
from deploy_support import ROOT

from denas.campaign.spec import ANNOTATION_CELL_HASH

SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"
NAMES = [f"digits-campaign-{t}-{b}" for t in ("spr", "icx") for b in ("p200k", "p100k")]


def campaign(**spec) -> dict:
    body = yaml.safe_load(SAMPLE.read_text())
    body["metadata"].update(namespace="ns", uid="c-uid", generation=1)
    body["spec"].update(spec)
    return body


def as_children(created: list[dict], phase: str = "Searching") -> dict:
    out = {}
    for obj in created:
        job = copy.deepcopy(obj)
        job["status"] = {"phase": phase}
        out[job["metadata"]["name"]] = job
    return out


def succeed(job: dict, score: float = 0.5) -> None:
    job["status"] = {
        "phase": "Succeeded",
        "conditions": [{"type": "Succeeded", "status": "True"}],
        "bestStructures": [{"hash": "h", "deScore": score}],
        "search": {
            "scoresComputed": 10,
            "scoresReused": 5,
            "selectionRunsComputed": 4,
            "selectionRunsReused": 3,
        },
    }


def test_creates_at_most_max_parallel_owned_jobs_with_readable_names():
    plan = plan_campaign(campaign(maxParallel=2), {})
    assert [o["metadata"]["name"] for o in plan.create] == NAMES[:2]
    for obj in plan.create:
        assert obj["kind"] == "DeNASJob" and obj["metadata"]["ownerReferences"][0]["uid"] == "c-uid"
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "DeNASCampaign"
    assert plan.status["progress"] == {
        "total": 4,
        "pending": 2,
        "running": 2,
        "succeeded": 0,
        "failed": 0,
        "summary": "0/4",
    }


def test_a_finished_cell_frees_its_slot_for_the_next_one():
    body = campaign(maxParallel=2)
    children = as_children(plan_campaign(body, {}).create)
    assert plan_campaign(body, children).create == []  # both slots busy
    succeed(children[NAMES[0]])
    plan = plan_campaign(body, children)
    assert [o["metadata"]["name"] for o in plan.create] == [NAMES[2]]


def test_editing_the_matrix_adds_and_removes_jobs_and_leaves_unchanged_cells_alone():
    body = campaign(maxParallel=8)
    children = as_children(plan_campaign(body, {}).create)
    body["spec"]["matrix"]["constraints"] = [
        {"name": "p200k", "maxParams": 200000},
        {"name": "p50k", "maxParams": 50000},
    ]
    plan = plan_campaign(body, children)
    assert sorted(plan.delete) == ["digits-campaign-icx-p100k", "digits-campaign-spr-p100k"]
    assert sorted(o["metadata"]["name"] for o in plan.create) == [
        "digits-campaign-icx-p50k",
        "digits-campaign-spr-p50k",
    ]
    assert plan.patch == []  # the p200k cells are not restarted


def test_a_changed_template_patches_every_cell():
    body = campaign(maxParallel=8)
    children = as_children(plan_campaign(body, {}).create)
    body["spec"]["template"]["search"]["generations"] = 6
    plan = plan_campaign(body, children)
    assert sorted(name for name, _ in plan.patch) == sorted(NAMES)
    name, patch = plan.patch[0]
    assert patch["spec"]["search"]["generations"] == 6
    assert (
        patch["metadata"]["annotations"][ANNOTATION_CELL_HASH]
        != children[name]["metadata"]["annotations"][ANNOTATION_CELL_HASH]
    )


def test_a_deleted_child_is_recreated_with_a_warning_event():
    body = campaign(maxParallel=8)
    first = plan_campaign(body, {})
    children = as_children(first.create)
    body["status"] = plan_campaign(body, children).status
    del children[NAMES[1]]
    plan = plan_campaign(body, children)
    assert [o["metadata"]["name"] for o in plan.create] == [NAMES[1]]
    assert ("Warning", "CellRecreated") in {(t, r) for t, r, _ in plan.events}


def test_a_failed_child_makes_the_campaign_degraded_with_its_message():
    body = campaign(maxParallel=8)
    children = as_children(plan_campaign(body, {}).create)
    children[NAMES[0]]["status"] = {
        "phase": "Failed",
        "conditions": [{"type": "Failed", "status": "True", "message": "search pod OOMKilled"}],
    }
    plan = plan_campaign(body, children)
    degraded = next(c for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert (
        degraded["status"] == "True"
        and "OOMKilled" in degraded["message"]
        and NAMES[0] in degraded["message"]
    )
    assert plan.status["phase"] == "Degraded" and any(r == "CellFailed" for _, r, _ in plan.events)


def test_every_cell_succeeded_sums_the_score_counts():
    body = campaign(maxParallel=8)
    children = as_children(plan_campaign(body, {}).create)
    for job in children.values():
        succeed(job)
    status = plan_campaign(body, children).status
    assert status["phase"] == "Succeeded" and status["progress"]["summary"] == "4/4"
    assert (status["scoresComputed"], status["scoresReused"]) == (40, 20)
    assert (status["selectionRunsComputed"], status["selectionRunsReused"]) == (16, 12)
    # the metrics follow the status
    CM.observe("ns", "c", status)
    assert CM.SELECTION_COMPUTED.labels("ns", "c")._value.get() == 16
    assert CM.SELECTION_REUSED.labels("ns", "c")._value.get() == 12
    CM.forget("ns", "c")
    assert status["bestPerTarget"] == "spr=0.5, icx=0.5" and status["targets"] == "spr,icx"


def test_an_invalid_campaign_touches_no_child_and_names_the_field():
    body = campaign(maxParallel=8)
    children = as_children(plan_campaign(body, {}).create)
    body["spec"]["matrix"]["targets"] = []
    plan = plan_campaign(body, children)
    assert plan.create == [] and plan.delete == [] and plan.patch == []
    invalid = next(c for c in plan.status["conditions"] if c["type"] == "Invalid")
    assert "spec.matrix" in invalid["message"] and plan.status["phase"] == "Invalid"


def test_the_status_stays_small_with_the_largest_matrix():
    import json

    body = campaign(maxParallel=64)
    body["metadata"]["name"] = "c"
    body["spec"]["matrix"]["targets"] = [{"name": f"target-{i:02d}"} for i in range(8)]
    body["spec"]["matrix"]["constraints"] = [
        {"name": f"budget-{i:02d}", "maxParams": 10**5} for i in range(8)
    ]
    children = as_children(plan_campaign(body, {}).create)
    for job in children.values():
        succeed(job)
        job["status"]["bestStructures"] = [
            {"hash": f"{i:016x}", "deScore": 0.5, "structure": {"x": "y" * 500}} for i in range(50)
        ]
    status = plan_campaign(body, children).status
    assert len(status["cells"]) == 64 and len(json.dumps(status)) < 64 * 1024


def test_a_cells_search_pods_share_the_campaigns_score_store_on_the_claim():
    from denas_operator.pods import JobRef, build_search_pods

    from denas.job import load_job

    body = campaign(maxParallel=8)
    body["spec"]["template"]["storage"] = {"claimName": "data"}
    (child, *_) = plan_campaign(body, {}).create
    assert child["spec"]["storage"] == {"claimName": "data", "scoreStore": "digits-campaign-scores"}
    job = load_job(child)
    command = build_search_pods(JobRef(job.name, "ns", "uid", job.spec))[0]["spec"]["containers"][0][
        "command"
    ]
    assert command[command.index("--score-store") + 1] == "/var/lib/denas/digits-campaign-scores"
    # without a claim the cells cannot share a directory: each scores alone
    (alone, *_) = plan_campaign(campaign(maxParallel=8), {}).create
    assert "scoreStore" not in (alone["spec"].get("storage") or {})


def test_a_recreated_child_waits_for_a_slot_like_any_other():
    """A finished cell deleted by hand while every slot is busy must not make a third job run at
    once with maxParallel 2: it is announced at once and created when a slot frees, before cells
    that never ran."""
    body = campaign(maxParallel=2)
    children = as_children(plan_campaign(body, {}).create)
    succeed(children[NAMES[0]])
    plan = plan_campaign(body, children)
    children.update(as_children(plan.create))  # NAMES[2] takes the freed slot
    body["status"] = plan_campaign(body, children).status
    del children[NAMES[0]]  # the finished cell's job is deleted by hand
    plan = plan_campaign(body, children)
    assert plan.create == []  # NAMES[1] and NAMES[2] are still running
    assert ("Warning", "CellRecreated") in {(t, r) for t, r, _ in plan.events}
    body["status"] = plan.status
    assert plan_campaign(body, children).events == []  # announced once
    succeed(children[NAMES[1]])
    plan = plan_campaign(body, children)
    assert [o["metadata"]["name"] for o in plan.create] == [NAMES[0]]  # before NAMES[3]
