"""A per-pool latency predictor: fitted on a few latencies measured on the pool it predicts for.

A network's time is, to first order, the sum of its operations' times (the additive model of
HELP / BRP-NAS style predictors), so the features are what each operation costs on *this* CPU:
for NB201 the number of edges that use each operation (pooling and skip edges cost time without
FLOPs; memory-bound 1x1 convolutions cost more than their FLOPs say), for other spaces FLOPs,
parameters (a memory-traffic proxy) and the space's encoding.  A ridge regression on the
standardised features, fitted on a dozen or two measurements, ranks the rest.

Features come from a registry keyed by domain (`FEATURES`), and so do source-CPU priors
(`PRIORS`, NB201 only). The penalties were chosen by ``benchmarks/latency_predictor.py --tune`` on
tuning draws of NB201's latency table, disjoint from the draws it reports (benchmarks/README_scores.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: ridge penalties on the standardised features without / with a source-CPU prior, and on the
#: prior's blend weights (chosen by `benchmarks/latency_predictor.py --tune` on its tuning draws)
ALPHA = 0.3
ALPHA_WITH_PRIOR = 30.0
PRIOR_ALPHA = 0.3

#: per-feature costs (ms per edge of each op, in `nb201_features` order) on the four Xeons of
#: NB201's latency table (HELP's measurements, nb201.csv): `source_costs` of each CPU's column.
#: A pool that is none of them blends these from its own few measurements.
PRIORS: dict[str, dict[str, list[float]]] = {
    "nb201": {
        "xeon_gold_6226": [-0.23, 1.8854, 2.6407, 0.2596],
        "xeon_gold_6240": [-0.1991, 1.3489, 3.3951, 0.4607],
        "xeon_silver_4114": [-0.3517, 2.6382, 6.653, 0.6435],
        "xeon_silver_4210r": [-0.2613, 1.788, 4.9344, 0.4974],
    }
}

Features = Callable[[Any, dict], list[float]]
FEATURES: dict[str, Features] = {}


def register_features(domain: str) -> Callable[[Features], Features]:
    def deco(fn: Features) -> Features:
        FEATURES[domain] = fn
        return fn

    return deco


@register_features("nb201")
def nb201_features(space: Any, structure: dict) -> list[float]:
    """How many of the cell's edges use each operation ('none' is what is left: not a feature).
    Every edge of an NB201 cell has the same channels and resolution, so conv FLOPs are a linear
    function of these counts and need no column of their own."""
    from denas.spaces.nb201 import OPS

    ops = structure["ops"]
    return [float(sum(op == name for op in ops)) for name in OPS if name != "none"]


def default_features(space: Any, structure: dict) -> list[float]:
    """MFLOPs, parameters in millions (weights are read once per pass: a memory-traffic proxy)
    and the space's encoding when it has one."""
    out = [space.count_flops(structure) / 1e6, space.count_params(structure) / 1e6]
    try:
        out += [float(v) for v in space.encode(structure)]
    except NotImplementedError:
        pass
    return out


def latency_features(space: Any, domain: str, structure: dict) -> list[float]:
    return FEATURES.get(domain, default_features)(space, structure)


def unshrunk_for(domain: str) -> int:
    """Leading feature columns the fit must not shrink: FLOPs for the default features."""
    return 0 if domain in FEATURES else 1


def prior_for(domain: str) -> list[list[float]] | None:
    """Source-CPU cost vectors for the domain's features, or None (no table to learn them from)."""
    table = PRIORS.get(domain)
    return [list(v) for v in table.values()] if table else None


class PoolLatencyModel:
    """``ms ~ a + b . standardise(features @ prior.T) + c . standardise(features)``.

    ``prior`` (optional) holds per-feature cost vectors measured on *other* CPUs (one row per
    source CPU): the target's costs are mostly a blend of theirs, so ``b`` (penalty
    ``prior_alpha``) carries the fit and ``c`` (penalty ``alpha``) only adjusts it.  That is the
    meta-learning idea of HELP (a predictor learned on source devices, adapted to a new one from a
    few samples) in linear form: few measured cells fit a handful of blend weights well, where
    they would fit every per-operation cost noisily.  The intercept ``a`` is not shrunk.
    """

    def __init__(
        self,
        alpha: float | None = None,
        target: str = "ms",
        prior: Sequence[Sequence[float]] | None = None,
        prior_alpha: float = PRIOR_ALPHA,
        unshrunk: int = 0,
    ):
        """``unshrunk`` leading feature columns get no penalty (FLOPs in `default_features`:
        the main term; shrinking it would pull every prediction toward the mean)."""
        if alpha is None:  # with a prior the own-cost terms only adjust it: shrink them harder
            alpha = ALPHA if prior is None or len(prior) == 0 else ALPHA_WITH_PRIOR
        if alpha < 0 or prior_alpha < 0:
            raise ValueError(f"alpha and prior_alpha must be >= 0, got {alpha}, {prior_alpha}")
        if target not in ("ms", "log"):
            raise ValueError(f"target: expected 'ms' or 'log', got {target!r}")
        self.alpha, self.target, self.prior_alpha = alpha, target, prior_alpha
        self.unshrunk = unshrunk
        self.prior = None if prior is None or len(prior) == 0 else np.asarray(prior, dtype=float)
        self.coef: np.ndarray | None = None
        self._mu: np.ndarray | None = None
        self._sd: np.ndarray | None = None

    def _columns(self, x: np.ndarray) -> np.ndarray:
        if self.prior is None:
            return x
        if self.prior.shape[1] != x.shape[1]:
            raise ValueError(f"prior: {self.prior.shape[1]} costs per row for {x.shape[1]} features")
        return np.hstack([x @ self.prior.T, x])

    def fit(self, features: Sequence[Sequence[float]], latency_ms: Sequence[float]) -> PoolLatencyModel:
        x = np.asarray(features, dtype=float)
        ms = np.asarray(latency_ms, dtype=float)
        if x.ndim != 2 or x.shape[0] != ms.shape[0]:
            raise ValueError(f"features: {x.shape[0] if x.ndim else 0} rows for {len(ms)} latencies")
        if len(ms) < 2:
            raise ValueError("fit needs at least 2 measured structures")
        if np.any(~np.isfinite(ms)) or np.any(ms <= 0):
            raise ValueError("latency_ms must be positive and finite")
        cols = self._columns(x)
        self._mu = cols.mean(0)
        # a column constant over the fitting set carries no information: its coefficient stays 0
        self._sd = np.where(cols.std(0) > 1e-12, cols.std(0), 1.0)
        z = self._design(cols)
        y = np.log(ms) if self.target == "log" else ms
        n_prior = 0 if self.prior is None else len(self.prior)
        own = [0.0 if i < self.unshrunk else self.alpha for i in range(x.shape[1])]
        penalty = np.diag([0.0] + [self.prior_alpha] * n_prior + own)
        self.coef = np.linalg.solve(z.T @ z + penalty + 1e-9 * np.eye(z.shape[1]), z.T @ y)
        return self

    def _design(self, cols: np.ndarray) -> np.ndarray:
        return np.hstack([np.ones((len(cols), 1)), (cols - self._mu) / self._sd])

    def predict(self, features: Sequence[Sequence[float]]) -> np.ndarray:
        """Predicted ms at the batch, threads and path of the fitting measurements."""
        if self.coef is None:
            raise RuntimeError("predict before fit: fit on a few measured structures first")
        pred = self._design(self._columns(np.asarray(features, dtype=float))) @ self.coef
        return np.exp(pred) if self.target == "log" else pred


def source_costs(features: Sequence[Sequence[float]], latency_ms: Sequence[float]) -> list[float]:
    """Per-feature costs (ms per unit) of one source CPU: least squares on its measurements."""
    x = np.asarray(features, dtype=float)
    z = np.hstack([np.ones((len(x), 1)), x])
    coef, *_ = np.linalg.lstsq(z, np.asarray(latency_ms, dtype=float), rcond=None)
    return [float(v) for v in coef[1:]]
