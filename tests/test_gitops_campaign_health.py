"""GitOps health of a DeNASCampaign: the Argo CD Lua check and the Flux CEL expressions, on statuses
the operator's own campaign planner writes (Healthy when every cell succeeded, Degraded on a failed
cell or an invalid spec, Progressing otherwise)."""

from __future__ import annotations

import copy

import lupa
import pytest
import yaml
from denas_operator.campaigns import plan_campaign
from deploy_support import ROOT, load_docs
from test_gitops_health import flux_health

CAMPAIGN_LUA = ROOT / "gitops" / "argocd" / "campaign-health.lua"
FLUX_CAMPAIGN = ROOT / "gitops" / "flux" / "denascampaign-health.yaml"
SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"


def argocd_health(obj: dict) -> dict:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    return dict(lua.execute(CAMPAIGN_LUA.read_text()).items())


def flux_exprs() -> dict:
    (entry,) = load_docs(FLUX_CAMPAIGN)
    return entry


def campaign_through(step: str) -> dict:
    """The sample campaign with the status the planner writes after `step`."""
    body = yaml.safe_load(SAMPLE.read_text())
    body["metadata"].update(namespace="ns", uid="uid", generation=1)
    body["spec"]["maxParallel"] = 8
    if step == "new":
        return body
    children = {}
    for obj in plan_campaign(body, {}).create:
        job = copy.deepcopy(obj)
        job["status"] = {"phase": "Searching"}
        children[job["metadata"]["name"]] = job
    names = sorted(children)
    if step in ("one-succeeded", "all-succeeded", "one-failed"):
        done = names if step == "all-succeeded" else names[:1]
        for name in done:
            children[name]["status"] = {
                "phase": "Succeeded",
                "conditions": [{"type": "Succeeded", "status": "True"}],
                "bestStructures": [{"hash": "h", "deScore": 0.5}],
            }
    if step == "one-failed":
        children[names[1]]["status"] = {
            "phase": "Failed",
            "conditions": [{"type": "Failed", "status": "True", "message": "search pod OOMKilled"}],
        }
    if step == "invalid":
        body["spec"]["matrix"]["targets"] = []
    body["status"] = plan_campaign(body, children).status
    if step == "edited":
        body["metadata"]["generation"] = 2
    return body


# step -> (Argo CD status, text in its message, Flux status)
CASES = {
    "new": ("Progressing", "pick the campaign up", "InProgress"),
    "running": ("Progressing", "0/4", "InProgress"),
    "one-succeeded": ("Progressing", "1/4", "InProgress"),
    "all-succeeded": ("Healthy", "4/4 cells succeeded", "Current"),
    "one-failed": ("Degraded", "search pod OOMKilled", "Failed"),
    "invalid": ("Degraded", "spec.matrix", "Failed"),
    "edited": ("Progressing", "generation 2", "InProgress"),
}


@pytest.mark.parametrize("step", sorted(CASES))
def test_argocd_campaign_health(step):
    expected, text, _ = CASES[step]
    health = argocd_health(campaign_through(step))
    assert health["status"] == expected and text in health["message"], health


@pytest.mark.parametrize("step", sorted(CASES))
def test_flux_campaign_health(step):
    assert flux_health(campaign_through(step), flux_exprs()) == CASES[step][2]


def test_the_campaign_folder_uses_the_flux_snippet_verbatim():
    exprs = flux_exprs()
    assert (exprs["apiVersion"], exprs["kind"]) == ("denas.io/v1alpha1", "DeNASCampaign")
    flux_docs = load_docs(ROOT / "gitops" / "campaign" / "flux-kustomization.yaml")
    kustomization = next(d for d in flux_docs if d["kind"] == "Kustomization")
    assert exprs in kustomization["spec"]["healthCheckExprs"]
    assert kustomization["spec"]["wait"] is True
