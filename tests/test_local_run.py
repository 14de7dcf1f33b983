"""`denas run`: the digits sample end to end on this machine, its report, resume and bad manifests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from denas.job import load_job

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "deploy" / "samples" / "digits.yaml"


def reduced_digits(tmp_path: Path, **overrides) -> Path:
    """The digits sample with a smaller budget (same structure: 2 search ranks, 2 training nodes)."""
    manifest = yaml.safe_load(SAMPLE.read_text())
    spec = manifest["spec"]
    spec["search"].update(population=6, generations=2, warmup=4)
    # selection stays on (the default) with a smaller budget: 4 + 1 surrogate pick at 1 epoch, 2 at 2
    spec["search"]["selection"] = {"topK": 4, "surrogateExtra": 1, "maxEpochs": 2}
    spec["training"].update(epochs=3)
    for path, value in overrides.items():
        node = spec
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    job = tmp_path / "digits.yaml"
    job.write_text(yaml.safe_dump(manifest))
    return job


def denas(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "denas", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        **kw,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("run")
    out = tmp / "out"
    proc = denas("run", str(reduced_digits(tmp)), "--out", str(out), "--progress", "json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_digits_runs_end_to_end_and_writes_the_operator_status(finished_run: Path):
    status = json.loads((finished_run / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types["SearchSucceeded"] == "True" and types["TrainingSucceeded"] == "True"
    assert types["Succeeded"] == "True" and types["SearchRunning"] == "False"
    assert 1 <= len(status["bestStructures"]) <= 5
    assert status["bestStructures"][0]["params"] <= 200_000  # the sample's maxParams
    # digits has 10 classes: a trained network is far above chance
    assert status["training"]["metricName"] and status["training"]["metric"] > 0.3
    assert status["startTime"] <= status["completionTime"]
    result = json.loads((finished_run / "result.json").read_text())
    assert [b["hash"] for b in result["best"]][: len(status["bestStructures"])] == [
        b["hash"] for b in status["bestStructures"]
    ]
    # the selection stage ran in `denas run` as on the cluster: the winner is the best at the top
    # rung, leads the status with its short-training metric, and keeps its train-free rank
    selection = result["selection"]
    assert {r["rung"] for r in selection["runs"]} == {0, 1}
    winner = status["bestStructures"][0]
    assert winner["hash"] == selection["winner"] and winner["selection"]["rung"] == 1
    top = [r for r in selection["runs"] if r["rung"] == 1 and r["status"] == "ok"]
    assert winner["selection"]["metric"] == max(r["metric"] for r in top)
    assert isinstance(winner["trainFreeRank"], int)


@pytest.mark.slow
def test_report_has_plots_and_an_html_page_that_shows_them(finished_run: Path):
    for name in ("search_curve", "pareto", "training_curve"):
        png = finished_run / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (finished_run / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'src="http' not in page  # self-contained


@pytest.mark.slow
@pytest.mark.parametrize(("width", "height"), [(1280, 1800), (390, 2400)], ids=["desktop", "phone"])
def test_report_reads_well_in_headless_chromium(finished_run: Path, tmp_path: Path, width: int, height: int):
    assert shutil.which("chromium"), "Debian's chromium is missing: run scripts/bootstrap.sh --test"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}",
    ]  # fmt: skip
    url = (finished_run / "report.html").resolve().as_uri()
    dom = subprocess.run(
        ["chromium", *flags, "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-images-loaded="3"' in dom.stdout and 'data-images="3"' in dom.stdout
    # nothing sticks out of the page at this width (tables and code scroll inside their own box)
    assert 'data-overflowing="0"' in dom.stdout, dom.stdout[dom.stdout.index("<body") :][:300]
    # the summary comes first, then the top-K table, then the plots
    body = dom.stdout[dom.stdout.index("<body") :]
    assert body.index('id="summary"') < body.index('id="top"') < body.index('id="plots"')
    for words in ("Searched", "Hardware", "Time per stage", "Winner", "params", "FLOPs"):
        assert words in body[: body.index('id="top"')], words
    shot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True
    )  # fmt: skip
    from PIL import Image, ImageStat

    image = Image.open(shot).convert("RGB")
    assert image.size == (width, height)
    assert max(ImageStat.Stat(image.convert("L")).stddev) > 20  # not a blank page
    # matplotlib's default blue (C0) lines and markers are on screen: the plots rendered
    blue = sum(1 for r, g, b in image.get_flattened_data() if b > 150 and r < 80 and 90 < g < 150)
    assert blue > 200


@pytest.mark.slow
def test_interrupted_run_resumes_and_finishes(tmp_path: Path):
    job = reduced_digits(tmp_path, **{"search.generations": 3, "training.replicas": 1, "training.epochs": 2})
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "denas", "run", str(job), "--out", str(out), "--progress", "json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    # interrupt once the search has checkpointed its first generation
    for line in proc.stdout:
        if '"generation": 1' in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=120)
    status = json.loads((out / "status.json").read_text())
    assert status["phase"] != "Succeeded"
    scored_before = (out / "search" / "history.jsonl").read_text().count("\n")
    again = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(resuming)" in again.stderr
    assert json.loads((out / "status.json").read_text())["phase"] == "Succeeded"
    assert scored_before > 0


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"search": {"population": 1}}, "spec.search.population: Invalid value: 1"),
        ({"domain": "gan"}, "spec.domain: unknown space 'gan'"),
        ({"training": {"dataset": {"name": "squad"}}}, "spec.training.dataset.name does not fit spec.domain"),
        ({"searchSpace": {"colour": "red"}}, "spec.searchSpace.colour"),
    ],
)
def test_malformed_manifests_fail_with_the_schema_errors(tmp_path: Path, patch, message):
    manifest = yaml.safe_load(SAMPLE.read_text())
    manifest["spec"].update(patch)
    job = tmp_path / "bad.yaml"
    job.write_text(yaml.safe_dump(manifest))
    proc = denas("run", str(job), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "out").exists()


def test_validate_and_explain_for_authoring(tmp_path: Path):
    ok = denas("validate", str(SAMPLE), "-o", "json", timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["spec"]["search"]["mutationProb"] == 0.3  # a CRD default was applied
    assert load_job(SAMPLE).spec["search"]["population"] == 12
    bad = tmp_path / "bad.yaml"
    bad.write_text(SAMPLE.read_text().replace("population: 12", "population: 0"))
    proc = denas("validate", str(bad), timeout=120)
    assert proc.returncode == 2 and "spec.search.population: Invalid value: 0" in proc.stderr
    explained = denas("explain", "spec.constraints", timeout=120)
    assert explained.returncode == 0 and "maxLatencyMs\t<number>" in explained.stdout
    assert denas("explain", "spec.nope", timeout=120).returncode == 2


def test_run_help_is_true_to_the_flags():
    out = denas("run", "--help", timeout=120)
    assert out.returncode == 0
    for flag in ("--out", "--fresh", "--progress"):
        assert flag in out.stdout


def test_the_summary_marks_the_structure_that_training_actually_used():
    from denas.local.report import summary_rows, summary_table

    status = {
        "bestStructures": [{"rank": 0, "hash": "a"}, {"rank": 1, "hash": "b"}],
        "training": {"metric": 0.9, "metricName": "accuracy"},
    }
    rows = summary_rows(status, trained_rank=1)  # spec.training.structureRank: 1
    assert [r["trained"] for r in rows] == ["", "accuracy=0.9000"]
    assert "accuracy=0.9000" in summary_table(status, trained_rank=1).splitlines()[3]


@pytest.mark.slow
def test_the_status_records_where_the_time_went(finished_run: Path):
    stages = json.loads((finished_run / "status.json").read_text())["stages"]
    assert list(stages) == ["validate", "search", "training", "export", "report"]
    assert all(s["seconds"] > 0 for s in stages.values())
    assert all(stages[s]["completionTime"] for s in ("search", "training", "export"))
    page = (finished_run / "report.html").read_text()
    shown = page[page.index("Time per stage") :].split("</dd>")[0]
    assert "export" in shown and "unfinished" not in shown  # validate records seconds only
