"""`denas score`: a job's space scored from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import denas.scores as scores
from denas import units
from denas.cli import main

JOB = """
apiVersion: denas.io/v1alpha1
kind: DeNASJob
metadata: {name: tiny}
spec:
  domain: cnn
  searchSpace: {preset: tiny}
  score: {batchSize: 4, weights: {diversity: 1.0}}
"""


@pytest.fixture
def job(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(JOB)
    return path


def test_score_random_structures_as_json_lines(job, capsys):
    assert main(["score", str(job), "--random", "2", "--proxies", "params,naswot", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 2 and rows[0]["hash"] != rows[1]["hash"]
    assert {"params", "naswot", "de_score", "structure"} <= set(rows[0])
    assert rows[0]["params"] > 0


def test_score_one_structure_prints_a_table_and_bad_input_is_an_error(job, capsys):
    assert main(["score", str(job), "--random", "1", "--json"]) == 0
    structure = json.loads(capsys.readouterr().out)["structure"]
    assert main(["score", str(job), "--structure", json.dumps(structure)]) == 0
    out = capsys.readouterr().out
    # the table shows every component the job's DE-Score weighs (cnn defaults + the job's diversity)
    weighted = scores.resolve_weights({"diversity": 1.0}, "cnn")
    assert "DE-Score" in out.splitlines()[0] and all(c in out.splitlines()[0] for c in weighted)
    assert main(["score", str(job), "--random", "1", "--proxies", "nope"]) == 2
    assert '--proxies: Unsupported value: "nope"' in capsys.readouterr().err


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "operator")]), **env}
    return subprocess.run(
        [sys.executable, "-m", "denas", *args], capture_output=True, text=True, timeout=900, env=full_env
    )


def test_denas_score_gives_the_searched_structures_exactly_their_search_scores(tmp_path):
    """One scorer: the search's seed per structure, batch, weights and calibration (was 0.8485 vs 0.8477)."""
    job = tmp_path / "job.yaml"
    job.write_text(JOB + "  search: {population: 4, generations: 1, seed: 3, topK: 4}\n")
    searched = _cli("search", str(job), "--out", str(tmp_path / "out"), "--no-plots", OMP_NUM_THREADS="1")
    assert searched.returncode == 0, searched.stderr[-2000:]
    best = json.loads((tmp_path / "out" / "result.json").read_text())["best"]
    scored = _cli(
        "score", str(job), "--structure", str(tmp_path / "out" / "result.json"), "--json", "--no-latency"
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    rows = {r["hash"]: r for r in map(json.loads, scored.stdout.splitlines())}
    assert len(best) >= 2 and set(rows) == {b["hash"] for b in best}
    for b in best:
        assert rows[b["hash"]]["de_score"] == b["scores"]["de_score"]  # exactly: the same code path
        assert rows[b["hash"]]["diversity"] == b["scores"]["diversity"]
        assert (rows[b["hash"]]["params"], rows[b["hash"]]["flops"]) == (b["params"], b["flops"])


def test_the_table_has_human_readable_numbers_and_json_keeps_raw_ones(job, capsys):
    assert main(["score", str(job), "--random", "2", "--no-latency"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["hash", "params", "flops"] and table[0].split()[-1] == "DE-Score"
    row = table[2].split()
    assert row[1][-1] in "kM" and row[3].endswith("FLOPs") and len(row[-1].split(".")[1]) == 4
    assert main(["score", str(job), "--random", "2", "--no-latency", "--json"]) == 0
    raw = json.loads(capsys.readouterr().out.splitlines()[0])
    assert isinstance(raw["params"], int) and isinstance(raw["de_score"], float)


@pytest.mark.parametrize(
    "fn, value, text",
    [
        (units.count, 89778, "89.8k"),
        (units.count, 950, "950"),
        (units.count, 3211424, "3.21M"),
        (units.count, 1_500_000_000, "1.5G"),
        (units.flops, 1_200_000, "1.2 MFLOPs"),
        (units.flops, 639_900, "640 kFLOPs"),
        (units.milliseconds, 0.79384, "0.794 ms"),
        (units.score, 0.8476531672041292, "0.8477"),
        (units.score, 143.8712, "143.87"),
        (units.score, 1.52e11, "1.520e+11"),
        (units.score, None, "-"),
    ],
)
def test_units_read_like_a_person_writes_them(fn, value, text):
    assert fn(value) == text


def test_score_uses_the_batch_the_search_scores_on(job, tmp_path, capsys):
    # the job trains (CRD default: digits), so `denas score` scores as its search does: on digits
    assert main(["score", str(job), "--random", "1", "--proxies", "grad_norm", "--json"]) == 0
    on_data = json.loads(capsys.readouterr().out)
    assert on_data["scoreInputs"] == "dataset:digits"
    untrained = tmp_path / "untrained.yaml"
    untrained.write_text(JOB + "  training: {enabled: false}\n")
    assert main(["score", str(untrained), "--random", "1", "--proxies", "grad_norm", "--json"]) == 0
    synthetic = json.loads(capsys.readouterr().out)
    assert synthetic["scoreInputs"] == "synthetic" and synthetic["hash"] == on_data["hash"]
    assert synthetic["grad_norm"] != pytest.approx(on_data["grad_norm"], rel=1e-3)
