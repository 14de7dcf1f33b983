"""gitops/: the search campaign and the operator install manifests for Argo CD and Flux."""

from __future__ import annotations

import helm_python as helm
import pytest
from deploy_support import ROOT, assert_valid, by_kind, kustomize_build, load_docs

from denas.campaign.spec import cell_manifest, load_campaign
from denas.job import load_job

GITOPS = ROOT / "gitops"
CAMPAIGN = GITOPS / "campaign"


@pytest.fixture(scope="module")
def campaign() -> list[dict]:
    return kustomize_build(CAMPAIGN)


def test_every_campaign_object_validates(campaign):
    assert_valid(campaign)  # DeNASJobs through load_job (the CRD schema + CEL), the rest through Kubernetes'


def cell_jobs(campaign_objects: list[dict]) -> list:
    """The DeNASJobs the operator creates for the (one) campaign, as validated jobs."""
    (obj,) = by_kind(campaign_objects, "DeNASCampaign")
    c = load_campaign(obj)
    return [load_job(cell_manifest(c, cell)) for cell in c.cells()]


def test_the_campaign_folder_is_one_campaign_and_no_loose_jobs(campaign):
    assert len(by_kind(campaign, "DeNASCampaign")) == 1
    assert by_kind(campaign, "DeNASJob") == []


def test_campaign_searches_each_budget_on_each_hardware_target(campaign):
    jobs = cell_jobs(campaign)
    targets = {tuple(sorted(j.spec["hardware"]["nodeSelector"].items())) for j in jobs}
    budgets = {j.spec["constraints"]["maxLatencyMs"] for j in jobs}
    assert len(targets) >= 2 and len(budgets) >= 2
    pairs = {
        (tuple(sorted(j.spec["hardware"]["nodeSelector"].items())), j.spec["constraints"]["maxLatencyMs"])
        for j in jobs
    }
    assert len(pairs) == len(jobs) == len(targets) * len(budgets), "one job per (hardware, budget)"


def test_campaign_jobs_differ_only_in_hardware_and_budget_and_share_one_score_store(campaign):
    """A fair comparison: same space, seed, search budget and training recipe everywhere."""
    specs = [j.spec for j in cell_jobs(campaign)]

    def comparable(spec: dict) -> dict:
        spec = {k: v for k, v in spec.items() if k not in ("hardware", "constraints")}
        return spec

    assert all(comparable(s) == comparable(specs[0]) for s in specs)
    assert len({s["search"]["seed"] for s in specs}) == 1
    assert {s["storage"]["scoreStore"] for s in specs} == {"cifar10-cnn-scores"}


def test_campaign_is_safe_under_gitops(campaign):
    namespace = next(o for o in campaign if o["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (obj,) = by_kind(campaign, "DeNASCampaign")
    # A TTL-deleted cell would be re-created by the campaign at once.
    assert "ttlSecondsAfterFinished" not in obj["spec"]["template"]
    assert obj["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert obj["metadata"]["labels"]["denas.io/campaign"] == obj["metadata"]["name"]


def test_argocd_and_flux_deliver_the_campaign_folder():
    (application,) = load_docs(CAMPAIGN / "argocd-application.yaml")
    assert application["kind"] == "Application" and application["apiVersion"] == "argoproj.io/v1alpha1"
    assert (ROOT / application["spec"]["source"]["path"]) == CAMPAIGN
    assert application["spec"]["destination"]["namespace"] == "nas-campaign"
    flux = load_docs(CAMPAIGN / "flux-kustomization.yaml")
    source = next(d for d in flux if d["kind"] == "GitRepository")
    kustomization = next(d for d in flux if d["kind"] == "Kustomization")
    assert kustomization["apiVersion"] == "kustomize.toolkit.fluxcd.io/v1"
    assert kustomization["spec"]["sourceRef"] == {"kind": "GitRepository", "name": source["metadata"]["name"]}
    assert (ROOT / kustomization["spec"]["path"]).resolve() == CAMPAIGN


def test_operator_install_via_argocd_and_flux_uses_valid_chart_values():
    (application,) = load_docs(GITOPS / "argocd" / "operator-application.yaml")
    flux = load_docs(GITOPS / "flux" / "operator-helmrelease.yaml")
    release = next(d for d in flux if d["kind"] == "HelmRelease")
    assert (ROOT / application["spec"]["source"]["path"] / "Chart.yaml").exists()
    assert (ROOT / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").exists()
    assert release["spec"]["install"]["crds"] == release["spec"]["upgrade"]["crds"] == "CreateReplace"
    with helm.Chart.load(ROOT / "charts" / "denas-operator") as chart:
        chart.validate_schema(application["spec"]["source"]["helm"]["valuesObject"])
        chart.validate_schema(release["spec"]["values"])
    assert_valid([d for d in flux if d["kind"] == "Namespace"])
