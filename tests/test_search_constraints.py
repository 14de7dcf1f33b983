"""Budget checks at proposal time: analytic params/FLOPs, predicted latency once calibrated."""

from __future__ import annotations

import random

from search_support import config

from denas.search.config import Constraints
from denas.search.constraints import MIN_LATENCY_POINTS, LatencyPredictor, make_admit
from denas.search.runner import load_space


def _records(space, n, ms_per_mflop=1.0):
    rng = random.Random(0)
    out = []
    for _ in range(n):
        s = space.sample(rng)
        flops = space.count_flops(s)
        out.append({"structure": s, "flops": flops, "latency_ms": 0.05 + ms_per_mflop * flops / 1e6})
    return out


def test_predicted_latency_rejects_only_after_calibration_and_names_the_field():
    space = load_space(config())
    limit = Constraints(max_latency_ms=0.2)
    slow = {"ops": ["nor_conv_3x3"] * 6}
    assert (
        make_admit(space, limit, LatencyPredictor(space, _records(space, MIN_LATENCY_POINTS - 1)))(slow)
        is None
    )
    predictor = LatencyPredictor(space, _records(space, 20))
    assert (
        abs(predictor.predict(slow, space.count_flops(slow)) - (0.05 + space.count_flops(slow) / 1e6)) < 0.05
    )
    reason = make_admit(space, limit, predictor)(slow)
    assert reason is not None and reason.startswith("spec.constraints.maxLatencyMs: predicted")
    assert make_admit(space, limit, predictor)({"ops": ["none"] * 6}) is None


def test_analytic_budgets_and_invalid_structures_are_rejected_by_name():
    space = load_space(config())
    admit = make_admit(space, Constraints(max_params=20000, max_flops=10**9))
    assert admit({"ops": ["nor_conv_3x3"] * 6}).startswith("spec.constraints.maxParams")
    assert admit({"ops": ["skip_connect"] * 6}) is None
    assert admit({"ops": ["conv_7x7"] * 6}).startswith("structure:")
    admit = make_admit(space, Constraints(max_flops=200_000))
    assert admit({"ops": ["nor_conv_3x3"] * 6}).startswith("spec.constraints.maxFlops")
