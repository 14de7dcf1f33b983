"""The search's latency pre-filter is fitted on this pool's own measurements from the start."""

from __future__ import annotations

import json

from search_support import config

from denas.search import checkpoint as ckpt
from denas.search import run_search
from denas.search.pool_latency import CALIBRATION_CELLS, PoolLatencyPredictor, calibration_structures
from denas.search.runner import load_space

BUDGET_MS = 5.0


class PoolScorer:
    """A test double for one pool: a 3x3 conv edge costs 2 ms, a 1x1 conv 1 ms, the rest 0.3 ms;
    ``latency`` (what the runner calls before the search) logs every structure it measures."""

    def __init__(self):
        self.measured: list[dict] = []
        self.scored = 0

    @staticmethod
    def ms(structure: dict) -> float:
        cost = {"nor_conv_3x3": 2.0, "nor_conv_1x1": 1.0}
        return 1.0 + sum(cost.get(op, 0.3) for op in structure["ops"])

    def latency(self, space, structure, config) -> float:
        self.measured.append(structure)
        return self.ms(structure)

    def __call__(self, space, structure, seed, config):
        self.scored += 1
        params = space.count_params(structure)
        return {"de_score": float(params % 97)}, self.ms(structure)


def latency_config(**search):
    return config(
        "ea", constraints={"maxLatencyMs": BUDGET_MS}, **{"population": 8, "generations": 2, **search}
    )


def test_calibration_spreads_over_the_flops_range_within_the_budgets():
    cfg = latency_config()
    space = load_space(cfg)
    picked = calibration_structures(space, cfg)
    flops = [space.count_flops(s) for s in picked]
    assert len({space.hash(s) for s in picked}) == len(picked) == CALIBRATION_CELLS
    assert flops == sorted(flops) and flops[0] < flops[-1]
    assert calibration_structures(space, cfg) == picked  # seeded
    tight = config("ea", constraints={"maxLatencyMs": BUDGET_MS, "maxFlops": sorted(flops)[len(flops) // 2]})
    assert all(
        space.count_flops(s) <= tight.constraints.max_flops for s in calibration_structures(space, tight)
    )


def test_nb201_predictor_ranks_this_pool_from_the_calibration_alone():
    cfg = latency_config()
    space = load_space(cfg)
    points = [{"structure": s, "latency_ms": PoolScorer.ms(s)} for s in calibration_structures(space, cfg)]
    predictor = PoolLatencyPredictor(space, points, domain="nb201")
    fast, slow = {"ops": ["skip_connect"] * 6}, {"ops": ["nor_conv_3x3"] * 6}
    assert predictor.ready
    assert abs(predictor.predict(slow) - PoolScorer.ms(slow)) < 1.5
    assert predictor.predict(fast) < BUDGET_MS < predictor.predict(slow)


def test_search_measures_the_pool_first_and_prefilters_from_the_first_generation(tmp_path):
    scorer = PoolScorer()
    out = tmp_path / "out"
    result = run_search(latency_config(), out, scorer=scorer, plots=False)
    state = ckpt.load_checkpoint(out)
    calibration = state["latency_calibration"]
    assert len(calibration) == CALIBRATION_CELLS
    # the calibration structures were measured on this machine before any candidate was scored
    assert [p["structure"] for p in calibration] == scorer.measured[-CALIBRATION_CELLS:]
    assert all(p["latency_ms"] == PoolScorer.ms(p["structure"]) for p in calibration)
    first = next(
        json.loads(line)
        for line in (out / ckpt.HISTORY).read_text().splitlines()
        if json.loads(line)["event"] == "generation"
    )
    # generation 0 already rejects proposals predicted over budget (nothing was scored before it)
    assert first["rejected"].get("spec.constraints.maxLatencyMs", 0) > 0
    assert result["best"] and all(b["latency_ms"] <= BUDGET_MS for b in result["best"])

    # a resumed search reuses the checkpointed calibration: nothing is measured again
    again = PoolScorer()
    state["strategy"].generation = 1  # pretend generation 1 was lost
    ckpt.save_checkpoint(out, state)
    run_search(latency_config(), out, resume=True, scorer=again, plots=False)
    assert again.measured == []


def test_a_latency_far_off_the_pool_model_is_flagged_in_result_json(tmp_path):
    class BusyOnce(PoolScorer):
        def __call__(self, space, structure, seed, config):
            scores, ms = super().__call__(space, structure, seed, config)
            if structure["ops"][0] == "skip_connect":
                return scores, ms * 400  # e.g. 2258 ms where the model expects ~5 ms
            return scores, ms

    result = run_search(latency_config(generations=3), tmp_path, scorer=BusyOnce(), plots=False)
    slow = [c for c in result["latency_flagged"] if c["flag"].startswith("outlier: measured")]
    assert slow and all(c["latency_ms"] > 100 for c in slow)
    assert {c["hash"] for c in slow} == {
        json.loads(line)["hash"]
        for line in (tmp_path / ckpt.HISTORY).read_text().splitlines()
        if json.loads(line)["event"] == "candidate" and json.loads(line)["latency_ms"] > 100
    }
