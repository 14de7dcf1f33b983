"""Latency of this pool, predicted: calibrated at start from a few real measurements on this machine.

A search with ``maxLatencyMs`` pre-filters proposals by predicted latency (`denas.search.constraints`).
The predictor is `denas.scores.latency_model.PoolLatencyModel`, fitted on latencies measured on
*this* node: before the first generation rank 0 measures `CALIBRATION_CELLS` structures spread
over the FLOPs range of the space (within the params/FLOPs budgets), keeps them in the checkpoint
(a resumed search does not measure them again, and refuses to mix them with another CPU's: see
`denas.search.hardware`), and refits after every generation with the candidates measured since.
For NB201 the four Xeons' per-op costs are the prior the pool's measurements blend
(`latency_model.PRIORS`); other spaces fit their own features alone.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from denas.search.config import SearchConfig

log = logging.getLogger(__name__)

#: structures measured at start (the benchmark shows 20 NB201 cells suffice for rho >= 0.95)
CALIBRATION_CELLS = 12
#: measured structures needed before predicted latency pre-filters proposals
MIN_LATENCY_POINTS = 5
#: structures sampled to pick the calibration set from
CANDIDATE_SAMPLES = 300
#: a measured latency this many times the pool model's prediction is flagged as doubtful: a
#: measurement slowed down as a whole (every timing round) looks stable but is far off the model
OUTLIER_FACTOR = 5.0


def calibration_structures(space: Any, config: SearchConfig, n: int = CALIBRATION_CELLS) -> list[dict]:
    """``n`` distinct structures at evenly spaced FLOPs quantiles of a seeded sample (within the
    params/FLOPs budgets): the predictor sees the whole range it will be asked about."""
    c = config.constraints
    rng = random.Random(f"latency-calibration:{config.seed}")  # its own stream: the search's is untouched
    legal: dict[str, tuple[int, dict]] = {}
    for _ in range(CANDIDATE_SAMPLES):
        s = space.sample(rng)
        if c.max_params is not None and space.count_params(s) > c.max_params:
            continue
        flops = space.count_flops(s)
        if c.max_flops is not None and flops > c.max_flops:
            continue
        legal.setdefault(space.hash(s), (flops, s))
    ordered = sorted(legal.items(), key=lambda kv: (kv[1][0], kv[0]))
    if len(ordered) <= n:
        return [s for _, (_, s) in ordered]
    picks = sorted({round(i * (len(ordered) - 1) / (n - 1)) for i in range(n)}) if n > 1 else [0]
    return [ordered[i][1][1] for i in picks]


def calibrate(
    space: Any, config: SearchConfig, latency_of: Callable[[dict], float], n: int = CALIBRATION_CELLS
) -> list[dict[str, Any]]:
    """Measure the calibration structures on this machine: one point per structure."""
    points = []
    for s in calibration_structures(space, config, n):
        points.append(
            {
                "hash": space.hash(s),
                "structure": s,
                "flops": space.count_flops(s),
                "latency_ms": float(latency_of(s)),
            }
        )
    log.info("latency calibration: %d structures measured on this machine", len(points))
    return points


class PoolLatencyPredictor:
    """Predicted latency of a structure on this pool, fitted on measured points (records with
    ``structure`` and ``latency_ms``: the calibration and the candidates measured so far)."""

    def __init__(self, space: Any, records: Iterable[dict], domain: str = ""):
        from denas.scores.latency_model import PoolLatencyModel, latency_features, prior_for, unshrunk_for

        self.space, self.domain = space, domain
        self._features = latency_features
        points: dict[str, dict] = {}
        for r in records:
            if r.get("latency_ms") is not None and r["latency_ms"] > 0:
                points.setdefault(r.get("hash") or space.hash(r["structure"]), r)
        self.points = len(points)
        self.ready = self.points >= MIN_LATENCY_POINTS
        self.model: Any = None
        if self.ready:
            pts = list(points.values())
            x = [latency_features(space, domain, r["structure"]) for r in pts]
            self.model = PoolLatencyModel(prior=prior_for(domain), unshrunk=unshrunk_for(domain)).fit(
                x, [r["latency_ms"] for r in pts]
            )

    def predict(self, structure: dict, flops: int | None = None) -> float | None:
        """Predicted ms, or None before enough points were measured (``flops`` is unused: kept
        for the callers that pass it)."""
        if not self.ready:
            return None
        return float(self.model.predict([self._features(self.space, self.domain, structure)])[0])


def flag_if_far_off(record: dict[str, Any], predictor: PoolLatencyPredictor | None) -> None:
    """Flag (``latency_flag``) a measured latency that is OUTLIER_FACTOR x what the pool's model,
    fitted before this candidate was measured, predicts; the value itself is kept as measured."""
    ms = record.get("latency_ms")
    if predictor is None or not predictor.ready or ms is None or record.get("latency_flag"):
        return
    predicted = predictor.predict(record["structure"])
    if predicted is not None and predicted > 0 and ms > OUTLIER_FACTOR * predicted:
        record["latency_flag"] = (
            f"outlier: measured {ms:.3f} ms, {ms / predicted:.0f}x what this pool's latency model "
            f"predicts ({predicted:.3f} ms); the machine may have been busy"
        )
