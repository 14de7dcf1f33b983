"""Doubtful latency measurements reach result.json flagged, never silently."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from search_support import config

from denas.scores import latency
from denas.search import run_search
from denas.search.evaluator import DeNASScorer, MeasuredLatency
from denas.search.fakes import analytic_scorer
from denas.search.runner import load_space


def test_the_real_scorer_flags_a_latency_disturbed_in_every_round(monkeypatch):
    cfg = config()
    space = load_space(cfg)
    structure = {"ops": ["nor_conv_3x3"] * 6}
    real, count, clock = latency._model.call, [0], [0.0]

    def every_other_run_slow(*args, **kwargs):  # on a fake clock: 1 ms, 30 ms, 1 ms, ...
        count[0] += 1
        clock[0] += 0.03 if count[0] % 2 else 0.001
        return real(*args, **kwargs)

    monkeypatch.setattr(latency._model, "call", every_other_run_slow)
    monkeypatch.setattr(latency, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    _, ms = DeNASScorer()(space, structure, 1, cfg)
    assert isinstance(ms, MeasuredLatency) and ms.flag and ms.flag.startswith("unstable")
    assert float(ms) == pytest.approx(15.5)  # the least disturbed round's median, flagged


def test_flagged_latencies_are_listed_in_result_json(tmp_path):
    flagged: set[str] = set()

    def scorer(space, structure, seed, cfg):
        scores, ms = analytic_scorer(space, structure, seed, cfg)
        if structure["ops"].count("nor_conv_3x3") >= 3:  # these "measured" on a busy machine
            flagged.add(space.hash(structure))
            return scores, MeasuredLatency(ms * 400, "unstable: median 2258 ms ...")
        return scores, MeasuredLatency(ms)

    result = run_search(config(population=8, generations=2), tmp_path, scorer=scorer, plots=False)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert flagged and {f["hash"] for f in on_disk["latency_flagged"]} == flagged
    assert all(f["flag"].startswith("unstable") for f in result["latency_flagged"])
    for best in on_disk["best"]:
        assert (best["hash"] in flagged) == ("latency_flag" in best)
