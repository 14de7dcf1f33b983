"""An optional pairwise-ranking surrogate (AnalogNAS / DyNAS-T style) that pre-filters proposals.

An ``XGBRanker`` (objective ``rank:pairwise``) is refitted each generation on every candidate
scored so far (features: ``space.encode``, label: the fitness rank); proposals are drawn 4x and
the surrogate keeps the top quarter.  It is refitted from the archive, so it has no state to
checkpoint, and it runs single-threaded with a fixed seed, so it is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from denas.search.strategies import rank_records

#: scored candidates needed before the surrogate is trusted
MIN_TRAINING = 10
#: relevance grades the fitness ranks are binned into
GRADES = 16


def make_surrogate_rank(space: Any, archive: dict[str, dict], seed: int) -> Callable | None:
    """A function ordering structures best-first, or None while there is too little data."""
    import numpy as np
    from xgboost import XGBRanker

    scored = [r for r in archive.values() if r.get("feasible") and r.get("fitness") is not None]
    if len(scored) < MIN_TRAINING:
        return None
    try:
        space.encode(scored[0]["structure"])
    except NotImplementedError:
        return None
    ranked = rank_records(scored)[::-1]  # worst first: position = ascending relevance
    x = np.array([space.encode(r["structure"]) for r in ranked], dtype=np.float32)
    y = (np.arange(len(ranked)) * GRADES // len(ranked)).astype(np.int32)
    model = XGBRanker(
        objective="rank:pairwise",
        n_estimators=60,
        max_depth=4,
        learning_rate=0.2,
        random_state=seed,
        n_jobs=1,
    )
    model.fit(x, y, qid=np.zeros(len(ranked), dtype=np.int32))

    def rank(structures: list[dict]) -> list[dict]:
        pred = model.predict(np.array([space.encode(s) for s in structures], dtype=np.float32))
        order = sorted(range(len(structures)), key=lambda i: (-float(pred[i]), i))
        return [structures[i] for i in order]

    return rank
