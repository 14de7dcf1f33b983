"""DeNASCampaign validation (schema, CEL, the template as a DeNASJob spec) and the matrix -> cells builder."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
import yaml
from deploy_support import ROOT

from denas.campaign import summary as CS
from denas.campaign.spec import (
    ANNOTATION_CELL_HASH,
    CampaignValidationError,
    load_campaign,
    validate_campaign,
)

SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"


def sample() -> dict:
    return yaml.safe_load(SAMPLE.read_text())


def errors_of(manifest: dict) -> list[str]:
    return validate_campaign(copy.deepcopy(manifest))


def test_the_sample_expands_to_one_job_per_target_and_budget():
    campaign = load_campaign(SAMPLE)
    jobs = {c.name: c for c in campaign.cells()}
    assert set(jobs) == {f"digits-campaign-{t}-{b}" for t in ("spr", "icx") for b in ("p200k", "p100k")}
    from denas.campaign.spec import cell_manifest

    m = cell_manifest(campaign, jobs["digits-campaign-icx-p100k"])
    assert m["kind"] == "DeNASJob" and m["metadata"]["labels"]["denas.io/campaign"] == "digits-campaign"
    assert m["spec"]["constraints"] == {"maxLatencyMs": 5, "maxParams": 100000}
    assert m["spec"]["hardware"]["nodeSelector"] == {"feature.node.kubernetes.io/cpu-model.id": "106"}
    # cells that differ in budgets draw per-slot streams, so they meet the same structures
    assert m["spec"]["search"]["randomStreams"] == "perSlot"


def test_a_template_that_chooses_the_single_stream_keeps_it():
    m = sample()
    m["spec"]["template"]["search"]["randomStreams"] = "single"
    campaign = load_campaign(m)
    from denas.campaign.spec import cell_manifest

    assert {cell_manifest(campaign, c)["spec"]["search"]["randomStreams"] for c in campaign.cells()} == {
        "single"
    }


def test_an_empty_matrix_is_rejected_naming_the_field():
    m = sample()
    m["spec"]["matrix"]["targets"] = []
    assert any(e.startswith("spec.matrix:") and "empty matrix" in e for e in errors_of(m))


def test_duplicate_target_names_are_rejected():
    m = sample()
    m["spec"]["matrix"]["targets"][1]["name"] = "spr"
    assert any("duplicate target names" in e for e in errors_of(m))


def test_more_cells_than_the_documented_cap_are_rejected():
    m = sample()
    m["metadata"]["name"] = "c"
    m["spec"]["matrix"]["targets"] = [{"name": f"t{i}"} for i in range(9)]
    m["spec"]["matrix"]["constraints"] = [{"name": f"b{i}", "maxParams": 10**5} for i in range(8)]
    assert any("more than 64 cells" in e for e in errors_of(m))


def test_a_bad_template_names_the_template_field_path():
    m = sample()
    m["spec"]["template"]["search"]["population"] = "many"
    m["spec"]["template"]["search"]["nonsense"] = 1
    errors = errors_of(m)
    assert any(e.startswith("spec.template.search.population: Invalid value") for e in errors), errors
    assert any(e.startswith("spec.template.search.nonsense: Unknown field") for e in errors), errors


def test_a_bad_budget_names_the_matrix_entry():
    m = sample()
    m["spec"]["template"]["constraints"] = {}
    m["spec"]["matrix"]["constraints"][1]["maxParams"] = 0
    assert any(e.startswith("spec.matrix.constraints[1].maxParams") for e in errors_of(m)), errors_of(m)


def test_cell_names_that_would_exceed_the_job_name_limit_are_rejected():
    m = sample()
    m["metadata"]["name"] = "a-rather-long-campaign-name"  # + "-sapphire-p200k" = 42 characters
    m["spec"]["matrix"]["targets"][0]["name"] = "sapphire"
    assert any("exceed 40 characters" in e for e in errors_of(m))


def test_unchanged_cells_keep_their_spec_hash_when_a_target_is_added():
    before = load_campaign(sample())
    m = sample()
    m["spec"]["matrix"]["targets"].append({"name": "emr", "nodeSelector": {"x": "y"}})
    after = load_campaign(m)
    from denas.campaign.spec import cell_manifest

    old = {
        c.name: cell_manifest(before, c)["metadata"]["annotations"][ANNOTATION_CELL_HASH]
        for c in before.cells()
    }
    new = {
        c.name: cell_manifest(after, c)["metadata"]["annotations"][ANNOTATION_CELL_HASH]
        for c in after.cells()
    }
    assert {k: new[k] for k in old} == old and len(new) == len(old) + 2


def test_denas_validate_takes_a_campaign_and_reports_errors_with_exit_2(tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "denas", "validate", str(SAMPLE)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "4 cells" in ok.stdout
    m = sample()
    m["spec"]["matrix"]["targets"] = []
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(m))
    out = subprocess.run(
        [sys.executable, "-m", "denas", "validate", str(bad)], capture_output=True, text=True
    )
    assert out.returncode == 2 and "spec.matrix" in out.stderr and "Traceback" not in out.stderr


def test_load_campaign_raises_one_error_listing_every_problem():
    m = sample()
    m["spec"]["matrix"]["targets"][1]["name"] = "spr"
    with pytest.raises(CampaignValidationError, match='DeNASCampaign.denas.io "digits-campaign" is invalid'):
        load_campaign(m)


def job_status(phase: str, score: float | None = None, failed: str | None = None, top=("h1",)) -> dict:
    status: dict = {"phase": phase, "conditions": [], "search": {"scoresComputed": 3, "scoresReused": 1}}
    if score is not None:
        status["bestStructures"] = [{"hash": h, "deScore": score - i} for i, h in enumerate(top)]
    if failed:
        status["conditions"] = [{"type": "Failed", "status": "True", "message": failed}]
    return status


def test_the_status_is_degraded_with_the_failed_cells_message():
    campaign = load_campaign(sample())
    cells = campaign.cells()
    lines = [CS.cell_status(cells[0], job_status("Failed", failed="search pod OOMKilled"))]
    lines += [CS.cell_status(c, job_status("Succeeded", 0.5)) for c in cells[1:]]
    status = CS.summarize(lines, ["spr", "icx"])
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "search pod OOMKilled" in degraded["message"]
    assert cells[0].name in degraded["message"] and status["phase"] == "Degraded"
    assert status["progress"]["summary"] == "3/4" and status["scoresComputed"] == 12


def test_good_everywhere_needs_a_structure_among_the_best_of_every_target():
    campaign = load_campaign(sample())
    lines = []
    for c in campaign.cells():
        top = ("shared", "only-" + c.target)
        lines.append(CS.cell_status(c, job_status("Succeeded", 0.9, top=top)))
    status = CS.summarize(lines, ["spr", "icx"])
    assert status["goodEverywhere"] == ["shared"]
    assert status["phase"] == "Succeeded" and status["bestPerTarget"] == "spr=0.9, icx=0.9"


def test_denas_report_redraws_the_comparison_from_a_campaign_folder(tmp_path):
    campaign = load_campaign(SAMPLE)
    lines = []
    for i, cell in enumerate(campaign.cells()):
        best = {
            "hash": f"h{i}",
            "structure": {},
            "params": 1000,
            "flops": 2000,
            "latency_ms": 1.0 + i,
            "scores": {"de_score": 0.5 + i / 10},
        }
        shared = {**best, "hash": "shared", "latency_ms": 0.5, "scores": {"de_score": 0.4}}
        folder = tmp_path / "cells" / cell.name
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"best": [best, shared], "pareto": [best, shared]}))
        status = {
            "phase": "Succeeded",
            "bestStructures": [{"hash": f"h{i}", "deScore": 0.5}, {"hash": "shared"}],
        }
        lines.append(CS.cell_status(cell, status))
    (tmp_path / "status.json").write_text(json.dumps(CS.summarize(lines, ["spr", "icx"])))
    out = subprocess.run(
        [sys.executable, "-m", "denas", "report", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["goodEverywhere"] == ["shared"]
    assert [p["hash"] for p in report["fronts"]["spr"]][0] == "shared"  # fastest point of the front
    assert [w["hash"] for w in report["winners"]] == ["h0", "h1", "h2", "h3"]
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "report.html").exists()
    missing = subprocess.run(
        [sys.executable, "-m", "denas", "report", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_the_engine_checks_of_a_local_run_name_the_template_field():
    """`denas run campaign.yaml` builds each cell's search space before it starts (engine=True)."""
    assert load_campaign(sample(), engine=True).cells()
    m = sample()
    m["spec"]["template"]["searchSpace"]["no_such_key"] = 1
    with pytest.raises(CampaignValidationError, match=r"spec\.template\.searchSpace"):
        load_campaign(m, engine=True)
