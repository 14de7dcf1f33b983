"""`denas run campaign.yaml`: the cells run locally, share the score store, and one report compares them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from deploy_support import ROOT
from search_support import FAKE

SAMPLE = ROOT / "deploy" / "samples" / "campaign-digits.yaml"


def small_campaign(tmp_path, max_parallel: int = 2):
    m = yaml.safe_load(SAMPLE.read_text())
    m["spec"]["maxParallel"] = max_parallel
    t = m["spec"]["template"]
    t["search"].update(population=6, generations=2, warmup=0)
    t["training"]["enabled"] = False
    t["constraints"] = {}
    t["hardware"] = {"ipex": "off", "bf16": "off"}
    path = tmp_path / "campaign.yaml"
    path.write_text(yaml.safe_dump(m))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "denas", "run", *args], capture_output=True, text=True, timeout=600
    )


def test_a_local_campaign_runs_every_cell_shares_scores_and_writes_one_report(tmp_path):
    out = tmp_path / "out"
    proc = run(str(small_campaign(tmp_path, max_parallel=1)), "--out", str(out), "--scorer", FAKE)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((out / "status.json").read_text())
    assert status["phase"] == "Succeeded" and status["progress"]["summary"] == "4/4"
    cells = {c["name"]: c for c in status["cells"]}
    results = {n: json.loads((out / "cells" / n / "result.json").read_text()) for n in cells}
    distinct = set()
    for name in cells:
        lines = (out / "cells" / name / "search" / "history.jsonl").read_text().splitlines()
        distinct |= {json.loads(x)["hash"] for x in lines if '"candidate"' in x}
    # every distinct structure scored once for the whole campaign, the rest reused
    assert status["scoresComputed"] == len(distinct) == len(list((out / "score-store").glob("*.json")))
    assert status["scoresComputed"] + status["scoresReused"] == sum(r["evaluated"] for r in results.values())
    assert status["scoresReused"] > 0
    # the same budget on both targets: the same winner (locally both targets are this machine)
    for budget in ("p200k", "p100k"):
        spr, icx = (results[f"digits-campaign-{t}-{budget}"]["best"][0]["hash"] for t in ("spr", "icx"))
        assert spr == icx
    # maxParallel 1: one cell after the other
    spans = sorted(
        (s["startTime"], s["completionTime"])
        for s in (json.loads((out / "cells" / n / "status.json").read_text()) for n in cells)
    )
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    report = json.loads((out / "report.json").read_text())
    assert set(report["fronts"]) == {"spr", "icx"} and len(report["winners"]) == 4
    assert report["goodEverywhere"] == status["goodEverywhere"] and report["goodEverywhere"]
    assert (out / "pareto.png").stat().st_size > 0 and "Winners per target" in (
        out / "report.html"
    ).read_text()


def test_cells_share_their_selection_runs_and_choose_as_they_would_alone(tmp_path):
    path = small_campaign(tmp_path, max_parallel=1)
    m = yaml.safe_load(path.read_text())
    t = m["spec"]["template"]
    t["training"]["dataset"] = {"name": "digits"}  # selection trains on it; no final training
    t["search"]["selection"] = {
        "enabled": True,
        "topK": 3,
        "minEpochs": 1,
        "maxEpochs": 2,
        "eta": 2,
        "maxTrainSamples": 192,
        "maxEvalSamples": 96,
        "surrogateExtra": 0,
    }
    path.write_text(yaml.safe_dump(m))
    out = tmp_path / "out"
    proc = run(str(path), "--out", str(out), "--scorer", FAKE)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((out / "status.json").read_text())
    cells = {c["name"]: c for c in status["cells"]}
    results = {n: json.loads((out / "cells" / n / "result.json").read_text()) for n in cells}
    runs = {n: r["selection"]["runs"] for n, r in results.items()}
    # every distinct (structure, epochs) trained once for the campaign, by the first cell meeting it
    distinct = {(r["hash"], r["epochs"]) for rs in runs.values() for r in rs}
    assert status["selectionRunsComputed"] == len(distinct)
    assert status["selectionRunsComputed"] + status["selectionRunsReused"] == sum(map(len, runs.values()))
    for budget in ("p200k", "p100k"):  # the second target searched alike: it trains nothing itself
        spr, icx = (f"digits-campaign-{t}-{budget}" for t in ("spr", "icx"))
        assert cells[icx]["selectionRunsComputed"] == 0 and cells[icx]["selectionRunsReused"] == len(
            runs[icx]
        )
        assert [(r["hash"], r["metric"]) for r in runs[icx]] == [(r["hash"], r["metric"]) for r in runs[spr]]
        assert results[icx]["selection"]["winner"] == results[spr]["selection"]["winner"]
    # the campaign summary line and the report say it
    assert "selection runs trained" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["selectionRunsReused"] == status["selectionRunsReused"] > 0
    # the report's second front: what the candidates learned in their first rung vs latency
    assert report["selectionMetric"] == {"name": "accuracy", "higherIsBetter": True, "epochs": 1}
    assert set(report["selectionFronts"]) == {"spr", "icx"}
    for front in report["selectionFronts"].values():
        assert front and all(p["latency_ms"] > 0 for p in front)
        for point in front:  # each point is a rung-0 run of a cell of that target
            rung0 = next(r for r in runs[point["cell"]] if r["hash"] == point["hash"] and r["rung"] == 0)
            assert rung0["metric"] == point["metric"]
        metrics = [p["metric"] for p in front]  # by latency: slower only where it learns better
        assert metrics == sorted(metrics)
    for row in report["winners"]:
        won = results[row["cell"]]["best"][0]
        assert row["selection_metric"] == won["selection"]["metric"]
        assert row["train_free_rank"] == won["trainFreeRank"]
    assert "short training" in (out / "report.html").read_text()


def test_a_bad_campaign_is_one_clear_message_and_exit_2(tmp_path):
    path = small_campaign(tmp_path)
    m = yaml.safe_load(path.read_text())
    m["spec"]["template"]["search"]["population"] = 0
    path.write_text(yaml.safe_dump(m))
    proc = run(str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "spec.template.search.population" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("max_parallel", "share"), [(1, 8), (2, 4), (8, 2)])
def test_the_cells_running_at_once_share_the_cpus(tmp_path, monkeypatch, max_parallel, share):
    """Two cells that each ran a thread per core would oversubscribe the machine (measured: 30x
    slower training on the 2-core VM); each cell's processes get its share of the CPUs."""
    from denas.campaign import local as L
    from denas.campaign.spec import load_campaign
    from denas.local import executor

    seen = []

    class Recording(executor.LocalRun):
        def run(self):
            seen.append(self.cpu_share())

    monkeypatch.setattr(L, "available_cpus", lambda: 8)
    monkeypatch.setattr(executor, "LocalRun", Recording)
    campaign = load_campaign(small_campaign(tmp_path, max_parallel=max_parallel))
    L.LocalCampaign(campaign, tmp_path / "out").run()
    assert seen == [share] * 4  # 4 cells, at most maxParallel at once


def test_a_folder_with_a_users_files_or_another_campaign_is_refused_untouched(tmp_path):
    path = small_campaign(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("my own report")  # a name the campaign would write
    (mine / "notes.txt").write_text("keep")
    proc = run(str(path), "--out", str(mine), "--scorer", FAKE)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not a DeNAS campaign folder" in proc.stderr and "notes.txt" in proc.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "report.html"]
    assert (mine / "report.html").read_text() == "my own report"
    # a lone file with a name the campaign writes is the user's too
    (mine / "notes.txt").unlink()
    proc = run(str(path), "--out", str(mine), "--scorer", FAKE)
    assert proc.returncode == 2 and "report.html" in proc.stderr
    assert [p.name for p in mine.iterdir()] == ["report.html"]
    assert (mine / "report.html").read_text() == "my own report"
    # another campaign's folder: refused too, nothing written
    other = tmp_path / "other"
    other.mkdir()
    (other / ".denas-campaign.json").write_text(
        json.dumps({"kind": "DeNASCampaignRun", "campaign": "elsewhere"})
    )
    proc = run(str(path), "--out", str(other), "--scorer", FAKE)
    assert proc.returncode == 2 and "'elsewhere'" in proc.stderr
    assert [p.name for p in other.iterdir()] == [".denas-campaign.json"]
