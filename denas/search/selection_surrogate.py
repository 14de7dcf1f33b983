"""The selection surrogate: what rung 0 trained picks which untrained candidates join it.

Selection trains only the train-free top-K, and the train-free score errs exactly at the top
(benchmarks/README_search.md), so the candidates that would learn best are often ranked just below
the cut.  After rung 0, a ridge regression is fitted on the K short-training results (features: the
space's structure encoding plus every train-free score component and the fitness; label: the rung-0
metric, oriented so that higher is better) and predicts the metric of every other scored, feasible,
distinct candidate.  The ``extra`` best predicted are trained at rung 0 too and compete for the
next rung's places, so a larger pool is considered for ``extra x minEpochs`` more epochs.

Ridge rather than the search's XGBoost ranker: it is fitted on about eight points, where trees
cannot split and a linear model on standardized features with a strong penalty still carries a
direction.  It is closed-form and has no seed, so a resumed stage picks the same candidates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: ridge penalty on standardized features (relative to the number of training points)
ALPHA = 1.0


def features(space: Any, record: dict, keys: Sequence[str]) -> list[float]:
    """Structure encoding (when the space has one) + the score components ``keys`` + fitness."""
    try:
        enc = [float(v) for v in space.encode(record["structure"])]
    except NotImplementedError:
        enc = []
    scores = record.get("scores") or {}
    comp = [float(scores[k]) if _finite(scores.get(k)) else 0.0 for k in keys]
    fit = record.get("fitness")
    return enc + comp + [float(fit) if _finite(fit) else 0.0]


def ridge_predict(x_train: Any, y: Any, x_new: Any) -> Any:
    """Ridge regression on standardized features (statistics over both sets), closed form.

    In the dual form, as there are far fewer points than features: w = X^T (X X^T + a n I)^-1 y."""
    import numpy as np

    both = np.vstack([x_train, x_new])
    mu, sd = both.mean(0), both.std(0)
    sd[sd == 0] = 1.0
    zt, zn = (x_train - mu) / sd, (x_new - mu) / sd
    y_mu = y.mean()
    k = zt @ zt.T + ALPHA * len(y) * np.eye(len(y))
    w = zt.T @ np.linalg.solve(k, y - y_mu)
    return zn @ w + y_mu


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def pick_extra(
    space: Any,
    trained: Sequence[tuple[dict, float]],
    pool: Sequence[dict],
    extra: int,
    *,
    higher_is_better: bool = True,
) -> tuple[list[dict], dict[str, Any]]:
    """(the ``extra`` records of ``pool`` predicted to learn best, a summary for result.json).

    ``trained``: (record, rung-0 metric) of the runs that finished ``ok``; ``pool``: untrained
    records in train-free order (ties keep that order)."""
    import numpy as np

    info: dict[str, Any] = {"extra": extra, "fitted_on": len(trained), "pool": len(pool), "picked": []}
    if extra <= 0 or not pool:
        return [], info
    if len(trained) < 3:  # too few results to learn a direction: fall back on the train-free order
        info["fallback"] = "fewer than 3 finished rung-0 runs: the next candidates in train-free order"
        picked = list(pool[:extra])
        info["picked"] = [{"hash": r["hash"], "predicted": None} for r in picked]
        return picked, info
    sign = 1.0 if higher_is_better else -1.0
    # the components every record carries (records of older scoring code may lack some)
    keys = sorted(set.intersection(*(set(r.get("scores") or {}) for r in [*(r for r, _ in trained), *pool])))
    info["features"] = keys
    x_train = np.array([features(space, r, keys) for r, _ in trained], dtype=np.float64)
    x_pool = np.array([features(space, r, keys) for r in pool], dtype=np.float64)
    y = sign * np.array([m for _, m in trained], dtype=np.float64)
    pred = ridge_predict(x_train, y, x_pool)
    order = sorted(range(len(pool)), key=lambda i: (-float(pred[i]), i))[:extra]
    picked = [pool[i] for i in order]
    info["picked"] = [{"hash": pool[i]["hash"], "predicted": round(sign * float(pred[i]), 6)} for i in order]
    return picked, info
