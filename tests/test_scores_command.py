"""`denas score`: a job's space scored from the command line."""

from __future__ import annotations

import json

import pytest

import denas.scores as scores
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
    assert "de_score" in out.splitlines()[0] and all(c in out.splitlines()[0] for c in weighted)
    assert main(["score", str(job), "--random", "1", "--proxies", "nope"]) == 2
    assert "unknown proxy 'nope'" in capsys.readouterr().err


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
