"""The per-pool latency predictor: features per domain, the ridge fit, the source-CPU prior,
and the NB201 benchmark's JSON (on a small synthetic table with the real table's columns)."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import json
import random

import numpy as np
import pytest
from scipy.stats import spearmanr

from denas import spaces
from denas.scores.latency_model import (
    PRIORS,
    PoolLatencyModel,
    default_features,
    latency_features,
    prior_for,
    source_costs,
)
from denas.spaces.nb201 import OPS
from tests.search_support import ROOT

NB201 = spaces.get("nb201")


def test_nb201_features_count_each_op_but_none():
    s = {"ops": ["nor_conv_3x3", "none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3", "none"]}
    assert latency_features(NB201, "nb201", s) == [1.0, 0.0, 2.0, 1.0]  # skip, 1x1, 3x3, pool
    assert len(prior_for("nb201")[0]) == len(OPS) - 1 and prior_for("cnn") is None
    assert set(PRIORS["nb201"]) == {
        "xeon_gold_6226",
        "xeon_gold_6240",
        "xeon_silver_4114",
        "xeon_silver_4210r",
    }
    # spaces without a registered extractor: FLOPs, params and the encoding
    assert latency_features(NB201, "other", s) == default_features(NB201, s)
    assert default_features(NB201, s)[0] == NB201.count_flops(s) / 1e6


def _cells(n: int, seed: int) -> np.ndarray:
    rng = random.Random(seed)
    return np.array([latency_features(NB201, "nb201", NB201.sample(rng)) for _ in range(n)])


def test_fit_recovers_additive_costs_and_checks_its_input():
    x = _cells(60, 0)
    ms = 1.0 + x @ np.array([0.1, 1.5, 3.0, 0.4])
    model = PoolLatencyModel(alpha=1e-8).fit(x[:12], ms[:12])
    assert np.allclose(model.predict(x), ms, rtol=1e-5)
    assert source_costs(x, ms) == pytest.approx([0.1, 1.5, 3.0, 0.4], rel=1e-6)
    with pytest.raises(ValueError, match="latency_ms must be positive"):
        PoolLatencyModel().fit(x[:3], [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="rows for"):
        PoolLatencyModel().fit(x[:3], [1.0, 2.0])
    with pytest.raises(RuntimeError, match="predict before fit"):
        PoolLatencyModel().predict(x)


def test_a_source_cpu_prior_ranks_better_from_few_noisy_measurements():
    """A pool whose costs are a blend of known CPUs' costs: with noisy measurements of 8 cells the
    prior (two blend weights to fit) ranks the pool's true latency better than fitting every
    op's cost alone."""
    x = _cells(3000, 1)
    sources = [[-0.2, 1.9, 2.6, 0.3], [-0.3, 2.6, 6.7, 0.6]]
    truth = 2.0 + x @ (0.5 * np.array(sources[0]) + 0.7 * np.array(sources[1]))
    wins = 0
    for draw in range(10):
        rng = np.random.default_rng(draw)
        idx = rng.choice(len(x), 8, replace=False)
        noisy = truth[idx] * np.exp(rng.normal(0, 0.25, len(idx)))
        own = spearmanr(PoolLatencyModel().fit(x[idx], noisy).predict(x), truth).statistic
        blended = spearmanr(PoolLatencyModel(prior=sources).fit(x[idx], noisy).predict(x), truth).statistic
        wins += blended > own
    assert wins >= 8


def _load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "latency_predictor", ROOT / "benchmarks" / "latency_predictor.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_predictor_and_flops_spearman_per_cpu(tmp_path, monkeypatch):
    """A table shaped like nb201.csv whose CPUs pay for pooling and skips (no FLOPs): the
    predictor must beat FLOPs on every CPU, and the JSON has exactly the issue's shape."""
    cpus = {
        "latency_ms_cpu_a": np.array([0.2, 1.0, 2.0, 1.5]),
        "latency_ms_cpu_b": np.array([0.4, 0.8, 2.5, 2.0]),
        "latency_ms_cpu_c": np.array([0.3, 1.2, 2.2, 1.0]),
    }
    rng = np.random.default_rng(0)
    path = tmp_path / "nb201.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "ops", *cpus])
        for i, ops in enumerate(itertools.islice(itertools.product(OPS, repeat=6), 0, None, 37)):
            x = np.array(latency_features(NB201, "nb201", {"ops": list(ops)}))
            w.writerow([i, " ".join(ops), *(f"{1 + x @ c + rng.normal(0, 0.05):.4f}" for c in cpus.values())])
    monkeypatch.setenv("DENAS_NB201_CSV", str(path))
    bench = _load_benchmark()
    out = tmp_path / "lat.json"
    assert bench.main(["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result) == set(cpus)
    for row in result.values():
        assert set(row) == {"predictor", "flops"} and row["predictor"] > max(row["flops"], 0.95)


def test_benchmark_fails_clearly_without_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DENAS_NB201_CSV", str(tmp_path / "missing.csv"))
    assert _load_benchmark().main([]) == 2
    assert "not found" in (err := capsys.readouterr().err) and "missing.csv" in err
