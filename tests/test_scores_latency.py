"""Latency measurement paths (IPEX / stock, bf16 / fp32), the hardware fingerprint, the cache, the predictor."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from denas.scores import latency
from denas.scores.latency import LatencyCache, LatencyResult, hardware_fingerprint, measure_latency
from denas.scores.predictor import LatencyPredictor


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 36, 4)
    )


X = torch.randn(2, 3, 6, 6)


@pytest.fixture
def no_ipex(monkeypatch):
    monkeypatch.setattr(latency, "import_ipex", lambda: None)


def test_ipex_and_bf16_are_used_when_installed_and_supported():
    result = measure_latency(tiny(), X, threads=1, warmup=1, repeats=3)
    expected_engine = "ipex" if latency.import_ipex() is not None else "stock"
    expected_dtype = "bf16" if latency.cpu_supports_bf16() else "fp32"
    assert result.path == f"{expected_engine}-{expected_dtype}"
    assert result.batch_size == 2 and result.threads == 1
    assert 0 < result.median_ms <= result.p90_ms


def test_stock_fallback_when_ipex_is_not_installed(no_ipex):
    assert measure_latency(tiny(), X, warmup=0, repeats=2).path.startswith("stock-")
    assert measure_latency(tiny(), X, warmup=0, repeats=2, bf16="off").path == "stock-fp32"
    with pytest.raises(RuntimeError, match="ipex='on' but intel_extension_for_pytorch is not importable"):
        measure_latency(tiny(), X, ipex="on")


def test_ipex_off_forces_stock_and_settings_are_checked():
    assert measure_latency(tiny(), X, warmup=0, repeats=2, ipex="off", bf16="off").path == "stock-fp32"
    with pytest.raises(ValueError, match="ipex: expected 'auto', 'on' or 'off'"):
        measure_latency(tiny(), X, ipex="maybe")
    with pytest.raises(ValueError, match="threads and repeats must be >= 1"):
        measure_latency(tiny(), X, threads=0)


def test_callers_threads_and_model_are_restored():
    model = tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    measure_latency(model, X, threads=1 if threads != 1 else 2, warmup=1, repeats=2, ipex="off")
    assert torch.get_num_threads() == threads
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_hardware_fingerprint_names_cpu_flags_cores_and_versions():
    fp = hardware_fingerprint()
    assert fp.cores >= 1 and fp.torch == torch.__version__ and fp.cpu_model
    assert set(fp.flags) <= set(latency.RELEVANT_FLAGS)
    assert fp.id == hardware_fingerprint().id and len(fp.id) == 16
    assert fp.to_dict()["id"] == fp.id


def test_cache_keys_separate_structure_batch_threads_path_and_machine(tmp_path):
    fp = hardware_fingerprint()
    cache = LatencyCache(tmp_path / "lat.sqlite", fingerprint=fp)
    result = LatencyResult(1.5, 2.0, "stock-fp32", batch_size=1, threads=1)
    cache.put("abc", result)
    assert cache.get("abc", 1, 1, "stock-fp32") == result
    assert cache.get("abd", 1, 1, "stock-fp32") is None
    assert cache.get("abc", 2, 1, "stock-fp32") is None
    assert cache.get("abc", 1, 2, "stock-fp32") is None
    assert cache.get("abc", 1, 1, "ipex-bf16") is None
    other_machine = LatencyCache(
        tmp_path / "lat.sqlite",
        fingerprint=latency.HardwareFingerprint(
            cpu_model="other", flags=(), cores=fp.cores, torch=fp.torch, ipex=fp.ipex
        ),
    )
    assert other_machine.get("abc", 1, 1, "stock-fp32") is None
    assert LatencyCache(tmp_path / "lat.sqlite", fingerprint=fp).get("abc", 1, 1, "stock-fp32") == result
    with pytest.raises(ValueError, match="path: expected one of"):
        cache.key("abc", 1, 1, "gpu")


def test_cache_measures_once_per_key(tmp_path, monkeypatch):
    calls = []
    real = latency.measure_latency

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(latency, "measure_latency", counting)
    cache = LatencyCache(tmp_path / "lat.sqlite")
    first = cache.measure("h1", tiny(), X, warmup=0, repeats=2, ipex="off")
    again = cache.measure("h1", tiny(), X, warmup=0, repeats=2, ipex="off")
    cache.measure("h1", tiny(), X[:1], warmup=0, repeats=2, ipex="off")
    assert first == again and len(calls) == 2


def test_cache_hits_when_ipex_optimize_falls_back_to_stock(tmp_path, monkeypatch):
    """ipex.optimize failing times stock PyTorch: the cache must still hit on the next call with
    the same settings (it used to look up the ipex key while the result sat under the stock one)."""

    class BrokenIpex:
        @staticmethod
        def optimize(model, dtype=None):
            raise RuntimeError("unsupported module")

    monkeypatch.setattr(latency, "import_ipex", lambda: BrokenIpex)
    calls = []
    real = latency.measure_latency

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(latency, "measure_latency", counting)
    cache = LatencyCache(tmp_path / "lat.sqlite")
    first = cache.measure("h1", tiny(), X, warmup=0, repeats=2, bf16="off")
    assert first.path == "stock-fp32"  # what was really timed is recorded
    again = cache.measure("h1", tiny(), X, warmup=0, repeats=2, bf16="off")
    assert again == first and len(calls) == 1
    assert cache.get("h1", 2, 1, "stock-fp32") == first


def test_predictor_recovers_additive_op_costs_and_log_log_power_laws():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 4, size=(40, 3)).astype(float)
    flops = rng.uniform(1e6, 5e7, 40)
    ms = 0.5 + 0.02 * flops / 1e6 + counts @ np.array([0.3, 0.1, 0.7])
    model = LatencyPredictor(alpha=1e-6).fit(flops[:10], ms[:10], counts[:10])
    assert np.allclose(model.predict(flops, counts), ms, rtol=1e-4)
    power = LatencyPredictor(form="log").fit(flops[:10], 3e-4 * flops[:10] ** 0.8)
    assert spearmanr(power.predict(flops), flops).statistic == pytest.approx(1.0)
    assert np.allclose(power.predict(flops), 3e-4 * flops**0.8, rtol=1e-6)
    with pytest.raises(ValueError, match="latency_ms must be positive"):
        LatencyPredictor().fit([1e6, 2e6], [1.0, -1.0])
    with pytest.raises(RuntimeError, match="predict before fit"):
        LatencyPredictor().predict([1e6])
    with pytest.raises(ValueError, match="fitted with encodings"):
        model.predict(flops)


def _inject_slow_runs(monkeypatch, slow_calls: set[int], slow_ms: float = 30.0) -> list[int]:
    """A fake clock: each call of the timed model takes 1 ms, the given calls (0-based, warm-up
    included) ``slow_ms``; deterministic whatever else runs on the machine."""
    calls, clock = [0], [0.0]
    real = latency._model.call

    def call(*args, **kwargs):
        clock[0] += (slow_ms if calls[0] in slow_calls else 1.0) / 1000.0
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(latency._model, "call", call)
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    return calls


def test_one_slow_run_does_not_move_the_median_and_is_counted(monkeypatch):
    _inject_slow_runs(monkeypatch, {5})  # warm-up is calls 0-2: call 5 is the third timed run
    result = measure_latency(tiny(), X, warmup=3, repeats=10, ipex="off", bf16="off")
    assert result.median_ms == pytest.approx(1.0)  # the 30 ms run is not the reported value
    assert result.outlier_runs == 1 and result.rounds == 1 and not result.unstable and result.flag is None


def test_a_disturbed_round_is_measured_again_and_the_clean_one_kept(monkeypatch):
    # 6 of the first round's 10 timed runs are slow: its median is, its fastest run is not
    calls = _inject_slow_runs(monkeypatch, set(range(3, 9)))
    result = measure_latency(tiny(), X, warmup=3, repeats=10, ipex="off", bf16="off")
    assert result.rounds == 2 and result.median_ms == pytest.approx(1.0) and not result.unstable
    assert calls[0] == 3 + 10 + 1 + 10  # warm-up, round 1, one untimed run, round 2


def test_a_measurement_disturbed_in_every_round_is_flagged(monkeypatch):
    _inject_slow_runs(monkeypatch, {i for i in range(100) if i % 2 == 1})  # every other run slow
    result = measure_latency(tiny(), X, warmup=0, repeats=4, ipex="off", bf16="off")
    assert result.unstable and result.rounds == latency.MAX_ROUNDS
    assert result.flag.startswith("unstable: median") and "3 timing rounds" in result.flag
