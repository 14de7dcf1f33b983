"""Steering: short training inside the search orders the later generations' proposals.

``spec.search.selection.interleave: N`` (0: off).  After every N generations of the train-free
search (never after the last: the selection stage follows it), rank 0 trains
``interleaveRuns`` candidates at selection's rung 0 (``minEpochs``, the same trainer, data and
ranks as the selection stage): the best-ranked feasible ones not trained yet, picked with the
coverage rule (``denas.search.selection.diverse_top``, counting what earlier steering trained as
covered), so each round tries choices the search has not had judged yet.  A ridge regression on
the space's structure encoding (``selection_surrogate.ridge_predict``), fitted on every steering
run so far, then orders the next generations' proposals: each generation draws 4x as many and
keeps the ones predicted to learn best (the hook ``spec.search.surrogate`` uses with its
train-free ranker; steering takes its place once it has 3 finished runs).

Every steering run is a rung-0 run of the selection stage: it is kept in the search checkpoint
(a resumed search neither loses nor repeats it; a round cut by a kill is run again), listed in
``history.jsonl`` as a ``steer`` event, and handed to the selection stage, which does not train it
again and lets it compete at rung 0 beside the top-K.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from denas.search.selection import diverse_top
from denas.search.selection_surrogate import ridge_predict
from denas.search.strategies import rank_records

log = logging.getLogger(__name__)

#: finished runs the ridge needs before it orders anything
MIN_RUNS = 3


class Steering:
    """Rank 0's steering rounds; ``state`` (the search checkpoint) holds every run."""

    def __init__(self, config: Any, space: Any, pool: Any, handler: Any):
        self.settings = config.selection
        self.generations = config.generations
        self.space, self.pool, self.handler = space, pool, handler
        self._warned = False

    def due(self, state: dict, generation: int) -> bool:
        """A round belongs before ``generation`` (0-based) and has not run yet."""
        every = self.settings.interleave
        return (
            every > 0
            and 0 < generation < self.generations
            and generation % every == 0
            and generation not in state.setdefault("steer_rounds", [])
        )

    def train(self, state: dict, archive: dict, generation: int) -> list[dict]:
        """Train this round's candidates at rung 0; returns the new runs (also kept in ``state``)."""
        runs: list[dict] = state.setdefault("steer_runs", [])
        trained = {r["hash"] for r in runs}
        ranked = rank_records([r for r in archive.values() if r["feasible"] and r["fitness"] is not None])
        pool = [r for r in ranked if r["hash"] not in trained]
        covered = [archive[h]["structure"] for h in trained if h in archive]
        picks = diverse_top(pool, self.settings.interleave_runs, "coverage", covered=covered)
        s = self.settings
        items = [
            {"hash": c["hash"], "structure": c["structure"], "rung": 0, "epochs": s.min_epochs} for c in picks
        ]
        new = self.pool.map(items, kind="select", cost=self.handler.cost) if items else []
        new = [{**r, "steer": generation, "structure": item["structure"]} for r, item in zip(new, items)]
        runs.extend(new)
        state.setdefault("steer_rounds", []).append(generation)
        return new

    def ranker(self, state: dict, higher_is_better: bool) -> Callable[[list[dict]], list[dict]] | None:
        """Orders structures best-first by the learned metric, or None (too few runs, no encoding)."""
        import numpy as np

        ok = [r for r in state.get("steer_runs", ()) if r.get("status") == "ok"]
        if len(ok) < MIN_RUNS:
            return None
        try:
            x = np.array([self.space.encode(r["structure"]) for r in ok], dtype=np.float64)
        except NotImplementedError:
            if not self._warned:
                log.warning(
                    "steering: space '%s' has no encode(); proposals are not reordered", self.space.name
                )
                self._warned = True
            return None
        sign = 1.0 if higher_is_better else -1.0
        y = sign * np.array([r["metric"] for r in ok], dtype=np.float64)

        def rank(structures: list[dict]) -> list[dict]:
            new = np.array([self.space.encode(s) for s in structures], dtype=np.float64)
            pred = ridge_predict(x, y, new)
            order = sorted(range(len(structures)), key=lambda i: (-float(pred[i]), i))
            return [structures[i] for i in order]

        return rank
