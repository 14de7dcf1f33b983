"""Budgets: checked when a candidate is created, so an illegal candidate never reaches scoring.

Parameters and FLOPs are counted analytically by the space.  Latency is first *predicted* by the
per-pool predictor (`denas.search.pool_latency`), fitted on structures measured on this machine
at start and on the candidates measured since; the measurement at scoring is the truth, and a
measured violation marks the candidate infeasible (it stays in the archive, never in the result).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from denas.search.config import Constraints, SearchConfig, SearchError
from denas.search.pool_latency import MIN_LATENCY_POINTS, PoolLatencyPredictor

#: the latency pre-filter's predictor (`denas.search.pool_latency`)
LatencyPredictor = PoolLatencyPredictor
__all__ = ["MIN_LATENCY_POINTS", "LatencyPredictor", "make_admit", "check_satisfiable"]

#: a proposal is rejected only when its predicted latency exceeds the budget by this factor:
#: a few-sample predictor ranks latency well but its single values are rough
PREDICTION_SLACK = 1.25
#: structures sampled when checking up front that the budgets can be met at all
FEASIBILITY_SAMPLES = 300


def make_admit(
    space: Any, constraints: Constraints, predictor: PoolLatencyPredictor | None = None
) -> Callable:
    """``admit(structure) -> None | "spec.constraints.<field>: why"`` (also rejects invalid structures)."""

    def admit(structure: dict) -> str | None:
        try:
            space.validate(structure)
        except ValueError as e:
            return f"structure: {e}"
        if constraints.max_params is not None:
            params = space.count_params(structure)
            if params > constraints.max_params:
                return f"spec.constraints.maxParams: {params} > {constraints.max_params}"
        if constraints.max_flops is not None or (predictor is not None and predictor.ready):
            flops = space.count_flops(structure)
            if constraints.max_flops is not None and flops > constraints.max_flops:
                return f"spec.constraints.maxFlops: {flops} > {constraints.max_flops}"
            if constraints.max_latency_ms is not None and predictor is not None:
                predicted = predictor.predict(structure, flops)
                if predicted is not None and predicted > constraints.max_latency_ms * PREDICTION_SLACK:
                    return f"spec.constraints.maxLatencyMs: predicted {predicted:.3f} ms > {constraints.max_latency_ms} ms"
        return None

    return admit


def check_satisfiable(
    space: Any, config: SearchConfig, latency_of: Callable[[dict], float] | None = None
) -> None:
    """Fail fast, naming the constraint, when no sampled structure can meet the budgets.

    Samples a bounded number of structures; for latency it measures the smallest-FLOPs sample
    (when a latency measurer is given) and fails if even that one is too slow.
    """
    c = config.constraints
    if not c:
        return
    rng = random.Random(config.seed)
    samples = [space.sample(rng) for _ in range(FEASIBILITY_SAMPLES)]
    sizes = [(space.count_params(s), space.count_flops(s), s) for s in samples]
    min_params = min(p for p, _, _ in sizes)
    min_flops = min(f for _, f, _ in sizes)
    n = len(sizes)
    if c.max_params is not None and min_params > c.max_params:
        raise SearchError(
            f"spec.constraints.maxParams: Invalid value: {c.max_params}: no structure of the '{config.domain}' "
            f"space fits; the smallest of {n} sampled has {min_params} parameters (raise maxParams or "
            "shrink spec.searchSpace)"
        )
    if c.max_flops is not None and min_flops > c.max_flops:
        raise SearchError(
            f"spec.constraints.maxFlops: Invalid value: {c.max_flops}: no structure of the '{config.domain}' "
            f"space fits; the smallest of {n} sampled needs {min_flops} FLOPs (raise maxFlops or shrink "
            "spec.searchSpace)"
        )
    legal = [
        (p, f, s)
        for p, f, s in sizes
        if (c.max_params is None or p <= c.max_params) and (c.max_flops is None or f <= c.max_flops)
    ]
    if not legal:
        raise SearchError(
            f"spec.constraints.maxParams: Invalid value: {c.max_params}: together with spec.constraints.maxFlops "
            f"({c.max_flops}) no sampled structure fits: each budget alone can be met, not both (raise one)"
        )
    if c.max_latency_ms is not None and latency_of is not None:
        smallest = min(legal, key=lambda t: (t[1], t[0]))[2]
        measured = latency_of(smallest)
        if measured > c.max_latency_ms:
            raise SearchError(
                f"spec.constraints.maxLatencyMs: Invalid value: {c.max_latency_ms}: the fastest-looking of {n} "
                f"sampled structures (fewest FLOPs) measures {measured:.3f} ms on this machine (raise "
                "maxLatencyMs, shrink spec.searchSpace or lower spec.score.latency.batchSize)"
            )
