"""DeNASCampaign against the real operator process: one owned DeNASJob per cell, at most
maxParallel unfinished at once, matrix edits, a deleted cell recreated, a failed cell -> Degraded.
The cells' pods are the fast stand-ins (tests/e2e/test_operator_pipeline.py runs the real engine)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

GROUP, VERSION, PLURAL = "denas.io", "v1alpha1", "denascampaigns"


def template(cluster, **training: Any) -> dict[str, Any]:
    return {
        "domain": "cnn",
        "image": cluster.lifecycle_image,
        "searchSpace": {"preset": "digits", "fake": {"generationSeconds": 0.2, "epochSeconds": 0.2}},
        "search": {"population": 4, "generations": 2, "topK": 3},
        "training": {"replicas": 1, "epochs": 2, "backoffLimit": 0, **training},
    }


def campaign(cluster, name: str, tmpl: dict, targets=("a", "b"), budgets=("x", "y"), max_parallel: int = 2):
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeNASCampaign",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": {
            "template": tmpl,
            "maxParallel": max_parallel,
            "matrix": {
                "targets": [{"name": t, "nodeSelector": {"kubernetes.io/os": "linux"}} for t in targets],
                "constraints": [{"name": b, "maxParams": 200000} for b in budgets],
            },
        },
    }


@pytest.fixture()
def name() -> str:
    return f"camp-{uuid.uuid4().hex[:4]}"


def get(cluster, name: str) -> dict:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name)


def cells(cluster, name: str) -> dict[str, dict]:
    jobs = cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "denasjobs", label_selector=f"denas.io/campaign={name}"
    )["items"]
    return {j["metadata"]["name"]: j for j in jobs if not j["metadata"].get("deletionTimestamp")}


def finished(job: dict) -> bool:
    return (job.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def events(cluster, name: str, reason: str) -> list:
    items = cluster.core.list_namespaced_event(cluster.namespace).items
    return [e for e in items if e.involved_object.name == name and e.reason == reason]


def cleanup(cluster, name: str) -> None:
    try:
        cluster.custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def test_a_campaign_runs_every_cell_at_most_max_parallel_at_once(cluster, operator, name):
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, PLURAL, campaign(cluster, name, template(cluster))
    )
    most = 0

    def done() -> bool:
        nonlocal most
        jobs = cells(cluster, name)
        most = max(most, sum(1 for j in jobs.values() if not finished(j)))
        return (get(cluster, name).get("status") or {}).get("phase") == "Succeeded"

    try:
        cluster.wait(f"campaign {name} to succeed", done, 180, every=0.1)
        jobs = cells(cluster, name)
        assert sorted(jobs) == sorted(f"{name}-{t}-{b}" for t in "ab" for b in "xy")
        assert 1 <= most <= 2
        uid = get(cluster, name)["metadata"]["uid"]
        assert all(j["metadata"]["ownerReferences"][0]["uid"] == uid for j in jobs.values())
        status = get(cluster, name)["status"]
        assert status["progress"]["summary"] == "4/4" and status["targets"] == "a,b"
        assert {c["type"]: c["status"] for c in status["conditions"]}["Succeeded"] == "True"
        assert all(c["phase"] == "Succeeded" and c["best"]["hash"] for c in status["cells"])
        metrics = operator.metrics()
        assert "denas_campaign_cells" in metrics and f'denascampaign="{name}"' in metrics
    finally:
        cleanup(cluster, name)


def test_matrix_edits_add_and_remove_cells_and_a_deleted_cell_comes_back(cluster, operator, name):
    slow = template(cluster)
    slow["search"]["generations"] = 200  # the cells keep running while the test edits the matrix
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, PLURAL, campaign(cluster, name, slow, max_parallel=8)
    )
    try:
        cluster.wait("four cells", lambda: len(cells(cluster, name)) == 4, 60)
        before = {n: j["metadata"]["uid"] for n, j in cells(cluster, name).items()}
        patch = {
            "spec": {
                "matrix": {
                    "targets": [{"name": "a", "nodeSelector": {"kubernetes.io/os": "linux"}}],
                    "constraints": [{"name": b, "maxParams": 200000} for b in ("x", "y", "z")],
                }
            }
        }
        cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, name, patch)
        wanted = {f"{name}-a-{b}" for b in "xyz"}
        cluster.wait("the edited matrix", lambda: set(cells(cluster, name)) == wanted, 60)
        after = cells(cluster, name)
        for kept in (f"{name}-a-x", f"{name}-a-y"):  # unchanged cells: the same job, not restarted
            assert after[kept]["metadata"]["uid"] == before[kept]
        cluster.wait("a CellRemoved event", lambda: events(cluster, name, "CellRemoved"), 30)  # posted async

        victim = f"{name}-a-x"
        cluster.delete(victim)
        cluster.wait(
            "the deleted cell recreated",
            lambda: (
                victim in cells(cluster, name)
                and cells(cluster, name)[victim]["metadata"]["uid"] != before[victim]
            ),
            60,
        )
        cluster.wait("a CellRecreated event", lambda: events(cluster, name, "CellRecreated"), 30)
    finally:
        cleanup(cluster, name)


def test_a_failed_cell_makes_the_campaign_degraded_with_its_message(cluster, operator, name):
    tmpl = template(cluster, epochs=100, activeDeadlineSeconds=1)  # the cell's training times out
    tmpl["searchSpace"]["fake"]["epochSeconds"] = 0.5
    cluster.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.namespace,
        PLURAL,
        campaign(cluster, name, tmpl, targets=("a",), budgets=("x",)),
    )
    try:

        def degraded() -> dict | None:
            conds = (get(cluster, name).get("status") or {}).get("conditions", [])
            return next((c for c in conds if c["type"] == "Degraded" and c["status"] == "True"), None)

        condition = cluster.wait("Degraded", degraded, 120)
        assert f"{name}-a-x" in condition["message"]
        failed = cluster.condition(f"{name}-a-x", "Failed")
        assert failed["message"][:60] in condition["message"]
        assert get(cluster, name)["status"]["phase"] == "Degraded"
        cluster.wait("a CellFailed event", lambda: events(cluster, name, "CellFailed"), 30)
    finally:
        cleanup(cluster, name)


def test_an_invalid_template_is_a_condition_naming_the_template_field_and_creates_nothing(
    cluster, operator, name
):
    tmpl = template(cluster)
    tmpl["search"]["population"] = 0  # the schema's minimum is 2
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, PLURAL, campaign(cluster, name, tmpl)
    )
    try:

        def invalid() -> dict | None:
            conds = (get(cluster, name).get("status") or {}).get("conditions", [])
            return next((c for c in conds if c["type"] == "Invalid" and c["status"] == "True"), None)

        condition = cluster.wait("Invalid", invalid, 60)
        assert "spec.template.search.population" in condition["message"]
        assert cells(cluster, name) == {}
        cluster.wait("an InvalidSpec event", lambda: events(cluster, name, "InvalidSpec"), 30)
    finally:
        cleanup(cluster, name)


def test_with_a_claim_the_report_is_drawn_onto_it_once_every_cell_finished(cluster, operator, name):
    """The report Pod runs the real `denas report --claim` over the cells' result files (the fake
    searches') and writes report.json, pareto.png and report.html beside them on the claim."""
    claim = f"{name}-state"
    cluster.create_pvc(claim)
    tmpl = template(cluster)
    tmpl["storage"] = {"claimName": claim}
    cluster.custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.namespace,
        PLURAL,
        campaign(cluster, name, tmpl, targets=("a",), budgets=("x", "y")),
    )
    try:

        def reported() -> dict | None:
            report = (get(cluster, name).get("status") or {}).get("report") or {}
            assert report.get("phase") != "Failed", report
            return report if report.get("phase") == "Succeeded" else None

        report = cluster.wait("the report on the claim", reported, 150)
        status = get(cluster, name)["status"]
        assert status["phase"] == "Succeeded" and status["progress"]["summary"] == "2/2"
        assert report["claimName"] == claim and report["path"] == f"{name}-report/"
        ready = next(c for c in status["conditions"] if c["type"] == "ReportReady")
        assert ready["status"] == "True"
        pod = cluster.core.read_namespaced_pod(report["pod"], cluster.namespace)
        assert pod.metadata.owner_references[0].uid == get(cluster, name)["metadata"]["uid"]
        cluster.wait("a ReportWritten event", lambda: events(cluster, name, "ReportWritten"), 30)
        if cluster.kubelet is not None:  # the emulator's claim is a local folder
            folder = cluster.kubelet.workdir / "pvc" / cluster.namespace / claim / f"{name}-report"
            written = json.loads((folder / "report.json").read_text())
            winners = {w["cell"]: w.get("hash") for w in written["winners"]}
            assert winners == {f"{name}-a-x": "h0", f"{name}-a-y": "h0"}  # the fake searches' best
            assert set(written["fronts"]) == {"a"}
            assert (folder / "pareto.png").stat().st_size > 0 and (folder / "report.html").exists()
    finally:
        cleanup(cluster, name)
