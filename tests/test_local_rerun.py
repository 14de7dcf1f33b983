"""`denas run` into a folder that already holds a run: done, edited, failed and fixed (real jobs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from denas.job import load_job
from denas.local.rundir import prepare
from tests.test_local_run import denas, reduced_digits

pytestmark = pytest.mark.slow


def last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


def true_conditions(out: Path) -> set[str]:
    status = json.loads((out / "status.json").read_text())
    return {c["type"] for c in status["conditions"] if c["status"] == "True"}


def test_finished_then_unchanged_then_edited_max_params(tmp_path: Path):
    job = reduced_digits(tmp_path, **{"training.replicas": 1, "training.epochs": 2})
    out = tmp_path / "out"
    first = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert first.returncode == 0, first.stderr[-3000:]
    assert last_line(first.stderr).startswith("Succeeded in")
    before = json.loads((out / "status.json").read_text())
    assert {"search", "training"} <= set(before["stages"])  # besides validate and report
    assert all(
        before["stages"][s]["seconds"] > 0 and before["stages"][s]["completionTime"]
        for s in ("search", "training")
    )

    # the unchanged finished job: its result again, and it says so; nothing ran
    again = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "already finished" in again.stderr and last_line(again.stderr).startswith("Succeeded")
    assert before["bestStructures"][0]["hash"] in again.stdout
    assert json.loads((out / "status.json").read_text()) == before

    # the issue's repro: a lower maxParams must not return the old job's results as the new one's
    limit = 50_000
    edited = yaml.safe_load(job.read_text())
    edited["spec"]["constraints"]["maxParams"] = limit
    job.write_text(yaml.safe_dump(edited))
    rerun = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "spec.constraints.maxParams: 200000 -> 50000" in rerun.stderr
    assert "running search and training again" in rerun.stderr
    status = json.loads((out / "status.json").read_text())
    assert status["bestStructures"] and all(b["params"] <= limit for b in status["bestStructures"])
    result = json.loads((out / "result.json").read_text())
    assert all(b["params"] <= limit for b in result["best"])
    assert true_conditions(out) == {"SearchSucceeded", "TrainingSucceeded", "Succeeded"}
    assert status["completionTime"] > before["completionTime"] or status != before

    # a training-only edit keeps the search's result and trains again
    searched = (out / "search" / "result.json").read_bytes()
    edited["spec"]["training"]["epochs"] = 1
    job.write_text(yaml.safe_dump(edited))
    retrain = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    assert "spec.training.epochs: 2 -> 1" in retrain.stderr and "running training again" in retrain.stderr
    assert (out / "search" / "result.json").read_bytes() == searched
    assert json.loads((out / "train" / "metrics.json").read_text())["epochs"] == 1
    # the new model is exported again; model/ does not keep the old training's export
    assert json.loads((out / "model" / "card.json").read_text())["training"]["epochs"] == 1
    assert json.loads((out / "status.json").read_text())["stages"]["export"]["completionTime"]


def test_a_training_failure_surfaces_and_a_fixed_rerun_clears_it(tmp_path: Path):
    """A failure no check can see before work starts: an unreadable training checkpoint."""
    job = reduced_digits(tmp_path, **{"training.epochs": 2})
    out = tmp_path / "out"
    prepare(out, load_job(job))  # a marked, empty run folder
    (out / "train").mkdir()
    (out / "train" / "checkpoint.pt").write_bytes(b"not a checkpoint")

    failed = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert failed.returncode == 1, failed.stderr[-3000:]
    # the failing process and rank, its own error, its log's last lines; not torchrun's wrapper
    assert "training process train-0 (rank 0) exited with code 1: RuntimeError:" in failed.stderr
    assert "unreadable checkpoint" in failed.stderr and "last lines of logs/train-0.log" in failed.stderr
    assert "error_file" not in failed.stderr and "Root Cause" not in failed.stderr
    assert last_line(failed.stderr).startswith("Failed in")
    status = json.loads((out / "status.json").read_text())
    assert status["phase"] == "Failed"
    failed_condition = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert "unreadable checkpoint" in failed_condition["message"]
    running = [c for c in status["conditions"] if c["type"].endswith("Running")]
    assert running and all(c["status"] == "False" for c in running)
    assert status["training"]["active"] == 0
    page = (out / "report.html").read_text()
    body = page[page.index("<body>") :]
    assert body.index('id="failure"') < body.index('id="summary"')
    assert "unreadable checkpoint" in body[: body.index('id="summary"')]

    # the fix the message names; the same command again
    (out / "train" / "checkpoint.pt").unlink()
    fixed = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert last_line(fixed.stderr).startswith("Succeeded in")
    assert true_conditions(out) == {"SearchSucceeded", "TrainingSucceeded", "Succeeded"}
    assert json.loads((out / "status.json").read_text())["phase"] == "Succeeded"
    assert 'id="failure"' not in (out / "report.html").read_text()


def test_the_issues_cifar10_without_path_job_fixed_and_rerun(tmp_path: Path):
    """Issue #15: `dataset: {name: cifar10}` without a path failed; fixed, the rerun must not print Failed."""
    job = reduced_digits(tmp_path, **{"training.replicas": 1, "training.epochs": 1})
    manifest = yaml.safe_load(job.read_text())
    manifest["spec"]["training"]["dataset"] = {"name": "cifar10"}
    job.write_text(yaml.safe_dump(manifest))
    out = tmp_path / "out"
    failed = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert "spec.training.dataset.path" in failed.stderr
    assert "error_file" not in failed.stderr and "Traceback" not in failed.stderr
    if failed.returncode == 1:  # found by training (without an up-front dataset check)
        assert json.loads((out / "status.json").read_text())["phase"] == "Failed"
    else:  # found before any work started
        assert failed.returncode == 2

    manifest["spec"]["training"]["dataset"] = {"name": "digits"}  # the fix
    job.write_text(yaml.safe_dump(manifest))
    fixed = denas("run", str(job), "--out", str(out), "--progress", "json")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert last_line(fixed.stderr).startswith("Succeeded in")
    status = json.loads((out / "status.json").read_text())
    assert status["phase"] == "Succeeded"
    assert true_conditions(out) == {"SearchSucceeded", "TrainingSucceeded", "Succeeded"}
