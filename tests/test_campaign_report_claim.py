"""`denas report --claim`: the campaign report drawn from the cells' result files on a claim, into
`<claim>/<campaign>-report/`, as the operator's report Pod runs it; never over a user's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from deploy_support import ROOT

from denas.campaign import summary as CS
from denas.campaign.report_command import MARKER
from denas.campaign.spec import Campaign
from denas.cli import main

SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"
NAME = "digits-campaign"


def result(seed: int) -> dict:
    """A search's result.json: best first, its Pareto front (DE-Score up, latency down)."""
    pts = [
        {
            "hash": f"s{seed}-{i}",
            "structure": {"i": i},
            "params": 1000 * (i + 1),
            "flops": 10_000 * (i + 1),
            "latency_ms": 0.5 + i * 0.25 + seed * 0.01,
            "scores": {"de_score": 3.0 + i - seed * 0.1},
        }
        for i in range(4)
    ]
    return {"best": sorted(pts, key=lambda p: -p["scores"]["de_score"]), "pareto": pts, "evaluated": 12}


@pytest.fixture()
def claim(tmp_path):
    """The claim after the four cells of deploy/samples/campaign-digits.yaml finished: each cell's
    result at <claim>/<cell>/search-<fingerprint>/result.json, and the status the operator passes."""
    campaign = Campaign(yaml.safe_load(SAMPLE.read_text()))
    root = tmp_path / "claim"
    lines = []
    for seed, cell in enumerate(campaign.cells()):
        rel = f"{cell.name}/search-{seed:08x}/result.json"
        (root / rel).parent.mkdir(parents=True)
        res = result(seed)
        (root / rel).write_text(json.dumps(res))
        job_status = {
            "phase": "Succeeded",
            "bestStructures": [
                {"hash": res["best"][0]["hash"], "deScore": res["best"][0]["scores"]["de_score"]}
            ],
        }
        lines.append({**CS.cell_status(cell, job_status), "resultPath": rel})
    targets = [t["name"] for t in campaign.spec["matrix"]["targets"]]
    status = CS.summarize(lines, targets)
    (tmp_path / "status.json").write_text(json.dumps(status))
    return root, tmp_path / "status.json", lines


def report(*args) -> int:
    return main(["report", *map(str, args)])


def test_the_report_is_drawn_from_the_cells_results_on_the_claim(claim, capsys):
    root, status, lines = claim
    assert report("--claim", root, "--campaign", NAME, "--status", status) == 0
    out = root / f"{NAME}-report"
    assert "4/4 cells with a result" in capsys.readouterr().out
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["fronts"]) == {"spr", "icx"}
    winners = {w["cell"]: w["hash"] for w in rep["winners"]}
    assert winners == {c["name"]: c["best"]["hash"] for c in lines}
    # each target's front holds only points of that target's cells, none dominated
    for target, front in rep["fronts"].items():
        assert front and all(p["cell"].split("-")[2] == target for p in front)
        assert all(a["de_score"] < b["de_score"] for a, b in zip(front, front[1:]))
    assert (out / "pareto.png").stat().st_size > 0
    assert "Winners per target" in (out / "report.html").read_text()
    assert json.loads((out / MARKER).read_text())["campaign"] == NAME
    # again (a redraw after the cells changed): the same folder, rewritten
    before = (out / "report.json").stat().st_mtime_ns
    assert report("--claim", root, "--campaign", NAME, "--status", status) == 0
    assert (out / "report.json").stat().st_mtime_ns >= before


def test_without_result_paths_the_newest_search_folder_of_each_cell_is_read(claim, tmp_path):
    """A status copied from the CR has no resultPath: the cell's newest search-*/result.json."""
    root, status_file, lines = claim
    status = json.loads(status_file.read_text())
    for line in status["cells"]:
        line.pop("resultPath")
    stale = root / lines[0]["name"] / "search-00000000old" / "result.json"  # an earlier, edited spec
    stale.parent.mkdir()
    stale.write_text(json.dumps(result(9)))
    os.utime(stale, (1, 1))
    whole = {"kind": "DeNASCampaign", "metadata": {"name": NAME}, "status": status}  # kubectl -o json
    (tmp_path / "dnc.json").write_text(json.dumps(whole))
    out = tmp_path / "elsewhere"
    assert report("--claim", root, "--status", tmp_path / "dnc.json", "--out", out) == 0
    rep = json.loads((out / "report.json").read_text())
    assert {w["cell"]: w["hash"] for w in rep["winners"]}[lines[0]["name"]] == "s0-3"


def test_a_cell_without_a_result_is_listed_without_a_winner(claim):
    root, status_file, lines = claim
    status = json.loads(status_file.read_text())
    status["cells"][1].update(phase="Failed", resultPath=None)  # failed before its search ended
    status_file.write_text(json.dumps(status))
    assert report("--claim", root, "--campaign", NAME, "--status", status_file) == 0
    rep = json.loads((root / f"{NAME}-report" / "report.json").read_text())
    row = next(w for w in rep["winners"] if w["cell"] == lines[1]["name"])
    assert row["phase"] == "Failed" and "hash" not in row


def test_a_folder_with_files_denas_did_not_write_is_refused_untouched(claim, capsys):
    root, status, _ = claim
    out = root / f"{NAME}-report"
    out.mkdir()
    (out / "report.html").write_text("my notes")
    assert report("--claim", root, "--campaign", NAME, "--status", status) == 2
    err = capsys.readouterr().err
    assert "not a DeNAS report folder" in err and "report.html" in err
    assert (out / "report.html").read_text() == "my notes" and not (out / "report.json").exists()


def test_a_link_in_the_report_folder_is_never_written_through(claim, tmp_path, capsys):
    root, status, _ = claim
    assert report("--claim", root, "--campaign", NAME, "--status", status) == 0
    out = root / f"{NAME}-report"
    precious = tmp_path / "precious.html"
    precious.write_text("keep me")
    (out / "report.html").unlink()
    (out / "report.html").symlink_to(precious)
    assert report("--claim", root, "--campaign", NAME, "--status", status) == 2
    assert "link" in capsys.readouterr().err and precious.read_text() == "keep me"


def test_another_campaigns_report_folder_is_refused(claim, capsys):
    root, status, _ = claim
    out = root / "shared"
    assert report("--claim", root, "--campaign", NAME, "--status", status, "--out", out) == 0
    assert report("--claim", root, "--campaign", "other", "--status", status, "--out", out) == 2
    assert f"campaign '{NAME}'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, words",
    [
        (
            ["--claim", "{root}", "--campaign", NAME, "--status", "{tmp}/nope.json"],
            ["nope.json", "no such file"],
        ),
        (
            ["--claim", "{tmp}/no-claim", "--campaign", NAME, "--status", "{status}"],
            ["--claim", "no such folder"],
        ),
        (["{tmp}", "--claim", "{root}", "--status", "{status}"], ["give one of them"]),
        (["--claim", "{root}", "--status", "{status}"], ["--campaign NAME missing"]),
        (["--claim", "{root}", "--campaign", NAME, "--status", "{tmp}/bad.json"], ["bad.json", "not a JSON"]),
    ],
    ids=["missing-status", "missing-claim", "both-modes", "no-name", "not-json"],
)
def test_bad_input_is_one_message_and_exit_2(claim, tmp_path, args, words):
    root, status, _ = claim
    (tmp_path / "bad.json").write_text("{cells: [")
    argv = [a.format(root=root, tmp=tmp_path, status=status) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "denas", "report", *argv], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr
    assert not (root / f"{NAME}-report").exists()


def test_a_result_path_outside_the_claim_is_refused_before_anything_is_written(claim, capsys):
    root, status_file, _ = claim
    status = json.loads(status_file.read_text())
    status["cells"][0]["resultPath"] = "../elsewhere/result.json"
    status_file.write_text(json.dumps(status))
    assert report("--claim", root, "--campaign", NAME, "--status", status_file) == 2
    assert "relative to the claim" in capsys.readouterr().err
    assert not (root / f"{NAME}-report").exists()
